import Glibc
public import OffswitchCore
import Synchronization

/// Who did something, as the agent would see it: pid and parent pid in the sandbox's PID
/// namespace, uid in its user namespace, the command name and the executable's path.
public struct ProcessFacts: Sendable, Equatable {
    public var pid: Int32
    public var ppid: Int32
    /// Session id inside: each command the host runs starts a session led by its first process,
    /// so `sid` ties every event to the command (`command_started`/`command_finished`) it belongs to.
    public var sid: Int32
    public var comm: String
    public var exe: String
    public var uid: Int64

    public var fields: [(String, JSONValue)] {
        [("pid", .int(Int64(pid))), ("ppid", .int(Int64(ppid))), ("sid", .int(Int64(sid))), ("comm", .string(comm)),
         ("exe", .string(exe)), ("uid", .int(uid))]
    }

    /// Host pid -> pid inside, for parents (read once per process: a recorded loop asks for the
    /// same parent thousands of times), with the start stamp of the process it was read for: the
    /// cache serves every sandbox of this process, and a host pid reused by another process (in
    /// this sandbox or another) must not inherit the old one's pid inside. Bounded; cleared when full.
    private static let parents = Mutex<[Int32: (stamp: Int, inside: Int32)]>([:])

    /// Facts already read, by host pid, with the start stamp of the process they belong to (the
    /// change time of /proc/PID, which a reused pid does not share). A process keeps its entry
    /// until it calls execve (the recorder forgets it then) or the cache is full. Only the notify
    /// supervisor uses it: it sees a process's calls in order, so an entry never outlives an exec.
    private static let known = Mutex<[Int32: (stamp: Int, facts: ProcessFacts)]>([:])

    /// The facts of a process, from the cache when it is still the same process.
    public static func lookup(hostPID: Int32, uidBase: UInt32 = 0) -> ProcessFacts? {
        let stamp = startStamp(hostPID)
        guard stamp != 0 else { return nil }
        if let entry = known.withLock({ $0[hostPID] }), entry.stamp == stamp { return entry.facts }
        guard let facts = read(hostPID: hostPID, uidBase: uidBase) else { return nil }
        known.withLock { map in
            if map.count > 8192 { map.removeAll() }
            map[hostPID] = (stamp, facts)
        }
        return facts
    }

    /// What the supervisor last read about a host pid, without checking that the process still
    /// exists: for the process connector, which can lag a few milliseconds behind a child that
    /// made its calls and exited meanwhile (its pid inside is still right; host pids are not
    /// reused that fast).
    public static func remembered(hostPID: Int32) -> ProcessFacts? {
        known.withLock { $0[hostPID]?.facts }
    }

    /// Keeps what the kernel recorder read of a process at one of its calls, for `remembered`: its
    /// calls reach us after the fact, when /proc may no longer have it. The entry's stamp is 0,
    /// so `lookup` still reads a live process afresh.
    static func note(hostPID: Int32, _ facts: ProcessFacts) {
        known.withLock { map in
            if let entry = map[hostPID], entry.facts == facts { return }
            if map.count > 8192 { map.removeAll() }
            map[hostPID] = (0, facts)
        }
    }

    /// Invalidates a process's entry: it is about to exec, so its name and executable change. The
    /// entry stays for `remembered` (stamp 0 matches no live process).
    public static func forget(hostPID: Int32) {
        known.withLock { map in
            if let entry = map[hostPID] { map[hostPID] = (0, entry.facts) }
        }
    }

    private static func startStamp(_ hostPID: Int32) -> Int {
        (try? fileStamp("/proc/\(hostPID)")) ?? 0
    }

