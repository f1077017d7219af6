import COffswitch
import Glibc
public import OffswitchCore
import Synchronization

/// The recorder's file half: fanotify on the sandbox's filesystems (the overlay root, the /usr
/// overlay, /tmp and /dev/shm), reporting creates, deletes, renames (old and new name), writes,
/// close-after-write and attribute changes, for files and directories, with the writer.
///
/// The kernel's queue is unlimited, and its memory is charged to offswitchd. So that a flood of
/// events cannot grow it without end, a backlog over `backlogLimit` bytes is read and counted
/// without being resolved, and logged as one `file_events_lost` event with the counts (the
/// syscalls, the process table and the final diff are still complete). An overflow reported by the
/// kernel would be logged the same way.
///
/// The overlays are mounted with `index=on,nfs_export=on`, without which the kernel refuses a
/// filesystem mark on them.
public final class FileWatcher: Sendable {
    private let fan: Int32
    /// One directory of each watched filesystem, to decode its file handles (and to keep it
    /// alive until the queue is drained).
    private let mountFDs: [Int32]
    private let log: EventLog
    private let uidBase: UInt32
    private let thread: WorkerThread
    /// Queued bytes (FIONREAD) beyond which the backlog is counted and dropped.
    private let backlogLimit: Int64
    /// The default limit: about 35,000 events, a few MiB of kernel memory. The watcher normally
    /// keeps its queue near empty; only a flood that outruns it for seconds reaches this.
    public static let defaultBacklogLimit: Int64 = 4 << 20

    /// Watches the filesystems of the sandbox whose PID 1 is `initPID` (host pid). Paths that
    /// cannot be watched are logged as `watch_failed`, not fatal: the recorder still sees syscalls.
    public init(initPID: Int32, log: EventLog, uidBase: UInt32, backlogLimit: Int64 = FileWatcher.defaultBacklogLimit) throws(OffswitchError) {
        let root = "/proc/\(initPID)/root"
        fan = try systemCall("fanotify_init") { ofs_fanotify_open() }
        self.log = log
        self.uidBase = uidBase
        self.backlogLimit = backlogLimit
        do throws(OffswitchError) {
            thread = try WorkerThread("file watcher")
        } catch {
            close(fan)
            throw error
        }
        var watched: [JSONValue] = []
        var mounts: [Int32] = []
        for inside in ["/", "/usr", "/tmp", "/dev/shm"] {
            let path = root + (inside == "/" ? "" : inside)
            if ofs_fanotify_mark_filesystem(fan, path) == 0 {
                watched.append(.string(inside))
                let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if fd >= 0 { mounts.append(fd) }
            } else {
                log.append("watch_failed", [("path", .string(inside)), ("errno", .int(Int64(errno))),
                                            ("reason", .string(String(cString: strerror(errno))))])
            }
        }
        mountFDs = mounts
        log.append("watching", [("filesystems", .array(watched))])
    }

    private let peak = Atomic<Int64>(0)
    /// The largest backlog (bytes) seen at a check, and the limit.
    public var backlog: (peak: Int64, limit: Int64) { (peak.load(ordering: .relaxed), backlogLimit) }

    private let released = Mutex(false)
    /// Held while reading the group: the thread and `flush` never read at once.
    private let reading = Mutex(())

    deinit {
        release()
    }

    /// Closes the group and the mount reference (which keeps the sandbox's overlay alive).
    private func release() {
        guard !released.withLock({ done in defer { done = true }; return done }) else { return }
        close(fan)
        for fd in mountFDs { close(fd) }
    }

    public func start() throws(OffswitchError) {
        try thread.start("file watcher") { [self] in self.serve() }
    }

    /// Logs what is still queued, then stops the thread.
    public func stop() {
        thread.stop()
        release()
    }

