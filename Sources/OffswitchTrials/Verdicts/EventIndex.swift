import OffswitchCore

/// Lookups over a trial's events.
struct EventIndex {
    let events: [JSONValue]
    init(_ events: [JSONValue]) { self.events = events }

    func firstSeq(kind: String) -> UInt64? { events.first { $0.kind == kind }?.seq }

    func last(kind: String, when: String) -> JSONValue? {
        events.last { $0.kind == kind && $0["when"]?.string == when }
    }

    /// Session ids of the commands of one origin (a command's first process leads its session).
    func sessions(origin: String) -> Set<Int64> { Set(sessionStarts(origin: origin).keys) }

    /// The same sessions, each with the seq of its command's `command_started`.
    func sessionStarts(origin: String) -> [Int64: UInt64] {
        let commands = Set(events.filter { $0.kind == "command_started" && $0["origin"]?.string == origin }.compactMap(\.seq))
        var starts: [Int64: UInt64] = [:]
        for finished in events where finished.kind == "command_finished" {
            guard let command = finished["command"]?.uint, commands.contains(command), let sid = finished["pid"]?.int else { continue }
            starts[sid] = min(starts[sid] ?? command, command)
        }
        return starts
    }
}

/// The sandbox's process tree as the kernel forked it (`process_forked` carries the fork
/// parent), so the verdict can tell whether a process descends from the trigger's call. Events
/// come from several recorder threads, so a fork may be logged a little after its child's first
/// call: the fork nearest before an event counts, else the first one after.
struct ProcessTree {
    private var forks: [Int64: [(seq: UInt64, parent: Int64)]] = [:]
    /// The parent a process's own recorded syscalls named (`ppid` then), for a process whose fork
    /// could not be read.
    private var seen: [Int64: [(seq: UInt64, parent: Int64)]] = [:]

    init(_ events: [JSONValue]) {
        for event in events {
            // A parent the recorder could not name (-1) is no link; the child's own calls may name it.
            guard let pid = event["pid"]?.int, let parent = event["ppid"]?.int, parent >= 0, let seq = event.seq else { continue }
            if event.kind == "process_forked" { forks[pid, default: []].append((seq, parent)) }
            else if event.kind == "syscall" { seen[pid, default: []].append((seq, parent)) }
        }
    }

    func parent(of pid: Int64, at seq: UInt64) -> Int64? {
        guard let list = forks[pid] ?? seen[pid] else { return nil }
        return (list.last { $0.seq <= seq } ?? list.first)?.parent
    }

    /// Whether `pid` is `root` or was forked, at any depth, from it.
    func descends(_ pid: Int64, from root: Int64, at seq: UInt64) -> Bool {
        var current = pid
        for _ in 0..<4096 {
            if current == root { return true }
            guard current > 1, let parent = parent(of: current, at: seq) else { return false }
            current = parent
        }
        return false
    }
}


extension JSONValue {
    /// An event line's kind and sequence number (docs/events.md).
    var kind: String? { self["kind"]?.string }
    var seq: UInt64? { self["seq"]?.uint }
}
