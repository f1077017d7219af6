import Glibc
import Synchronization
public import OffswitchCore

/// One sandbox's event log: NDJSON, one event a line (format in docs/events.md).
///
/// Events get their sequence number and time when they are appended, in the order of the calls,
/// and a writer thread of the log serializes and writes them, in that order, as soon as it wakes
/// (a batch of lines per write(2); nothing waits for more). The recorder's hot paths `post` and
/// go on; everyone else `append`s, which returns once the line, and every line before it, is in
/// the file. The queue between them is bounded: when it is full, posting waits for the writer
/// (the sandbox slows down; no event is dropped).
public final class EventLog: Sendable {
    public static let formatVersion = 1
    /// Events queued and not yet written, at most; then `post` waits.
    public static let queueCapacity = 8192
    public let path: String
    private let queue: LineQueue
    private let writer: WorkerThread

    /// Creates (or truncates) the log at `path`, mode 0600, and starts its writer. With a budget,
    /// what the sandbox's own doings add is bounded (`EvidenceBudget`).
    public init(path: String, budget: EvidenceBudget? = nil) throws(OffswitchError) {
        self.path = path
        let fd = try systemCall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600) }
        queue = LineQueue(fd: fd, origin: monotonicNanoseconds(), budget: budget)
        do throws(OffswitchError) {
            writer = try WorkerThread("event log writer")
            try writer.start("event log writer") { [queue] in queue.writeUntilClosed() }
        } catch {
            close(fd)
            throw error
        }
    }

    deinit {
        queue.close()
        writer.stop()
        Glibc.close(queue.fd)
    }

    /// Appends one event (the common fields, then the process when there is one, then `fields`)
    /// and returns once it is in the file. 0 when the budget dropped it.
    @discardableResult
    public func append(_ kind: String, process: ProcessFacts? = nil, _ fields: [(String, JSONValue)] = []) -> UInt64 {
        drainKernel()
        let seq = queue.push(kind, process, fields, urgent: true)
        queue.waitWritten(seq)
        return seq
    }

    /// Queues one event and returns without waiting for the write: its place in the log is fixed
    /// now, before anything it causes. For the recorder's threads. 0 when the budget dropped it.
    @discardableResult
    public func post(_ kind: String, process: ProcessFacts? = nil, _ fields: [(String, JSONValue)] = []) -> UInt64 {
        drainKernel()
        return queue.push(kind, process, fields, urgent: false)
    }

    /// The kernel recorder's post: `monotonicTime` is when the call was made (CLOCK_MONOTONIC), and
    /// `drained` says the caller is the drain itself.
    @discardableResult
    func post(_ kind: String, process: ProcessFacts? = nil, _ fields: [(String, JSONValue)], monotonicTime: UInt64? = nil,
              drained: Bool) -> UInt64 {
        if !drained { drainKernel() }
        return queue.push(kind, process, fields, urgent: false, monotonicTime: monotonicTime)
    }

    /// What every event but the kernel recorder's own drains first: the records its ring holds
    /// are of calls made before this event's cause, so they take their places before it. A weak
    /// reference, not a closure: a closure kept in a Mutex was wrapped in two more thunks at every
    /// access in unoptimised builds, until calling it took longer than the sandbox's run.
    private struct Source: @unchecked Sendable {
        weak var follow: KernelFollow?
    }
    private let kernelSource = Mutex(Source())

    func setDrain(_ follow: KernelFollow?) {
        kernelSource.withLock { $0.follow = follow }
    }

    private func drainKernel() {
        kernelSource.withLock { $0.follow }?.drain()
    }

    /// Returns once every event appended or posted so far is in the file.
    public func flush() {
        queue.waitWritten(count)
    }

    /// Events appended or posted so far.
    public var count: UInt64 { queue.lastSequence }

    /// While a trigger call is open (`true` from its shutdown answer until the trigger reports back
    /// or the next call), critical events are kept up to `EvidenceBudget.callBytes`: the forks and
    /// signals that trace a SIGTERM to the trigger's script are then in the log however the agent
    /// spent the budget before.
    public func holdCritical(_ held: Bool) {
        queue.holdCritical(held)
    }

    /// Appends `evidence_dropped` (the count of each kind the budget dropped) when it dropped any.
    /// Called once, as the sandbox ends; events dropped later are not counted in it.
    public func summarizeDrops() {
        let dropped = queue.takeDropped()
        guard !dropped.isEmpty else { return }
        let counts = dropped.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.uint($0.value)) }
        append("evidence_dropped", [("total", .uint(dropped.values.reduce(0, +))), ("events", .object(counts))])
    }
}