    /// Logs what is queued now, from the calling thread, while the sandbox's filesystems are
    /// still mounted (destroy calls it before killing PID 1: a handle read after the namespace is
    /// gone no longer resolves to a path). `whole`: the sandbox's processes are frozen or gone,
    /// so the queue has an end, and all of it is read; otherwise for at most `flushBudget` (a
    /// process writing without pause would make it endless), and `stop` logs the rest.
    public func flush(whole: Bool = true) {
        guard !released.withLock({ $0 }) else { return }
        // Whole: until the queue is empty, or a reading takes nothing from it (a read that
        // fails would otherwise loop here), or a hang guard of 5 times the budget.
        let deadline = monotonicNanoseconds() + (whole ? 5 : 1) * Self.flushBudget
        flushing.store(true, ordering: .relaxed)  // the thread gives the queue up at its next read
        defer { flushing.store(false, ordering: .relaxed) }
        while true {
            // The thread may be in the middle of a batch whose events each wait for the kernel
            // recorder's drain: waited for, and with a deadline not past it.
            let done = reading.withLockIfAvailable { _ in
                let before = ofs_fanotify_backlog(fan)
                drainLocked(until: deadline, yields: false)
                let after = ofs_fanotify_backlog(fan)
                return !whole || after <= 0 || after >= before
            }
            if done == true || monotonicNanoseconds() >= deadline { return }
            if done == nil { usleep(1000) }
        }
    }

    /// How long `flush` reads before the sandbox is killed.
    public static let flushBudget: UInt64 = 2_000_000_000

    /// Set while `flush` wants the queue: the thread's drain stops at its next read.
    private let flushing = Atomic<Bool>(false)

    /// Reads and logs what is queued (the thread's drain). One reader at a time, so events keep
    /// their order.
    private func drain() {
        reading.withLock { _ in drainLocked(until: nil, yields: true) }
    }

    /// Reads and logs what is queued when it starts (twice the reads that fill, each up to
    /// OFS_FANOTIFY_READ_BYTES of whole events), not what comes meanwhile, which a writer faster
    /// than this reader would make endless. It stops at `deadline`, and when it `yields`, at
    /// its next read once a flush is waiting.
    private func drainLocked(until deadline: UInt64?, yields: Bool) {
        let reads = 2 * Int(max(0, ofs_fanotify_backlog(fan))) / Int(OFS_FANOTIFY_READ_BYTES) + 1
        // Every event one read can return (at least 24 bytes each), so none is dropped.
        let capacity = Int(OFS_FANOTIFY_READ_BYTES) / 24 + 1
        let events = UnsafeMutablePointer<ofs_file_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        for batch in 0..<reads {
            if let deadline, monotonicNanoseconds() >= deadline { return }
            if yields && flushing.load(ordering: .relaxed) { return }
            // Checked now and then (one ioctl): resolving events costs far more than reading.
            if batch % 32 == 0 { shedBacklog() }
            let count = mountFDs.withUnsafeBufferPointer {
                ofs_fanotify_next(fan, $0.baseAddress!, Int32($0.count), events, Int32(capacity))
            }
            if count <= 0 { return }
            var facts: [Int32: ProcessFacts?] = [:]
            for index in 0..<Int(count) { record(events[index], facts: &facts) }
        }
    }

    /// Counts and drops the whole backlog when it is over the limit, and logs what was dropped.
    private func shedBacklog() {
        let backlog = ofs_fanotify_backlog(fan)
        if backlog > peak.load(ordering: .relaxed) { peak.store(backlog, ordering: .relaxed) }
        guard backlog > backlogLimit else { return }
        var dropped = ofs_discarded()
        _ = ofs_fanotify_discard(fan, backlog, &dropped)
        guard dropped.events > 0 else { return }
        let operations: [(String, JSONValue)] = [
            ("create", .uint(dropped.create)), ("delete", .uint(dropped.delete_)), ("rename", .uint(dropped.rename)),
            ("modify", .uint(dropped.modify)), ("close_write", .uint(dropped.close_write)), ("attrib", .uint(dropped.attrib)),
            ("exec", .uint(dropped.exec)),
        ]
        log.post("file_events_lost", [("count", .uint(dropped.events)), ("operations", .object(operations)),
                                      ("reason", .string("backlog")), ("backlog_bytes", .int(backlog)),
                                      ("limit_bytes", .int(backlogLimit))])
    }

