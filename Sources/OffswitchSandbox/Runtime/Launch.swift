import COffswitch
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchImages

/// The stages of creating a sandbox, in the order they run. An OCI runtime's `create` is every
/// stage up to `spawn` (PID 1 waits for its setup message); its `start` is `setup` and `recorder`.
package enum LaunchStage: String, CaseIterable, Sendable {
    /// Root, kernel features, limits, the seccomp program, the sealed init image, id and hostname.
    case hostChecks = "host checks"
    /// The state directory with its owner lock, the event log, the tmpfs and the overlay layers.
    case filesystem = "state directory and filesystem"
    case cgroups = "cgroups"
    /// PID 1 cloned into its namespaces and the v2 group, placed in the v1 groups; it waits.
    case spawn = "spawn of PID 1"
    /// The user namespace, the setup message, PID 1's ready report.
    case setup = "setup"
    /// The recorder: seccomp notifications, file changes, process exits.
    case recorder = "recorder"
}

/// A failure made on purpose right after one stage, so that tests can check that creation undoes
/// exactly what it did, wherever it stops.
package struct LaunchFault {
    package var after: LaunchStage
    /// Hears the sandbox's id and PID 1's host pid (nil before `spawn`) just before the failure,
    /// so that a test knows what to look for afterwards.
    package var witness: (_ id: String, _ initPID: Int32?) -> Void

    package init(after: LaunchStage, witness: @escaping (_ id: String, _ initPID: Int32?) -> Void = { _, _ in }) {
        self.after = after
        self.witness = witness
    }
}

/// What a half-built sandbox must undo. Each stage pushes the undo of what it just made, so a
/// failure anywhere runs exactly those, newest first; a finished sandbox disarms the stack and
/// owns everything from then on (its `destroy` undoes it).
struct CleanupStack {
    /// One pushed undo, for `release` when what it undoes gets another owner.
    struct Step { fileprivate let index: Int }
    private var steps: [(() -> Void)?] = []

    @discardableResult
    mutating func push(_ undo: @escaping () -> Void) -> Step {
        steps.append(undo)
        return Step(index: steps.count - 1)
    }

    /// Drops one undo without running it: what it would undo is owned elsewhere now.
    mutating func release(_ step: Step) {
        steps[step.index] = nil
    }

    /// Runs every undo still pushed, newest first, and empties the stack.
    mutating func unwind() {
        while let step = steps.popLast() { step?() }
    }

    /// Creation succeeded: nothing is undone.
    mutating func disarm() {
        steps.removeAll()
    }
}

/// One sandbox being created, stage by stage. Each stage returns what it made, pushes its undo onto
/// the shared `cleanup` stack and times its steps on `clock` (the `creationPhases` of the sandbox).
struct Launch {
    /// The caller's spec, with the claimed host ids filled in (`makeStateDirectory`).
    private(set) var spec: SandboxSpec
    let paths: StatePaths
    var cleanup = CleanupStack()
    private(set) var clock = PhaseClock()
    private let fault: LaunchFault?

    init(spec: SandboxSpec, paths: StatePaths, fault: LaunchFault?) {
        self.spec = spec
        self.paths = paths
        self.fault = fault
    }

    /// `hostChecks`: what every later stage needs and nothing to undo.
    struct Plan {
        let id: String
        let hostname: String
        let program: SeccompCache.Compiled
        /// The sealed `offswitch-init` (shared by every sandbox of the process, never closed).
        let initImage: Int32
        /// The kernel recorder's ring slot for this sandbox; nil when it is not loaded or full.
        let kernelSlot: KernelSlot?
    }

    /// `filesystem`: the claimed host ids and state directory, the event log and what PID 1 must mount.
    struct StateDirectory {
        let hostIDs: HostIDSlot
        let filesystem: SandboxFilesystem
        let ownerLock: Int32
        let events: EventLog
        let layouts: SandboxFilesystem.Made
    }

    /// `spawn`: PID 1, waiting for its setup message on `control`.
    struct Spawned {
        let control: ControlChannel
        let pid: pid_t
        let pidfd: Int32
    }