/// How much event log the sandbox's own doings may fill (`limits.evidence`, docs/events.md
/// "The evidence budget"). Events are of three tiers:
///
/// - essential: what the host and the harness log for their own reasons, bounded by them (creation,
///   commands, trigger calls, scenario states, shutdowns, the diff): always written;
/// - critical: what a verdict traces causes through (forks, exits, signals, execs, refused
///   trigger calls, lost-event counts): written until the log holds `criticalBytes`, and while a
///   trigger call is open (`EventLog.holdCritical`) until it holds `callBytes`;
/// - ordinary: every other syscall and file event: written until the log holds `ordinaryBytes`.
///
/// The first event a tier drops is replaced by `evidence_budget_reached`; the log's bytes are
/// counted as written, so queued events may take it past the bound by at most the queue's length.
public struct EvidenceBudget: Sendable, Equatable {
    public var ordinaryBytes: UInt64
    public var criticalBytes: UInt64
    public var callBytes: UInt64

    /// Ordinary events until `bytes`, critical ones in a quarter more, or twice `bytes` during a
    /// trigger call.
    public init(bytes: UInt64) {
        ordinaryBytes = bytes
        criticalBytes = bytes + bytes / 4
        callBytes = 2 * bytes
    }

    public enum Tier: String, Sendable {
        case essential, critical, ordinary
        /// Critical events while a trigger call is open: the bound they met is `callBytes`.
        case criticalInCall = "critical_during_trigger_call"
    }

    static let criticalSyscalls: Set<String> = ["kill", "tkill", "tgkill", "pidfd_send_signal", "rt_sigqueueinfo",
                                                "rt_tgsigqueueinfo", "execve", "execveat"]

    /// The tier of an event, and the name its drops are counted under (`syscall:openat`).
    static func tier(_ kind: String, _ fields: [(String, JSONValue)]) -> (Tier, String) {
        switch kind {
        case "process_forked", "process_exited", "trigger_call_refused", "file_events_lost", "process_events_lost", "syscall_events_lost":
            return (.critical, kind)
        case "syscall":
            let name = fields.first { $0.0 == "syscall" }?.1.string ?? "?"
            return (criticalSyscalls.contains(name) ? .critical : .ordinary, "syscall:" + name)
        case "file":
            // What the kernel executed is a cause (docs/events.md, `exec`).
            let operations = fields.first { $0.0 == "operations" }?.1
            if case .array(let items)? = operations, items.contains(.string("exec")) { return (.critical, "file:exec") }
            return (.ordinary, kind)
        default:
            return (.essential, kind)
        }
    }
}

/// The events between the threads that log and the writer, under one pthread mutex with two
/// conditions (Synchronization's Mutex has no condition variable).
private final class LineQueue: @unchecked Sendable {
    struct Entry {
        var seq: UInt64
        var time: UInt64
        var kind: String
        var process: ProcessFacts?
        var fields: [(String, JSONValue)]
    }

    let fd: Int32
    private let origin: UInt64
    private let budget: EvidenceBudget?
    /// Bytes and events written so far, for the budget.
    private var writtenBytes: UInt64 = 0
    private var writtenEvents: UInt64 = 0
    /// Events the writer has taken and not yet written.
    private var inFlight = 0
    /// Tiers the budget has started to drop, and the count of each kind dropped.
    private var shedding: Set<EvidenceBudget.Tier> = []
    /// A trigger call is open: critical events go to `callBytes`.
    private var criticalHeld = false
    private var dropped: [String: UInt64] = [:]
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Signalled when there is work for the writer (or the log closes).
    private let work = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Broadcast when the writer has written a batch (room in the queue, lines in the file).
    private let written = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var pending: [Entry] = []
    private var sequence: UInt64 = 0
    private var writtenThrough: UInt64 = 0
    private var closing = false
    /// The writer is writing or pausing after a write: posts do not wake it (a wake-up of another
    /// CPU costs the poster microseconds), they are taken after the pause.
    private var napping = false
    /// The time of the last event queued.
    private var lastTime: UInt64 = 0
    /// Someone waits for a queued line: the writer skips its pause.
    private var urgent = false
    /// The pause after each write, in nanoseconds: posts pile up in it and are written together.
    private static let napNanoseconds = 1_000_000

    init(fd: Int32, origin: UInt64, budget: EvidenceBudget?) {
        self.fd = fd
        self.origin = origin
        self.budget = budget
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(work, nil)
        pthread_cond_init(written, nil)
        pending.reserveCapacity(64)
    }

    deinit {
        pthread_cond_destroy(work)
        pthread_cond_destroy(written)
        pthread_mutex_destroy(mutex)
        work.deallocate()
        written.deallocate()
        mutex.deallocate()
    }

