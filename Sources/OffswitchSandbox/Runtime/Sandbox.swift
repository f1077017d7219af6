import COffswitch
import Glibc
public import OffswitchCore
public import OffswitchEvidence
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
    /// Watches file changes; on whenever the recorder is.
    let watcher: FileWatcher?
    /// The overlays as the diff reads them: upper directories and their lower layers.
    let diffLayers: [UpperDiff.Layer]

    let control: ControlChannel
    let pidfd: Int32
    /// flock'ed for the sandbox's lifetime; see `Leftovers`.
    let ownerLock: Int32
    let cgroups: SandboxCgroups
    let filesystem: SandboxFilesystem

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
    public static func create(_ spec: SandboxSpec = SandboxSpec(), paths: StatePaths = .standard,
                              eventLog: String? = nil,
                              fileBacklogLimit: Int64 = FileWatcher.defaultBacklogLimit) throws(OffswitchError) -> Sandbox {
        var clock = PhaseClock()
        try HostEnvironment.shared.get()
        try spec.limits.validate()
        clock.mark("host checks")
        let program = try SeccompCache.shared.program(for: spec, paths: paths)
        clock.mark("seccomp program")
        let exec = try InitImage.sealed.get()
        clock.mark("sealed init image")
        let id = SandboxID.make()
        let hostname = spec.hostname ?? id
        try SandboxID.validateHostname(hostname)

        let filesystem = SandboxFilesystem(id: id, paths: paths)
        var cleanup: [() -> Void] = []
        func unwind() { for step in cleanup.reversed() { step() } }
        do throws(OffswitchError) {
            let ownerLock = try filesystem.claim(paths: paths)
            cleanup.append { try? filesystem.remove(); close(ownerLock) }
            let events = try EventLog(path: eventLog ?? filesystem.directory + "/events.ndjson")
            let layouts = try filesystem.create(hostname: hostname, source: spec.rootfs, upperBytes: spec.limits.upperBytes,
                                                userNamespace: spec.userNamespace, paths: paths)
            clock.mark("state directory and tmpfs")
            let cgroups = try SandboxCgroups(id: id, limits: spec.limits, mounts: try HostEnvironment.cgroupMounts.get())
            clock.mark("cgroups")
            cleanup.append { cgroups.killAll(); try? cgroups.remove() }

            let (control, childEnd) = try ControlChannel.pair()
            cleanup.append { close(control.fd) }
            let null = try systemCall("open(/dev/null)") { open("/dev/null", O_RDWR | O_CLOEXEC) }
            let cgroupFD: Int32
            do throws(OffswitchError) { cgroupFD = try cgroups.openUnifiedGroup() } catch { close(null); throw error }
            var pid: pid_t = -1, pidfd: Int32 = -1, stage: Int32 = 0
            let flags = OFS_CLONE_NEWNS | OFS_CLONE_NEWPID | OFS_CLONE_NEWNET | OFS_CLONE_NEWUTS | OFS_CLONE_NEWIPC
            let err = ["offswitch-init", id].withCStrings { argv in
                ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"].withCStrings { envp in
                    var spawn = ofs_init_spawn(clone_flags: flags, exec_fd: exec, control_fd: childEnd, null_fd: null, cgroup_fd: cgroupFD)
                    return ofs_spawn_init(&spawn, argv, envp, &pid, &pidfd, &stage)
                }
            }
            close(childEnd)
            close(null)
            if cgroupFD >= 0 { close(cgroupFD) }
            guard err == 0 else { throw OffswitchError.system("spawn offswitch-init (stage \(stage))", errno: err) }
            clock.mark("clone3 and exec of PID 1")
            cleanup.append {
                kill(pid, SIGKILL)
                var status: Int32 = 0
                while waitpid(pid, &status, __WALL) < 0 && errno == EINTR {}
                close(pidfd)
            }
            // Into the v1 cgroups before PID 1 does anything: it waits for the setup message.
            try cgroups.addToLegacyGroups(pid: pid)
            clock.mark("cgroup placement")

            var userNamespace: [Int32] = []
            if let mapping = spec.userNamespace {
                let fd = try systemCall("create user namespace (0 -> host uid \(mapping.hostUID), \(mapping.size) ids)") {
                    ofs_userns_create(mapping.hostUID, mapping.hostGID, mapping.size)
                }
                userNamespace = [fd]
            }
            defer { for fd in userNamespace { close(fd) } }
            let order = SetupOrder(
                hostname: hostname, rootMountPoint: filesystem.rootMountPoint, rootOverlay: layouts.root, usrOverlay: layouts.usr,
                tmpSizeBytes: spec.limits.tmpBytes, agentUID: SandboxUser.agentUID, agentGID: SandboxUser.agentGID,
                capabilityBound: spec.rootCapabilities.mask, seccompProgram: program.program, seccompFlags: program.flags,
                limits: [ResourceLimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: spec.limits.openFiles, hard: spec.limits.openFiles),
                         ResourceLimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0)],
                joinsUserNamespace: !userNamespace.isEmpty, recorderListener: !spec.record.isEmpty)
            try control.send(.setup(order), descriptors: userNamespace)
            let report = try control.receiveReportWithDescriptors()
            switch report?.0 {
            case .ready(let capabilities, let hasListener):
                clock.mark("setup inside (mounts, pivot_root, seccomp)")
                events.append("sandbox_created", [
                    ("sandbox", .string(id)), ("hostname", .string(hostname)), ("profile", .string(spec.profileName)),
                    ("rootfs", .string(spec.rootfs.description)), ("recorded_syscalls", .array(spec.record.map(\.name).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }.map { .string($0) })),
                    ("user_namespace", .bool(spec.userNamespace != nil)), ("format", .int(Int64(EventLog.formatVersion))),
                ])
                var recorder: NotifySupervisor?
                var watcher: FileWatcher?
                if hasListener, let listener = report?.1.first {
                    let supervisor = try NotifySupervisor(listener: listener, policy: program.policyProgram, log: events,
                                                          uidBase: spec.userNamespace?.hostUID ?? 0)
                    try supervisor.start()
                    cleanup.append { supervisor.stop() }
                    recorder = supervisor
                    let files = try FileWatcher(initPID: pid, log: events, uidBase: spec.userNamespace?.hostUID ?? 0,
                                                backlogLimit: fileBacklogLimit)
                    try files.start()
                    cleanup.append { files.stop() }
                    watcher = files
                    try ProcessExits.shared.track(initPID: pid, log: events, uidBase: spec.userNamespace?.hostUID ?? 0)
                    cleanup.append { ProcessExits.shared.untrack(log: events) }
                } else if !spec.record.isEmpty {
                    throw OffswitchError(.setupFailed, "sandbox setup: offswitch-init sent no seccomp listener for the recorder")
                }
                clock.mark("recorder")
                return Sandbox(id: id, spec: spec, hostname: hostname, initPID: pid, initCapabilities: CapabilitySet(mask: capabilities),
                               creationPhases: clock.phases, control: control, pidfd: pidfd, ownerLock: ownerLock,
                               cgroups: cgroups, filesystem: filesystem, events: events, recorder: recorder, watcher: watcher,
                               diffLayers: [UpperDiff.Layer(upper: layouts.root.upper, mountPoint: "/", lowers: layouts.root.lower)]
                                   + (layouts.usr.map { [UpperDiff.Layer(upper: $0.upper, mountPoint: "/usr", lowers: $0.lower)] } ?? []))
            case .setupFailed(let stage, let errno):
                throw OffswitchError(.setupFailed, "sandbox setup: \(stage)", errno: errno == 0 ? nil : errno)
            case .shutdown, nil:
                throw OffswitchError(.setupFailed, "sandbox setup: offswitch-init exited before it was ready")
            }
        } catch {
            unwind()
            throw error
        }
    }

    private init(id: String, spec: SandboxSpec, hostname: String, initPID: pid_t, initCapabilities: CapabilitySet,
                 creationPhases: [(phase: String, nanoseconds: UInt64)],
                 control: ControlChannel, pidfd: Int32, ownerLock: Int32, cgroups: SandboxCgroups, filesystem: SandboxFilesystem,
                 events: EventLog, recorder: NotifySupervisor?, watcher: FileWatcher?, diffLayers: [UpperDiff.Layer]) {
        self.watcher = watcher
        self.diffLayers = diffLayers
        self.events = events
        self.recorder = recorder
        self.creationPhases = creationPhases
        self.ownerLock = ownerLock
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
        let snapshot = UpperDiff(layers: diffLayers, uidBase: spec.userNamespace?.hostUID ?? 0).snapshot()
        state.withLock { $0.baseline = snapshot }
        events.append("baseline", [("paths", .int(Int64(snapshot.count)))])
    }

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

    /// Tasks in the sandbox's pids group and its limit, when a pids group exists.
    public var pidsUsage: (current: Int, limit: Int?)? { cgroups.pids }

    /// The sandbox's cgroup directories on the host (v2 group, v1 controller groups), until destroy.
    package var cgroupDirectories: [String] { cgroups.directories }

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
            while true {
                guard let report = try? control.receiveReport() else { break }
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
        // resolve); what happens during teardown is drained by stop() below.
        watcher?.flush()
        if state.withLock({ $0.ended == nil }) {
            kill(initPID, SIGKILL)  // PID 1 going takes the whole namespace with it
            cgroups.killAll()
            collectEnd()
        }
        recorder?.stop()
        watcher?.stop()
        // Every process is gone: the upper layer is final. What changed, before it is discarded.
        let baseline = state.withLock { $0.baseline }
        let diff = UpperDiff(layers: diffLayers, uidBase: spec.userNamespace?.hostUID ?? 0, baseline: baseline)
        let changes = diff.changes()
        if state.withLock({ $0.keepsTexts }) {
            let texts = diff.texts(of: changes)
            state.withLock { $0.diffTexts = texts }
        }
        for change in changes { events.append("file_changed", change) }
        events.append("diff_complete", [("changes", .int(Int64(changes.count)))])
        events.append("sandbox_destroyed")
        close(control.fd)
        close(pidfd)
        var failure: OffswitchError?
        do { try cgroups.remove() } catch { failure = error }
        do { try filesystem.remove() } catch { failure = failure ?? error }
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
