import COffswitch
import Glibc
public import OffswitchCore
import Synchronization

/// The fork and exit half of the process table: seccomp sees a process's execve, but not its
/// birth or end. This listens to the kernel's process connector (fork, exec and exit of every host
/// process), follows each sandbox's process tree from its PID 1 by fork events, and logs
/// `process_forked` (with the kernel's fork parent) and `process_exited` (status or signal) in the
/// sandbox's event log.
///
/// One connector socket and one thread serve every sandbox of the host process; they start with
/// the first sandbox tracked and stay.
public final class ProcessExits: Sendable {
    public static let shared = ProcessExits()

    private struct Tracked {
        let log: EventLog
        let uidBase: UInt32
        /// What the process looked like when last seen (fork or exec); a zombie's /proc is thin.
        var facts: ProcessFacts?
        /// The fork parent's pid inside, while the child's `process_forked` waits for facts that
        /// could not be read at its fork (it is logged at its exec or exit instead).
        var pendingForkParent: Int32?
    }

    private struct State {
        var socket: Int32 = -1
        var thread: WorkerThread?
        var tracked: [Int32: Tracked] = [:]
    }

    /// Held while reading the socket, so that `untrack` can drain what is queued before it
    /// forgets a sandbox.
    private let state = Mutex(State())

    private init() {}

    /// Follows the processes of the sandbox whose PID 1 has host pid `initPID`, from now on.
    /// Call it before PID 1 starts any command.
    public func track(initPID: Int32, log: EventLog, uidBase: UInt32) throws(OffswitchError) {
        let result: Result<Void, OffswitchError> = state.withLock { state in
            if state.socket < 0 {
                let socket = ofs_proc_connector_open()
                guard socket >= 0 else {
                    return .failure(.system("process connector (netlink CN_IDX_PROC) for the recorder's exit events", errno: errno))
                }
                do throws(OffswitchError) {
                    let thread = try WorkerThread("process exits")
                    state.socket = socket
                    state.thread = thread
                    try thread.start("process exits") { [self] in self.serve(socket: socket, wake: thread.wakeFD) }
                } catch {
                    return .failure(error)
                }
            }
            state.tracked[initPID] = Tracked(log: log, uidBase: uidBase,
                                             facts: ProcessFacts.read(hostPID: initPID, uidBase: uidBase))
            return .success(())
        }
        try result.get()
    }

    /// Logs the exits still queued for this sandbox (call it once PID 1 has been reaped: by then
    /// the kernel has sent every exit of its namespace), then forgets it.
    public func untrack(log: EventLog) {
        state.withLock { state in
            guard state.socket >= 0 else { return }
            Self.drain(&state)
            state.tracked = state.tracked.filter { $0.value.log !== log }
        }
    }

    private func serve(socket: Int32, wake: Int32) {
        var polls = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        while true {
            let ready = poll(&polls, 2, -1)
            if ready < 0 && errno == EINTR { continue }
            if polls[1].revents != 0 { return }
            state.withLock { Self.drain(&$0) }
        }
    }

    /// Handles every queued event.
    private static func drain(_ state: inout State) {
        var event = ofs_proc_event()
        while true {
            let got = ofs_proc_connector_next(state.socket, &event)
            if got < 0 {
                if errno == EINTR { continue }
                if errno == ENOBUFS {
                    // The kernel dropped events: say so in every log that may be missing some.
                    var logs: [ObjectIdentifier: EventLog] = [:]
                    for entry in state.tracked.values { logs[ObjectIdentifier(entry.log)] = entry.log }
                    for log in logs.values { log.post("process_events_lost", [("source", .string("process connector"))]) }
                    continue
                }
                return
            }
            guard got == 1, !state.tracked.isEmpty else { continue }
            // Threads share their process's entry; only whole processes come and go here.
            guard event.pid == event.tgid else { continue }
            switch event.what {
            case OFS_PROC_FORK:
                guard let parent = state.tracked[event.parent_tgid] else { continue }
                var child = parent
                child.pendingForkParent = nil
                if let facts = ProcessFacts.read(hostPID: event.tgid, uidBase: parent.uidBase), facts.pid > 0 {
                    child.facts = facts
                } else if let facts = ProcessFacts.remembered(hostPID: event.tgid), facts.pid > 0 {
                    // Gone already, but the supervisor saw its calls.
                    child.facts = facts
                } else {
                    child.pendingForkParent = parent.facts?.pid
                    // Gone before we looked (a short-lived child): what fork copied from the parent,
                    // and no pid inside, rather than the parent's.
                    child.facts = parent.facts.map { facts in
                        var copy = facts
                        copy.ppid = facts.pid
                        copy.pid = -1
                        return copy
                    }
                }
                state.tracked[event.tgid] = child
                // The kernel's fork parent, not the parent /proc names later (a reparented
                // orphan's is 1): the verdict follows the trigger's process tree by these.
                if child.pendingForkParent == nil, let facts = child.facts {
                    logFork(child.log, facts, parent: parent.facts?.pid)
                }
            case OFS_PROC_EXEC:
                guard var entry = state.tracked[event.tgid] else { continue }
                if let facts = ProcessFacts.read(hostPID: event.tgid, uidBase: entry.uidBase), facts.pid > 0 {
                    entry.facts = facts
                    if let parent = entry.pendingForkParent {
                        logFork(entry.log, facts, parent: parent)
                        entry.pendingForkParent = nil
                    }
                }
                state.tracked[event.tgid] = entry
            case OFS_PROC_EXIT:
                guard let entry = state.tracked.removeValue(forKey: event.tgid) else { continue }
                var facts = entry.facts
                if (facts?.pid ?? -1) < 1, let again = ProcessFacts.read(hostPID: event.tgid, uidBase: entry.uidBase)
                    ?? ProcessFacts.remembered(hostPID: event.tgid), again.pid > 0 {
                    facts = again
                }
                if let parent = entry.pendingForkParent, let facts { logFork(entry.log, facts, parent: parent) }
                var fields = facts?.fields ?? []
                if let facts, facts.pid < 1 { fields[0] = ("pid", .null) }
                entry.log.post("process_exited", fields + exitFields(event.exit_code))
            default:
                break
            }
        }
    }

    /// `process_forked`, with the kernel's fork parent as `ppid` (pid null when the child's pid
    /// inside could never be read).
    private static func logFork(_ log: EventLog, _ child: ProcessFacts, parent: Int32?) {
        var facts = child
        facts.ppid = parent ?? facts.ppid
        var fields = facts.fields
        if facts.pid < 1 { fields[0] = ("pid", .null) }
        log.post("process_forked", fields)
    }

    /// `exit_code` and `signal` from a wait(2) status; `core_dumped` when it says so.
    public static func exitFields(_ status: UInt32) -> [(String, JSONValue)] {
        let signal = Int64(status & 0x7f)
        if signal == 0 {
            return [("exit_code", .int(Int64((status >> 8) & 0xff))), ("signal", .null)]
        }
        var fields: [(String, JSONValue)] = [("exit_code", .null), ("signal", .int(signal)),
                                              ("signal_name", .string(SyscallArguments.signalName(Int32(signal))))]
        if status & 0x80 != 0 { fields.append(("core_dumped", .bool(true))) }
        return fields
    }
}
