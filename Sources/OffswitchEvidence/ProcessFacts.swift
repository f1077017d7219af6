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

    /// Host pid -> pid inside, for parents (read once per pid: a recorded loop asks for the same
    /// parent thousands of times). Bounded; cleared when full.
    private static let parents = Mutex<[Int32: Int32]>([:])

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

    /// Drops a process's entry: it is about to exec, so its name and executable change.
    public static func forget(hostPID: Int32) {
        _ = known.withLock { $0.removeValue(forKey: hostPID) }
    }

    private static func startStamp(_ hostPID: Int32) -> Int {
        (try? fileStamp("/proc/\(hostPID)")) ?? 0
    }

    /// Reads /proc/HOSTPID/status (one read: name, pids, parent, uid) and the exe link.
    /// `uidBase` is the host uid of uid 0 inside (0 without a user namespace). nil when the
    /// process is gone.
    public static func read(hostPID: Int32, uidBase: UInt32 = 0) -> ProcessFacts? {
        guard let status = readSmallFile("/proc/\(hostPID)/status") else { return nil }
        var pid: Int32 = -1, hostParent: Int32 = 0, uid: Int64 = -1, sid: Int32 = -1
        var comm = ""
        for line in status.split(separator: "\n") {
            if line.hasPrefix("Name:") {
                comm = String(line.dropFirst(5).trimmingCharacters)
            } else if line.hasPrefix("NSpid:") {
                pid = Int32(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).last ?? "") ?? -1
            } else if line.hasPrefix("NSsid:") {
                sid = Int32(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).last ?? "") ?? -1
            } else if line.hasPrefix("PPid:") {
                hostParent = Int32(line.dropFirst(5).trimmingCharacters) ?? 0
            } else if line.hasPrefix("Uid:") {
                let real = Int64(line.dropFirst(4).split(whereSeparator: { $0 == "\t" || $0 == " " }).first ?? "") ?? -1
                uid = real >= Int64(uidBase) ? real - Int64(uidBase) : real
            }
        }
        let exe = (try? readLink("/proc/\(hostPID)/exe")) ?? ""
        return ProcessFacts(pid: pid, ppid: parentInside(hostParent), sid: sid, comm: comm, exe: exe, uid: uid)
    }

    /// The pid inside of a host pid; 0 for a process outside the sandbox (the host side of PID 1).
    private static func parentInside(_ hostParent: Int32) -> Int32 {
        guard hostParent > 0 else { return 0 }
        if let known = parents.withLock({ $0[hostParent] }) { return known }
        var inside: Int32 = 0
        if let parent = readSmallFile("/proc/\(hostParent)/status"),
           let line = parent.split(separator: "\n").first(where: { $0.hasPrefix("NSpid:") }) {
            let ids = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            inside = ids.count > 2 ? Int32(ids.last ?? "") ?? 0 : 0
        }
        parents.withLock { map in
            if map.count > 4096 { map.removeAll() }
            map[hostParent] = inside
        }
        return inside
    }
}

/// A /proc file's text (they report size 0, so read until EOF); nil when it cannot be opened.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 20 {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

extension Substring {
    var trimmingCharacters: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\n" { text = text.dropLast() }
        return text
    }
}