    /// Reads /proc/HOSTPID/status (one read: name, pids, parent, uid) and the exe link.
    /// `uidBase` is the host uid of uid 0 inside (0 without a user namespace). nil when the
    /// process is gone.
    public static func read(hostPID: Int32, uidBase: UInt32 = 0) -> ProcessFacts? {
        // Parsed as bytes: the file watcher calls this for every file event, and String
        // splitting was most of the recorder's CPU (perf, 20,000 appends in a loop).
        guard let status = readSmallBytes("/proc/\(hostPID)/status") else { return nil }
        var pid: Int32 = -1, hostParent: Int32 = 0, uid: Int64 = -1, sid: Int32 = -1
        var comm = ""
        status.withUnsafeBufferPointer { bytes in
            var start = 0
            while start < bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != 10 { end += 1 }
                let line = UnsafeBufferPointer(rebasing: bytes[start..<end])
                if line.starts(with: "Name:".utf8) {
                    comm = String(decoding: trimmed(line.dropFirst(5)), as: UTF8.self)
                } else if line.starts(with: "NSpid:".utf8) {
                    pid = Int32(truncatingIfNeeded: lastNumber(line) ?? -1)
                } else if line.starts(with: "NSsid:".utf8) {
                    sid = Int32(truncatingIfNeeded: lastNumber(line) ?? -1)
                } else if line.starts(with: "PPid:".utf8) {
                    hostParent = Int32(truncatingIfNeeded: lastNumber(line) ?? 0)
                } else if line.starts(with: "Uid:".utf8) {
                    let real = firstNumber(line.dropFirst(4)) ?? -1
                    uid = real >= Int64(uidBase) ? real - Int64(uidBase) : real
                }
                start = end + 1
            }
        }
        let exe = (try? readLink("/proc/\(hostPID)/exe")) ?? ""
        return ProcessFacts(pid: pid, ppid: parentInside(hostParent), sid: sid, comm: comm, exe: exe, uid: uid)
    }

    private static func trimmed(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Slice<UnsafeBufferPointer<UInt8>> {
        var text = bytes
        while let first = text.first, first == 32 || first == 9 { text = text.dropFirst() }
        while let last = text.last, last == 32 || last == 9 || last == 10 { text = text.dropLast() }
        return text
    }

    /// The first whole number of a line's remainder (`Uid:` has four).
    private static func firstNumber(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> Int64? {
        var value: Int64?
        for byte in bytes {
            if byte >= 48 && byte <= 57 {
                value = (value ?? 0) * 10 + Int64(byte - 48)
            } else if value != nil {
                break
            }
        }
        return value
    }

    /// The last whole number of a line (`NSpid:` lists one per namespace, the innermost last).
    private static func lastNumber(_ line: UnsafeBufferPointer<UInt8>) -> Int64? {
        var end = line.count
        while end > 0 && !(line[end - 1] >= 48 && line[end - 1] <= 57) { end -= 1 }
        var begin = end
        while begin > 0 && line[begin - 1] >= 48 && line[begin - 1] <= 57 { begin -= 1 }
        guard begin < end else { return nil }
        return firstNumber(line[begin..<end])
    }

    /// The thread group, as the sandbox numbers it, of a thread named by its host id (what the
    /// thread's /proc/self names); nil when it is gone. Read only for a path walked through
    /// /proc/self (PathWalk).
    static func groupInside(hostTID: UInt32) -> Int32? {
        guard let status = readSmallFile("/proc/\(hostTID)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }),
              let leader = Int32(line.dropFirst(5).trimmingCharacters),
              let leaderStatus = readSmallFile("/proc/\(leader)/status"),
              let ids = leaderStatus.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") })?
                .split(whereSeparator: { $0 == "\t" || $0 == " " }),
              let inside = Int32(ids.last ?? "") else { return nil }
        return inside
    }

    /// The pid inside of a host pid; 0 for a process outside the sandbox (the host side of PID 1).
    private static func parentInside(_ hostParent: Int32) -> Int32 {
        guard hostParent > 0 else { return 0 }
        let stamp = startStamp(hostParent)
        // A parent already gone (stamp 0) keeps what was read while it lived.
        if let known = parents.withLock({ $0[hostParent] }), known.stamp == stamp || stamp == 0 { return known.inside }
        var inside: Int32 = 0
        if let parent = readSmallFile("/proc/\(hostParent)/status"),
           let line = parent.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) {
            let ids = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            inside = ids.count > 2 ? Int32(ids.last ?? "") ?? 0 : 0
        }
        parents.withLock { map in
            if map.count > 4096 { map.removeAll() }
            map[hostParent] = (stamp, inside)
        }
        return inside
    }
}

extension Substring {
    var trimmingCharacters: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\n" { text = text.dropLast() }
        return text
    }
}
