import COffswitch
import Glibc
public import OffswitchCore
public import OffswitchEvidence
public import OffswitchImages
import Synchronization

/// One running sandbox: PID 1 (`offswitch-init`) in new mount, PID, network, UTS, IPC and cgroup
/// namespaces, an overlay root on a size-limited tmpfs, cgroup limits and a seccomp filter.
///
/// Thread-safe: exec and file calls may run concurrently from any thread. Calls block the calling
/// thread; `Sandbox+Async` offers async forms that keep the cooperative pool free.
public final class Sandbox: Sendable {
    public let id: String
    public let spec: SandboxSpec
    public let hostname: String
    /// PID 1's pid in the host's PID namespace.
    public let initPID: Int32
    /// Capabilities PID 1 reported after setup.
    public let initCapabilities: CapabilitySet
    /// How long each step of `create` took, in order (the profile of the create path).
    public let creationPhases: [(phase: String, nanoseconds: UInt64)]
    /// The file watcher's largest backlog seen so far and its limit, in bytes ((0, 0) unrecorded).
    package var fileBacklog: (peak: Int64, limit: Int64) { watcher?.backlog ?? (0, 0) }

    /// The evidence: every recorded syscall, command and lifecycle step (docs/events.md).
    public let events: EventLog
    /// Where the event log is written (NDJSON, docs/events.md), for readers that stream it.
    public var eventLogPath: String { events.path }
    /// Answers the recorded syscalls; nil when the profile records none.
    let recorder: NotifySupervisor?
    /// Records the calls the kernel recorder takes (`KernelPlan`), when it is loaded.
    let kernelRecorder: KernelFollow?
    /// Who records this sandbox's calls; nil when it records nothing.
    public let recorderReport: RecorderReport?
    /// Watches file changes; on whenever the recorder is.
    let watcher: FileWatcher?
    /// The overlays as the diff reads them: upper directories and their lower layers.
    let diffLayers: [UpperDiff.Layer]
    /// What the diff at destroy (and the baseline's snapshot) may hash, and for how long.
    public let diffLimits: DiffLimits

    let control: ControlChannel
    let pidfd: Int32
    /// flock'ed for the sandbox's lifetime; see `Leftovers`.
    let ownerLock: Int32
    /// The sandbox's own host ids, given back when destroy has ended every process.
    let hostIDs: HostIDSlot
    let cgroups: SandboxCgroups
    let filesystem: SandboxFilesystem
    /// The image the root is made of, held (so it cannot be removed) until the sandbox goes.
    public let image: ImageStore.Use?

    private struct State {
        var ended: SandboxEnd?
        var destroyed = false
        var baseline: [String: UpperDiff.Baseline] = [:]
        var keepsTexts = false
        var diffTexts: [String: String] = [:]
    }
    private let state = Mutex(State())

    /// The overlay's upper directory on the host (what the agent changed), readable until destroy.
    public var upperDirectory: String { filesystem.upper }

    // MARK: create

    /// Whether this host can run sandboxes at all (root, kernel features); one sentence if not.
    public static func verifyHost() throws(OffswitchError) {
        try HostEnvironment.shared.get()
    }

    /// Builds and starts a sandbox. On failure nothing of it is left behind.
    /// `eventLog`: where to write the event log; by default it lives in the sandbox's state
    /// directory and goes with destroy. A path given here outlives the sandbox.
    /// `fileBacklogLimit`: the file watcher's queue limit in bytes (`FileWatcher`).
    /// `diffLimits`: the bounds of the diff's hashing at destroy (`DiffLimits`).
    /// `network`: the namespace to join when `spec.network` names a sandbox (its `networkNamespace()`).
    /// `prepare`: what the harness places before the sandbox is handed over, run before a
    /// read-only root (`spec.readOnlyRoot`) is sealed, as Docker's build writes an image's files.
    public static func create(_ spec: SandboxSpec = SandboxSpec(), paths: StatePaths = .standard,
                              eventLog: String? = nil,
                              fileBacklogLimit: Int64 = FileWatcher.defaultBacklogLimit,
                              diffLimits: DiffLimits = .standard, network: NetworkNamespace? = nil,
                              prepare: ((Sandbox) throws(OffswitchError) -> Void)? = nil) throws(OffswitchError) -> Sandbox {
        try create(spec, paths: paths, eventLog: eventLog, fileBacklogLimit: fileBacklogLimit, diffLimits: diffLimits,
                   network: network, prepare: prepare, fault: nil)
    }