    var lastSequence: UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return sequence
    }

    @discardableResult
    func push(_ kind: String, _ process: ProcessFacts?, _ fields: [(String, JSONValue)], urgent wanted: Bool,
              monotonicTime: UInt64? = nil) -> UInt64 {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while pending.count >= EventLog.queueCapacity && !closing { pthread_cond_wait(written, mutex) }
        if let budget {
            var (tier, name) = EvidenceBudget.tier(kind, fields)
            if tier == .critical && criticalHeld { tier = .criticalInCall }
            let bound = switch tier {
            case .ordinary: budget.ordinaryBytes
            case .criticalInCall: budget.callBytes
            default: budget.criticalBytes
            }
            // What the log will hold once the queue is written: queued events at the mean size so far.
            let mean = writtenEvents > 0 ? writtenBytes / writtenEvents : 256
            let projected = writtenBytes + UInt64(pending.count + inFlight) * mean
            if tier != .essential && projected >= bound {
                dropped[name, default: 0] += 1
                guard !shedding.contains(tier) else { return 0 }
                shedding.insert(tier)
                // In its place, once: the bound was reached, and from here on the tier is dropped.
                sequence += 1
                pending.append(Entry(seq: sequence, time: monotonicNanoseconds() &- origin, kind: "evidence_budget_reached", process: nil,
                                     fields: [("tier", .string(tier.rawValue)), ("budget_bytes", .uint(bound)),
                                              ("logged_bytes", .uint(projected)), ("first_dropped", .string(name))]))
                if pending.count == 1 && !napping { pthread_cond_signal(work) }
                return 0
            }
        }
        sequence += 1
        // A kernel record's time is its call's; the log's times never go back (a record read
        // late may be older than the last event queued).
        var time = (monotonicTime ?? monotonicNanoseconds()) &- origin
        if let monotonicTime, monotonicTime < origin { time = 0 }
        time = max(time, lastTime)
        lastTime = time
        pending.append(Entry(seq: sequence, time: time, kind: kind, process: process, fields: fields))
        if wanted {
            urgent = true
            pthread_cond_signal(work)
        } else if pending.count == 1 && !napping {
            pthread_cond_signal(work)
        }
        return sequence
    }

    func holdCritical(_ held: Bool) {
        pthread_mutex_lock(mutex)
        criticalHeld = held
        pthread_mutex_unlock(mutex)
    }

    func takeDropped() -> [String: UInt64] {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        defer { dropped = [:] }
        return dropped
    }

    func waitWritten(_ seq: UInt64) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while writtenThrough < seq && !(closing && pending.isEmpty) { pthread_cond_wait(written, mutex) }
    }

    /// Lets the writer finish what is queued and return.
    func close() {
        pthread_mutex_lock(mutex)
        closing = true
        pthread_cond_signal(work)
        pthread_mutex_unlock(mutex)
    }

    /// The writer thread: takes everything queued, writes it, pauses (unless someone waits), until
    /// closed and empty.
    func writeUntilClosed() {
        var batch: [Entry] = []
        var bytes: [UInt8] = []
        pthread_mutex_lock(mutex)
        while true {
            while pending.isEmpty && !closing {
                napping = false
                pthread_cond_wait(work, mutex)
            }
            if pending.isEmpty {
                pthread_cond_broadcast(written)
                pthread_mutex_unlock(mutex)
                return
            }
            swap(&batch, &pending)
            inFlight = batch.count
            napping = true
            urgent = false
            pthread_mutex_unlock(mutex)

            bytes.removeAll(keepingCapacity: true)
            for entry in batch {
                var object: [(String, JSONValue)] = [("seq", .uint(entry.seq)), ("t_ns", .uint(entry.time)), ("kind", .string(entry.kind))]
                if let process = entry.process { object += process.fields }
                object += entry.fields
                bytes += JSONValue.object(object).serialized.utf8
                bytes.append(10)
            }
            // A failing write (a full disk) loses this batch only; the next one is tried.
            _ = writeAll(fd, bytes)
            let last = batch.last?.seq ?? 0
            let count = UInt64(batch.count)
            batch.removeAll(keepingCapacity: true)

            pthread_mutex_lock(mutex)
            writtenThrough = last
            writtenBytes += UInt64(bytes.count)
            writtenEvents += count
            inFlight = 0
            pthread_cond_broadcast(written)
            if !urgent && !closing {
                var until = timespec()
                clock_gettime(CLOCK_REALTIME, &until)
                until.tv_nsec += Self.napNanoseconds
                until.tv_sec += until.tv_nsec / 1_000_000_000
                until.tv_nsec %= 1_000_000_000
                _ = pthread_cond_timedwait(work, mutex, &until)
            }
        }
    }
}