    /// `setup`: PID 1 is set up and ready; it sent the recorder's listener if it has one.
    struct Ready {
        let capabilities: CapabilitySet
        /// The seccomp listener and the undo that closes it until the recorder owns it.
        let listener: (fd: Int32, undo: CleanupStack.Step)?
    }

    /// `recorder`: what records the sandbox (both nil when the profile records nothing).
    struct Recording {
        let recorder: NotifySupervisor?
        let watcher: FileWatcher?
        /// The kernel recorder's share of the recorded calls, when it is loaded.
        var kernel: KernelFollow? = nil
        var report: RecorderReport? = nil
    }

    // MARK: stages

    mutating func checkHost(network: NetworkNamespace?) throws(OffswitchError) -> Plan {
        try HostEnvironment.shared.get()
        try spec.limits.validate()
        try TmpfsMount.checkList(spec.tmpfs, memoryBytes: spec.limits.memoryBytes)
        try HostEntry.check(spec.hosts)
        switch spec.network {
        case .own:
            guard network == nil else { throw OffswitchError(.invalidArgument, "network: a namespace to join was given, but the spec's network is none") }
        case .sandbox(let peer):
            guard let network, network.sandboxID == peer else {
                throw OffswitchError(.invalidArgument, "network: sandbox:\(peer) needs that sandbox's network namespace (Sandbox.networkNamespace())")
            }
        }
        clock.mark("host checks")
        // A ring's slot first: without one the seccomp program keeps every recorded call.
        var kernelSlot: KernelSlot?
        if !spec.record.isEmpty, case .success(let recorder) = KernelRecorder.shared, let slot = recorder.reserve() {
            kernelSlot = slot
            cleanup.push { slot.release() }
        }
        let program = try SeccompCache.shared.program(for: spec, paths: paths, kernel: kernelSlot != nil)
        clock.mark("seccomp program")
        let exec = try InitImage.sealed.get()
        clock.mark("sealed init image")
        let id = SandboxID.make()
        let hostname = spec.hostname ?? id
        try SandboxID.validateHostname(hostname)
        let plan = Plan(id: id, hostname: hostname, program: program, initImage: exec, kernelSlot: kernelSlot)
        try finish(.hostChecks, plan)
        return plan
    }

    mutating func makeStateDirectory(_ plan: Plan, eventLog: String?) throws(OffswitchError) -> StateDirectory {
        let hostIDs = try HostIDSlot.claim()
        cleanup.push { hostIDs.release() }
        spec.userNamespace = hostIDs.mapping
        let filesystem = SandboxFilesystem(id: plan.id, paths: paths)
        let ownerLock = try filesystem.claim(paths: paths)
        // `remove` also unmounts the tmpfs and is safe on a half-built directory.
        cleanup.push { try? filesystem.remove(); close(ownerLock) }
        let events = try EventLog(path: eventLog ?? filesystem.directory + "/events.ndjson",
                                  budget: EvidenceBudget(bytes: spec.limits.evidenceBytes))
        let layouts = try filesystem.create(hostname: plan.hostname, hosts: spec.hosts, source: spec.rootfs, upperBytes: spec.limits.upperBytes,
                                            userNamespace: hostIDs.mapping, paths: paths)
        if let image = layouts.image, !spec.defaultUserChosen,
           let user = try ImageAccount.defaultUser(image.record.config?.User, image: image.record, lowers: image.lowers) {
            spec.defaultUser = user
        }
        clock.mark("host ids, state directory and tmpfs")
        try finish(.filesystem, plan)
        return StateDirectory(hostIDs: hostIDs, filesystem: filesystem, ownerLock: ownerLock, events: events, layouts: layouts)
    }

    mutating func makeCgroups(_ plan: Plan) throws(OffswitchError) -> SandboxCgroups {
        // On failure the initializer removes the directories it made.
        let cgroups = try SandboxCgroups(id: plan.id, limits: spec.limits, mounts: try HostEnvironment.cgroupMounts.get())
        clock.mark("cgroups")
        cleanup.push { cgroups.killAll(); try? cgroups.remove() }
        try finish(.cgroups, plan)
        return cgroups
    }