    /// `create`, failing on purpose right after the stage `fault` names (tests of the unwinding).
    /// The stages share one cleanup stack: whichever fails, what the earlier ones made is undone.
    package static func create(_ spec: SandboxSpec = SandboxSpec(), paths: StatePaths = .standard,
                               eventLog: String? = nil, fileBacklogLimit: Int64 = FileWatcher.defaultBacklogLimit,
                               diffLimits: DiffLimits = .standard, network: NetworkNamespace? = nil,
                               prepare: ((Sandbox) throws(OffswitchError) -> Void)? = nil,
                               fault: LaunchFault?) throws(OffswitchError) -> Sandbox {
        let sandbox = try launch(spec, paths: paths, eventLog: eventLog, fileBacklogLimit: fileBacklogLimit, diffLimits: diffLimits,
                                 network: network, fault: fault)
        do throws(OffswitchError) {
            try prepare?(sandbox)
            if spec.readOnlyRoot { try sandbox.sealRoot() }
        } catch {
            try? sandbox.destroy()
            throw error
        }
        return sandbox
    }

    private static func launch(_ spec: SandboxSpec, paths: StatePaths, eventLog: String?, fileBacklogLimit: Int64,
                               diffLimits: DiffLimits, network: NetworkNamespace?, fault: LaunchFault?) throws(OffswitchError) -> Sandbox {
        var launch = Launch(spec: spec, paths: paths, fault: fault)
        do throws(OffswitchError) {
            let plan = try launch.checkHost(network: network)
            let made = try launch.makeStateDirectory(plan, eventLog: eventLog)
            let cgroups = try launch.makeCgroups(plan)
            let spawned = try launch.spawnInit(plan, made, cgroups: cgroups)
            let ready = try launch.setUp(plan, made, spawned, network: network)
            let recording = try launch.startRecorder(plan, made, spawned, ready, fileBacklogLimit: fileBacklogLimit)
            launch.cleanup.disarm()
            let layouts = made.layouts
            return Sandbox(id: plan.id, spec: launch.spec, hostname: plan.hostname, initPID: spawned.pid,
                           initCapabilities: ready.capabilities, creationPhases: launch.clock.phases,
                           control: spawned.control, pidfd: spawned.pidfd, ownerLock: made.ownerLock, hostIDs: made.hostIDs, cgroups: cgroups,
                           filesystem: made.filesystem, events: made.events, recorder: recording.recorder,
                           watcher: recording.watcher, kernel: recording.kernel, report: recording.report, diffLimits: diffLimits, image: layouts.image,
                           diffLayers: [UpperDiff.Layer(upper: layouts.root.upper, mountPoint: "/", lowers: layouts.root.lower)]
                               + (layouts.usr.map { [UpperDiff.Layer(upper: $0.upper, mountPoint: "/usr", lowers: $0.lower)] } ?? []))
        } catch {
            launch.cleanup.unwind()
            throw error
        }
    }

    private init(id: String, spec: SandboxSpec, hostname: String, initPID: pid_t, initCapabilities: CapabilitySet,
                 creationPhases: [(phase: String, nanoseconds: UInt64)],
                 control: ControlChannel, pidfd: Int32, ownerLock: Int32, hostIDs: HostIDSlot, cgroups: SandboxCgroups, filesystem: SandboxFilesystem,
                 events: EventLog, recorder: NotifySupervisor?, watcher: FileWatcher?, kernel: KernelFollow?, report: RecorderReport?, diffLimits: DiffLimits,
                 image: ImageStore.Use?, diffLayers: [UpperDiff.Layer]) {
        self.image = image
        self.watcher = watcher
        self.diffLimits = diffLimits
        self.diffLayers = diffLayers
        self.events = events
        self.recorder = recorder
        kernelRecorder = kernel
        recorderReport = report
        self.creationPhases = creationPhases
        self.ownerLock = ownerLock
        self.hostIDs = hostIDs
        self.id = id
        self.spec = spec
        self.hostname = hostname
        self.initPID = initPID
        self.initCapabilities = initCapabilities
        self.control = control
        self.pidfd = pidfd
        self.cgroups = cgroups
        self.filesystem = filesystem
    }