    /// After each drain the thread pauses for a millisecond: events pile up in the kernel's queue
    /// meanwhile (where the kernel merges repeats) and are read together, instead of the sandbox's
    /// process paying a wake-up of this thread for every event.
    private func serve() {
        var polls = [pollfd(fd: fan, events: Int16(POLLIN), revents: 0), pollfd(fd: thread.wakeFD, events: Int16(POLLIN), revents: 0)]
        while true {
            let n = poll(&polls, 2, -1)
            if n < 0 && errno == EINTR { continue }
            let stopping = n < 0 || polls[1].revents != 0
            // Drain: on stop, everything queued before it is logged.
            drain()
            if stopping { return }
            var wake = pollfd(fd: thread.wakeFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&wake, 1, 1)
        }
    }

    private func record(_ event: ofs_file_event, facts: inout [Int32: ProcessFacts?]) {
        if event.mask & OFS_FAN_Q_OVERFLOW != 0 {
            log.post("file_events_lost", [("count", .null), ("reason", .string("fanotify queue overflow"))])
            return
        }
        var operations: [JSONValue] = []
        for (bit, name) in [(OFS_FAN_CREATE, "create"), (OFS_FAN_DELETE, "delete"), (OFS_FAN_RENAME, "rename"),
                            (OFS_FAN_MODIFY, "modify"), (OFS_FAN_CLOSE_WRITE, "close_write"), (OFS_FAN_ATTRIB, "attrib"),
                            (OFS_FAN_OPEN_EXEC, "exec")]
        where event.mask & bit != 0 {
            operations.append(.string(name))
        }
        let process: ProcessFacts?
        if let known = facts[event.pid] {
            process = known
        } else {
            // A writer caught while it exits reads as a process without a pid inside: gone.
            let read = event.pid > 0 ? ProcessFacts.read(hostPID: event.pid, uidBase: uidBase).flatMap { $0.pid > 0 ? $0 : nil } : nil
            // A program that ran and exited before this read is still named: the recorder saw its
            // execve, and the pid inside it remembers is the one that ran it.
            process = read ?? (event.mask & OFS_FAN_OPEN_EXEC != 0 && event.pid > 0 ? ProcessFacts.remembered(hostPID: event.pid) : nil)
            facts[event.pid] = process
        }
        // An empty path: the handle no longer resolves (the file, or its filesystem, is gone). A
        // directory's own change comes as its handle with the name ".": named as the directory.
        func path(_ text: String) -> JSONValue {
            if text.isEmpty { return .null }
            return .string(text == "/." ? "/" : text.hasSuffix("/.") ? String(text.dropLast(2)) : text)
        }
        var fields: [(String, JSONValue)] = [("operations", .array(operations)), ("path", path(Self.text(event.path)))]
        if event.mask & OFS_FAN_RENAME != 0 { fields.append(("old_path", path(Self.text(event.old_path)))) }
        fields.append(("directory", .bool(event.mask & OFS_FAN_ONDIR != 0)))
        if event.object_length > 0 { fields.append(("object", .string(Self.object(event)))) }
        if process == nil {
            fields.append(("writer_gone", .bool(true)))
            // Who the recorder last saw under that host pid (the calls it checked): the writer's
            // session, so a judgement can tell the harness's commands from the agent's.
            if event.pid > 0, let last = ProcessFacts.remembered(hostPID: event.pid), last.pid > 0 {
                fields.append(("writer_pid", .int(Int64(last.pid))))
                fields.append(("writer_sid", .int(Int64(last.sid))))
            }
        }
        log.post("file", process: process ?? nil, fields)
    }

    /// The object's identity as hex (`FileObject.hex` gives the same for a descriptor).
    private static func object(_ event: ofs_file_event) -> String {
        withUnsafeBytes(of: event.object) { FileObject.hex($0.prefix(Int(event.object_length))) }
    }

    private static func text<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