    /// PID 1's oom_score_adj, inherited by every process of the sandbox (docs/security.md).
    static let oomScoreAdjustment = 500

    mutating func spawnInit(_ plan: Plan, _ made: StateDirectory, cgroups: SandboxCgroups) throws(OffswitchError) -> Spawned {
        let (control, childEnd) = try ControlChannel.pair()
        cleanup.push { close(control.fd) }
        // PID 1's ends: the child has its copies once spawned, or never needs them.
        var childDescriptors = [childEnd]
        defer { for fd in childDescriptors { close(fd) } }
        let null = try systemCall("open(/dev/null)") { open("/dev/null", O_RDWR | O_CLOEXEC) }
        childDescriptors.append(null)
        let cgroupFD = try cgroups.openUnifiedGroup()
        if cgroupFD >= 0 { childDescriptors.append(cgroupFD) }
        var pid: pid_t = -1, pidfd: Int32 = -1, stage: Int32 = 0
        let flags = OFS_CLONE_NEWNS | OFS_CLONE_NEWPID | OFS_CLONE_NEWNET | OFS_CLONE_NEWUTS | OFS_CLONE_NEWIPC
        let err = ["offswitch-init", plan.id].withCStrings { argv in
            ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"].withCStrings { envp in
                var spawn = ofs_init_spawn(clone_flags: flags, exec_fd: plan.initImage, control_fd: childEnd, null_fd: null, cgroup_fd: cgroupFD)
                return ofs_spawn_init(&spawn, argv, envp, &pid, &pidfd, &stage)
            }
        }
        guard err == 0 else { throw OffswitchError.system("spawn offswitch-init (stage \(stage))", errno: err) }
        clock.mark("clone3 and exec of PID 1")
        made.hostIDs.record(initPID: pid)
        cleanup.push { [pid, pidfd] in
            kill(pid, SIGKILL)  // PID 1 going takes the whole namespace with it
            var status: Int32 = 0
            while waitpid(pid, &status, __WALL) < 0 && errno == EINTR {}
            close(pidfd)
        }
        // Into the v1 cgroups before PID 1 does anything: it waits for the setup message.
        try cgroups.addToLegacyGroups(pid: pid)
        clock.mark("cgroup placement")
        // The host's OOM killer takes a sandbox's processes before the host's own (the daemon,
        // services at 0). Every process of the sandbox inherits PID 1's score, and since the host
        // writes it with CAP_SYS_RESOURCE it is also their floor: nothing inside can go below it.
        // Among themselves the biggest goes first, so PID 1 (a few MiB) is not the victim; PID 1's
        // own score files are read-only inside (RootBuilder), so no one can raise it there.
        try writeControlFile("/proc/\(pid)/oom_score_adj", "\(Self.oomScoreAdjustment)")
        try finish(.spawn, plan, initPID: pid)
        return Spawned(control: control, pid: pid, pidfd: pidfd)
    }

    mutating func setUp(_ plan: Plan, _ made: StateDirectory, _ spawned: Spawned,
                        network joined: NetworkNamespace?) throws(OffswitchError) -> Ready {
        let mapping = made.hostIDs.mapping
        // PID 1 joins both during setup (or has died): the host closes its descriptors once they
        // are sent (the message holds its own references), and a joined namespace's stays with
        // its holder.
        var network: Int32 = -1
        let userNamespace = try systemCall("create user namespace (0 -> host ids \(mapping.hostUID), \(mapping.size) ids)"
                                           + (joined == nil ? " with its network namespace" : "")) {
            joined == nil ? ofs_userns_create(mapping.hostUID, mapping.hostGID, mapping.size, &network)
                : ofs_userns_create(mapping.hostUID, mapping.hostGID, mapping.size, nil)
        }
        defer {
            close(userNamespace)
            if network >= 0 { close(network) }
        }
        try send(plan, made, spawned, descriptors: [userNamespace, joined?.fd ?? network], ownsNetwork: joined == nil)
        return try awaitReady(plan, made, spawned)
    }

    /// The setup order, with the user namespace and the network namespace PID 1 is to join.
    private mutating func send(_ plan: Plan, _ made: StateDirectory, _ spawned: Spawned, descriptors: [Int32],
                               ownsNetwork: Bool) throws(OffswitchError) {
        clock.mark("user and network namespaces")
        let mapping = made.hostIDs.mapping
        let order = SetupOrder(
            hostname: plan.hostname, rootMountPoint: made.filesystem.rootMountPoint, rootOverlay: made.layouts.root,
            usrOverlay: made.layouts.usr, tmpSizeBytes: spec.limits.tmpBytes, agentUID: SandboxUser.agentUID,
            agentGID: SandboxUser.agentGID, capabilityBound: spec.rootCapabilities.mask,
            noNewPrivileges: spec.noNewPrivileges, seccompProgram: plan.program.program, seccompFlags: plan.program.flags,
            limits: [ResourceLimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: spec.limits.openFiles, hard: spec.limits.openFiles),
                     ResourceLimit(resource: Int32(__RLIMIT_SIGPENDING.rawValue), soft: spec.limits.pendingSignals, hard: spec.limits.pendingSignals),
                     ResourceLimit(resource: Int32(__RLIMIT_MSGQUEUE.rawValue), soft: spec.limits.messageQueueBytes, hard: spec.limits.messageQueueBytes),
                     ResourceLimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0)],
            userNamespace: mapping, recorderListener: !spec.record.isEmpty, ownsNetwork: ownsNetwork, tmpfs: spec.tmpfs)
        try spawned.control.send(.setup(order), descriptors: descriptors)
    }

    /// PID 1's answer to the setup order.
    private mutating func awaitReady(_ plan: Plan, _ made: StateDirectory, _ spawned: Spawned) throws(OffswitchError) -> Ready {
        let mapping = made.hostIDs.mapping
        let report = try spawned.control.receiveReportWithDescriptors()
        let descriptors = report?.1 ?? []
        switch report?.0 {
        case .ready(let capabilities, let hasListener):
            // Without no_new_privs PID 1 held CAP_SYS_ADMIN to install the filter; it must have
            // given it up, unless the profile gives it to root.
            if CapabilitySet(mask: capabilities).contains("CAP_SYS_ADMIN") && !spec.rootCapabilities.contains("CAP_SYS_ADMIN") {
                for fd in descriptors { close(fd) }
                throw OffswitchError(.setupFailed, "sandbox setup: offswitch-init still holds CAP_SYS_ADMIN after installing its filter")
            }
            clock.mark("setup inside (mounts, pivot_root, seccomp)")
            made.events.append("sandbox_created", [
                ("sandbox", .string(plan.id)), ("hostname", .string(plan.hostname)), ("profile", .string(spec.profileName)),
                ("rootfs", .string(spec.rootfs.description)), ("recorded_syscalls", .array(spec.record.map(\.name).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }.map { .string($0) })),
                ("user_namespace", .bool(true)), ("host_uid", .int(Int64(mapping.hostUID))),
                ("host_gid", .int(Int64(mapping.hostGID))), ("host_ids", .int(Int64(mapping.size))),
                ("format", .int(Int64(EventLog.formatVersion))),
            ] + composeFields + (made.layouts.image.map { image in
                [("image", .string(image.record.references.first ?? image.record.id)), ("image_id", .string(image.record.id)),
                 ("image_layers", .int(Int64(image.record.layers.count))), ("account_added", .bool(made.layouts.accountAdded)),
                 ("home_added", .bool(made.layouts.homeAdded))]
            } ?? []))
            var listener: (fd: Int32, undo: CleanupStack.Step)?
            if hasListener, let fd = descriptors.first {
                listener = (fd, cleanup.push { close(fd) })
            }
            for fd in descriptors where fd != listener?.fd { close(fd) }
            let ready = Ready(capabilities: CapabilitySet(mask: capabilities), listener: listener)
            try finish(.setup, plan, initPID: spawned.pid)
            return ready
        case .setupFailed(let stage, let errno):
            for fd in descriptors { close(fd) }
            throw OffswitchError(.setupFailed, "sandbox setup: \(stage)", errno: errno == 0 ? nil : errno)
        case .refused(let message):
            for fd in descriptors { close(fd) }
            throw OffswitchError(.invalidArgument, message)
        case .shutdown, nil:
            for fd in descriptors { close(fd) }
            throw OffswitchError(.setupFailed, "sandbox setup: offswitch-init exited before it was ready")
        }
    }

    /// What `sandbox_created` says of the fields a compose file sets, when they are set.
    private var composeFields: [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = []
        if case .sandbox = spec.network { fields.append(("network", .string(spec.network.description))) }
        if !spec.hosts.isEmpty { fields.append(("hosts", .array(spec.hosts.map { .string($0.name) }))) }
        if spec.readOnlyRoot { fields.append(("read_only", .bool(true))) }
        if !spec.tmpfs.isEmpty { fields.append(("tmpfs", .array(spec.tmpfs.map { .string($0.path) }))) }
        return fields
    }

    mutating func startRecorder(_ plan: Plan, _ made: StateDirectory, _ spawned: Spawned, _ ready: Ready,
                                fileBacklogLimit: Int64) throws(OffswitchError) -> Recording {
        var recording = Recording(recorder: nil, watcher: nil)
        let uidBase = made.hostIDs.mapping.hostUID
        if let listener = ready.listener {
            let root = try RecorderRoot(initPID: spawned.pid)
            let supervisor = try NotifySupervisor(listener: listener.fd, policy: plan.program.policyProgram, log: made.events,
                                                  uidBase: uidBase, root: root)
            cleanup.release(listener.undo)  // the supervisor closes it when it goes
            try supervisor.start()
            cleanup.push { supervisor.stop() }
            var kernel: KernelFollow?
            if let planned = plan.program.kernel, !planned.names.isEmpty, let slot = plan.kernelSlot,
               case .success(let recorder) = KernelRecorder.shared {
                // The calls the seccomp prefix left out: recording them is not optional.
                let follow = try recorder.follow(initPID: spawned.pid, slot: slot, plan: planned, log: made.events, uidBase: uidBase,
                                                root: root)
                cleanup.push { follow.stop() }
                kernel = follow
            } else {
                plan.kernelSlot?.release()  // nothing for the kernel to take: the slot is another sandbox's
            }
            let report = Self.report(kernel, slotted: plan.kernelSlot != nil)
            made.events.append("recorder_mode", report.fields)
            let files = try FileWatcher(initPID: spawned.pid, log: made.events, uidBase: uidBase, backlogLimit: fileBacklogLimit)
            try files.start()
            cleanup.push { files.stop() }
            try ProcessExits.shared.track(initPID: spawned.pid, log: made.events, uidBase: uidBase)
            cleanup.push { ProcessExits.shared.untrack(log: made.events) }
            recording = Recording(recorder: supervisor, watcher: files, kernel: kernel, report: report)
        } else if !spec.record.isEmpty {
            throw OffswitchError(.setupFailed, "sandbox setup: offswitch-init sent no seccomp listener for the recorder")
        }
        clock.mark("recorder")
        try finish(.recorder, plan, initPID: spawned.pid)
        return recording
    }

    /// Who records the calls of a sandbox with this plan (`recorder_mode`, docs/events.md).
    static func report(_ kernel: KernelFollow?, slotted: Bool) -> RecorderReport {
        var report = KernelRecorder.report()
        report.kernelCalls = kernel?.calls ?? []
        if kernel == nil { report.mode = "seccomp-notify" }
        if report.kernelUnavailable == nil && !slotted { report.kernelUnavailable = KernelRecorder.slotsTaken }
        return report
    }

    /// The end of a stage: the planned failure, when a test asked for one here.
    private func finish(_ stage: LaunchStage, _ plan: Plan, initPID: pid_t? = nil) throws(OffswitchError) {
        guard let fault, fault.after == stage else { return }
        fault.witness(plan.id, initPID)
        throw OffswitchError(.setupFailed, "create stage \(stage.rawValue) (sandbox \(plan.id)): failed on request (LaunchFault)")
    }
}