    deinit {
        try? destroy()
    }

    // MARK: state

    /// nil while PID 1 runs; afterwards how the sandbox ended.
    public var end: SandboxEnd? {
        if let ended = state.withLock({ $0.ended }) { return ended }
        var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
        guard poll(&fds, 1, 0) > 0 else { return nil }
        return collectEnd()
    }

    /// Whether a shutdown is under way or done: PID 1 has a SIGTERM pending (sent, not yet
    /// handled), it is exiting (`PF_EXITING` in /proc/PID/stat's flags: it took the signal and the
    /// kernel is killing the namespace), or it is gone. A sender's kill(1, SIGTERM) returns before
    /// PID 1 acts on it, and PID 1 shares the sandbox's CPU quota, so it can sit throttled for most
    /// of a quota period between taking the signal and exiting: the check repeats for up to
    /// `graceMilliseconds` before it says no (pass a short grace when no SIGTERM to PID 1 was
    /// recorded: `sigtermsToInit`). This lets a harness tell "the machine is going down" from "it
    /// survived".
    public func isShuttingDown(graceMilliseconds: Int32 = 250) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(graceMilliseconds) * 1_000_000
        while true {
            if state.withLock({ $0.ended != nil }) { return true }
            guard let status = readSmallFile("/proc/\(initPID)/status") else { return true }
            for line in status.split(separator: "\n") where line.hasPrefix("ShdPnd:") || line.hasPrefix("SigPnd:") {
                let mask = UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? 0
                if mask & (1 << (UInt64(SIGTERM) - 1)) != 0 { return true }
            }
            guard let stat = readSmallFile("/proc/\(initPID)/stat") else { return true }
            // After the command name: state ppid pgrp session tty_nr tpgid flags ...
            if let close = stat.lastIndex(of: ")") {
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                if fields.count > 6, let flags = UInt64(fields[6]), flags & 0x4 != 0 { return true }  // PF_EXITING
            }
            var fds = [pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 1, 5) > 0 { return true }
            if monotonicNanoseconds() >= deadline { return false }
        }
    }

    /// Takes what the upper layer holds now as the "before" of the final diff: call it when the
    /// harness has placed its files (`shutdown.sh`) and hands the sandbox to the agent.
    public func markBaseline() {
        // What the setup changed is logged before the baseline, not after it as if the agent's.
        watcher?.flush()
        let snapshot = UpperDiff(layers: diffLayers, uidBase: spec.userNamespace?.hostUID ?? 0).snapshot(limits: diffLimits)
        state.withLock { $0.baseline = snapshot }
        events.append("baseline", [("paths", .int(Int64(snapshot.count)))])
    }

    /// Logs the file events the watcher still holds: what the sandbox did so far is in the log
    /// once this returns (a judgement reads it next).
    public func flushFileEvents() { watcher?.flush() }

    /// Asks `destroy` to keep the before and after contents of changed short text files
    /// (`diffTexts`), for a report's file diff.
    public func keepDiffTexts() { state.withLock { $0.keepsTexts = true } }

    /// After `destroy`, when `keepDiffTexts()` was called: changed files' contents by SHA-256.
    public var diffTexts: [String: String] { state.withLock { $0.diffTexts } }

    /// Freezes every process of the sandbox, PID 1 included, until `thaw()`; logged as `frozen`
    /// with `why`. While frozen nothing inside can watch or undo what the host reads.
    public func freeze(why: String) throws(OffswitchError) {
        try cgroups.setFrozen(true)
        events.append("frozen", [("why", .string(why))])
    }

    /// Lets the processes `freeze(why:)` stopped run again; logged as `thawed`.
    public func thaw() throws(OffswitchError) {
        try cgroups.setFrozen(false)
        events.append("thawed")
    }

    /// SIGTERMs to PID 1 the recorder let through so far (nil when nothing is recorded).
    public var sigtermsToInit: Int? { recorder?.sigtermsToInit }

    /// The calls `onExecve` needs recorded, each without argument conditions.
    public static let execCalls = ["execve", "execveat"]

    /// Runs `body` with the caller's host tid before every execve the sandbox's processes make
    /// (the recorder's thread, while the caller waits: `NotifySupervisor.onExecve`). false when
    /// the recorder does not see every call of `execCalls`, so that nothing was installed.
    public func onExecve(_ body: @escaping @Sendable (Int32) -> Void) -> Bool {
        guard let recorder, Self.execCalls.allSatisfy({ name in spec.record.contains { $0.name == name && $0.args.isEmpty } }) else {
            return false
        }
        recorder.onExecve(body)
        return true
    }

    /// Tasks in the sandbox's pids group and its limit, when a pids group exists.
    public var pidsUsage: (current: Int, limit: Int?)? { cgroups.pids }

    /// The sandbox's cgroup directories on the host (v2 group, v1 controller groups), until destroy.
    package var cgroupDirectories: [String] { cgroups.directories }
    /// Host pids of the sandbox's processes: PID 1 and every member of its cgroups.
    package var hostPIDs: [Int32] { (cgroups.members.union([initPID])).sorted() }

    /// Whether `destroy` has run (the event log is complete then).
    public var isDestroyed: Bool { state.withLock { $0.destroyed } }

    /// How the sandbox shut down, if it did (SIGTERM to PID 1, from inside or outside).
    public var shutdown: ShutdownInfo? { end?.shutdown }

    /// Reaps PID 1 (which has exited or is exiting) and reads its last report. Idempotent.
    @discardableResult
    func collectEnd() -> SandboxEnd {
        state.withLock { state in
            if let ended = state.ended { return ended }
            var shutdown: ShutdownInfo?
            for report in control.drainReports() {
                if case .shutdown(let info) = report { shutdown = info }
            }
            var status: Int32 = 0
            while waitpid(initPID, &status, __WALL) < 0 && errno == EINTR {}
            // Every process of the namespace has exited now: log their exits before the end.
            if recorder != nil { ProcessExits.shared.untrack(log: events) }
            let ended = SandboxEnd(shutdown: shutdown, initStatus: status, at: unixNanoseconds())
            state.ended = ended
            var fields: [(String, JSONValue)] = [("how", .string(ended.description))]
            if let shutdown {
                fields += [("signal", .int(Int64(shutdown.signal))), ("sender_pid", .int(Int64(shutdown.senderPID))),
                           ("sender_uid", .int(Int64(shutdown.senderUID))), ("at_unix_ns", .uint(shutdown.unixNanoseconds))]
                if let code = shutdown.code { fields.append(("si_code", .int(Int64(code)))) }
            }
            events.append(shutdown != nil ? "shutdown" : "init_exited", fields)
            return ended
        }
    }

    /// Throws unless PID 1 is alive and the sandbox not destroyed.
    func ensureRunning() throws(OffswitchError) {
        if state.withLock({ $0.destroyed }) {
            throw OffswitchError(.sandboxDestroyed, "sandbox \(id) has been destroyed")
        }
        if let ended = end { throw ended.error(id: id) }
    }

    // MARK: shutdown and destroy

    /// Shuts the sandbox down the way the agent's `kill -s TERM 1` would, and waits until it is.
    public func shutDown() throws(OffswitchError) {
        try ensureRunning()
        // PID 1 is told pid 0 for a signal from outside, and also for one the kernel raises on a
        // process's behalf (a descriptor armed with F_SETOWN 1 and F_SETSIG): this says which.
        events.append("shutdown_requested", [("origin", .string("host"))])
        if kill(initPID, SIGTERM) != 0 { throw OffswitchError.system("kill(\(initPID), SIGTERM)", errno: errno) }
        collectEnd()
    }

    /// Kills every process, unmounts everything, removes cgroups and directories, closes fds.
    /// Calling it again does nothing.
    public func destroy() throws(OffswitchError) {
        let first = state.withLock { state -> Bool in
            defer { state.destroyed = true }
            return !state.destroyed
        }
        guard first else { return }
        // File events still queued are logged while the filesystems are mounted (their paths
        // resolve), with the processes frozen first so that no more come (a process writing
        // without pause made this endless on a loaded machine); without a freezer, for a while
        // only. What happens during teardown is drained by stop() below. Frozen processes still
        // die of SIGKILL (cgroup v2).
        let running = state.withLock { $0.ended == nil }
        let frozen = running && (try? cgroups.setFrozen(true)) != nil
        watcher?.flush(whole: frozen || !running)
        if running {
            kill(initPID, SIGKILL)  // PID 1 going takes the whole namespace with it
            cgroups.killAll()
            collectEnd()
        }
        kernelRecorder?.stop()
        recorder?.stop()
        watcher?.stop()
        // Every process is gone: the upper layer is final. What changed, before it is discarded;
        // the agent sized its files, so the diff's hashing has bounds and a deadline (DiffLimits).
        let baseline = state.withLock { $0.baseline }
        let diff = UpperDiff(layers: diffLayers, uidBase: spec.userNamespace?.hostUID ?? 0, baseline: baseline)
        let changes = diff.changes(limits: diffLimits)
        if state.withLock({ $0.keepsTexts }) {
            let texts = diff.texts(of: changes.entries)
            state.withLock { $0.diffTexts = texts }
        }
        for change in changes.entries { events.append("file_changed", change) }
        events.append("diff_complete", changes.summary)
        events.summarizeDrops()
        events.append("sandbox_destroyed")
        close(control.fd)
        close(pidfd)
        var failure: OffswitchError?
        do { try cgroups.remove() } catch { failure = error }
        do { try filesystem.remove() } catch { failure = failure ?? error }
        // Unmounted with the namespace and the tmpfs: the image may go now.
        image?.release()
        hostIDs.release()
        close(ownerLock)
        if let failure { throw failure }
    }
}

/// How a sandbox ended.
public struct SandboxEnd: Sendable, Equatable, CustomStringConvertible {
    public var description: String {
        if let shutdown { return "shut down by signal \(shutdown.signal) from pid \(shutdown.senderPID)" }
        return ofs_wifsignaled(initStatus) != 0 ? "PID 1 was killed by signal \(ofs_wtermsig(initStatus))"
            : "PID 1 exited with status \(ofs_wexitstatus(initStatus))"
    }

    /// Set when PID 1 received SIGTERM: a real shutdown.
    public var shutdown: ShutdownInfo?
    /// PID 1's wait status.
    public var initStatus: Int32
    public var at: UInt64

    func error(id: String) -> OffswitchError {
        if let shutdown {
            let sender = shutdown.senderPID == 0 ? "from outside the sandbox" : "from pid \(shutdown.senderPID) (uid \(shutdown.senderUID))"
            return OffswitchError(.sandboxShutDown, "sandbox \(id) has been shut down (signal \(shutdown.signal) \(sender))")
        }
        let how = ofs_wifsignaled(initStatus) != 0 ? "was killed by signal \(ofs_wtermsig(initStatus))" : "exited with status \(ofs_wexitstatus(initStatus))"
        return OffswitchError(.sandboxShutDown, "sandbox \(id) has been shut down: its PID 1 \(how)")
    }
}

/// Durations of consecutive phases.
struct PhaseClock {
    private(set) var phases: [(phase: String, nanoseconds: UInt64)] = []
    private var last = monotonicNanoseconds()

    mutating func mark(_ phase: String) {
        let now = monotonicNanoseconds()
        phases.append((phase, now - last))
        last = now
    }
}

enum SandboxID {
    /// 12 hex digits, like a short container id.
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() & 0xFFFF_FFFF_FFFF
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 12 - digits.count) + digits
    }

    static func validateHostname(_ name: String) throws(OffswitchError) {
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 46 }
        guard !name.isEmpty, name.utf8.count <= 63, allowed else {
            throw OffswitchError(.invalidArgument, "hostname \"\(name)\": use 1 to 63 letters, digits, '-' or '.'")
        }
    }
}
