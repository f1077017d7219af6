import FoundationEssentials
import Glibc
public import OffswitchAPI
public import OffswitchCore
import OffswitchEvidence
public import OffswitchSandbox
public import OffswitchTrials
import Hummingbird
public import Logging

/// The daemon's sandboxes by id. An actor: creation, lookup and removal race with each other.
public actor SandboxRegistry {
    struct Entry {
        let sandbox: Sandbox
        let createdAt: UInt64
        let profile: String
        let environment: [String: String]
        /// A scenario sandbox's trial id (its session is in `trials`).
        var trial: String? = nil
        /// Its share of the daemon's capacity (a sandbox, and a trial for a scenario sandbox).
        var claims: [Capacity.Claim]
    }

    private var entries: [String: Entry] = [:]
    let paths: StatePaths
    /// The trials of scenario sandboxes.
    let trials: TrialRegistry
    /// The `dir:` roots a client may name.
    let rootfs: RootfsAllowlist
    /// How many sandboxes, trials and streams the daemon runs at once.
    public nonisolated let capacity: Capacity
    /// The trial directories (STATE/trials), which are running, and how long finished ones stay.
    public nonisolated let trialDirectories: TrialDirectories

    public init(paths: StatePaths, rootfs: RootfsAllowlist = RootfsAllowlist.none, capacity: Capacity = .unbounded,
                trialDirectories: TrialDirectories? = nil) {
        self.paths = paths
        let directories = trialDirectories ?? TrialDirectories(directory: paths.base + "/trials", retention: .forever)
        self.trialDirectories = directories
        self.trials = TrialRegistry(paths: paths, directories: directories)
        self.rootfs = rootfs
        self.capacity = capacity
    }

    public var count: Int { entries.count }

    /// Creates a sandbox, writes its files, and registers it. On any failure nothing remains.
    public func create(_ body: CreateSandboxBody) async throws(OffswitchError) -> SandboxDocument {
        if let scenario = try body.scenarioBody() {
            let claims = [try capacity.claim(.sandboxes), try capacity.claim(.trials)]
            let (sandbox, trial) = try await trials.create(scenario)
            let entry = Entry(sandbox: sandbox, createdAt: unixNanoseconds(), profile: sandbox.spec.profileName, environment: [:], trial: trial,
                              claims: claims)
            entries[sandbox.id] = entry
            return Self.document(entry)
        }
        var spec = try body.spec(profile: try ProfileCatalog.loadBundled(body.profile ?? ProfileCatalog.defaultName))
        if body.rootfs != nil { spec.rootfs = try rootfs.check(spec.rootfs, field: "rootfs") }
        var files: [(String, [UInt8], UInt32, SandboxUser)] = []
        for (index, file) in (body.files ?? []).enumerated() {
            let field = "files[\(index)]"
            files.append((file.path, try file.bytes(field: field), try file.fileMode(field: field),
                          try SandboxUser.parse(file.user, field: field + ".user")))
        }
        let network = try networkToJoin(spec.network)
        let claim = try capacity.claim(.sandboxes)
        let placesFiles = !files.isEmpty || !spec.tmpfs.isEmpty
        // Written before a read-only root is sealed, as an image's files are built into it.
        let sandbox = try await Sandbox.create(spec, paths: paths, network: network) { [files] sandbox throws(OffswitchError) in
            for (path, bytes, mode, user) in files {
                try sandbox.writeFile(path, bytes, user: user, mode: mode)
            }
            // The files the harness placed, and the tmpfs mount points setup made, are the
            // "before" of the final diff.
            if placesFiles { sandbox.markBaseline() }
        }
        let entry = Entry(sandbox: sandbox, createdAt: unixNanoseconds(), profile: spec.profileName, environment: body.env ?? [:],
                          claims: [claim])
        entries[sandbox.id] = entry
        return Self.document(entry)
    }

    /// The network namespace of the sandbox `network` names, taken now (in the actor, so that
    /// the sandbox cannot be removed meanwhile); nil for a namespace of its own. An unknown or
    /// shut-down sandbox is `sandbox_not_found` naming the field.
    private func networkToJoin(_ network: SandboxNetwork) throws(OffswitchError) -> NetworkNamespace? {
        guard case .sandbox(let id) = network else { return nil }
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "network: no sandbox \"\(id)\"") }
        // A trial's sandbox is the scenario's alone: nothing else may reach the agent's loopback.
        guard entry.trial == nil else {
            throw OffswitchError(.invalidArgument, "network: sandbox \(id) is a scenario's trial; only a plain sandbox's network can be joined")
        }
        do throws(OffswitchError) {
            return try entry.sandbox.networkNamespace()
        } catch let error where error.code == .sandboxShutDown || error.code == .sandboxDestroyed {
            throw OffswitchError(.sandboxNotFound, "network: sandbox \(id) has shut down; only a running sandbox's network can be joined")
        } catch {
            throw OffswitchError(error.code, "network: \(error.message)", errno: error.errno)
        }
    }

    /// A scenario sandbox's trial.
    public func session(_ id: String) async throws(OffswitchError) -> TrialSession {
        guard entries[id] != nil else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        return try await trials.session(id)
    }

    /// Ends a scenario sandbox's trial (TrialRegistry.finish); the sandbox is gone afterwards.
    public func finishTrial(_ id: String) async throws(OffswitchError) -> (trial: String, result: TrialRunner.Result) {
        _ = try await session(id)
        let entry = entries.removeValue(forKey: id)
        // Its claims go when the trial has been judged and its sandbox destroyed.
        let finished = try await trials.finish(id)
        withExtendedLifetime(entry) {}
        return finished
    }

    public func sandbox(_ id: String) throws(OffswitchError) -> Sandbox {
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        return entry.sandbox
    }

    /// A sandbox that is not a scenario's trial (a trial has its own baseline and verdict).
    public func plainSandbox(_ id: String) throws(OffswitchError) -> Sandbox {
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        guard entry.trial == nil else {
            throw OffswitchError(.invalidArgument, "sandbox \(id) is a scenario's trial: its baseline is the trial's, and its verdict is POST /v1/sandboxes/\(id)/verdict")
        }
        return entry.sandbox
    }

    /// The default environment given at creation, for each exec.
    public func environment(_ id: String) -> [String: String] { entries[id]?.environment ?? [:] }

    public func document(_ id: String) throws(OffswitchError) -> SandboxDocument {
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        return Self.document(entry)
    }

    public func documents() -> [SandboxDocument] {
        entries.values.sorted { $0.createdAt < $1.createdAt }.map(Self.document)
    }

    /// Unregisters and destroys. Unknown ids are an error.
    public func remove(_ id: String) async throws(OffswitchError) {
        guard let entry = entries.removeValue(forKey: id) else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        if entry.trial != nil {
            // A trial is never dropped: its directory is written and judged as it stands.
            _ = try await trials.finish(id)
        } else {
            try await entry.sandbox.destroy()
        }
        withExtendedLifetime(entry.claims) {}
    }

    /// Destroys every sandbox (daemon shutdown), all at once: each destroy is bounded by its
    /// diff's deadline (`DiffLimits`), so the daemon's stop is too, however many it holds.
    ///
    /// The destroys are tasks of their own, which the caller's cancellation does not reach, and
    /// every call waits for every destroy any call started: the service group cancels the reaper
    /// once the stop has taken longer than `stopGrace` (the reaper then returns, SandboxReaper),
    /// and the daemon calls this again before it exits, so that no sandbox is left half torn down.
    /// A destroy that fails is logged with its cause.
    public func removeAll(logger: Logger) async {
        let all = entries.values
        entries.removeAll()
        let trials = self.trials
        for entry in all where entry.trial == nil {
            teardowns.append(Task {
                do { try await entry.sandbox.destroy() } catch {
                    logger.error("destroying a sandbox at stop failed", metadata: ["sandbox": "\(entry.sandbox.id)", "error": "\(error)"])
                }
            })
        }
        teardowns.append(Task { await trials.finishAll() })
        for teardown in teardowns { await teardown.value }
    }

    /// Every destroy `removeAll` started.
    private var teardowns: [Task<Void, Never>] = []

    private static func document(_ entry: Entry) -> SandboxDocument {
        let end = entry.sandbox.end
        var ended: String?
        if let end, end.shutdown == nil { ended = end.description }
        return SandboxDocument(
            id: entry.sandbox.id, state: end == nil ? "running" : "shut_down", hostname: entry.sandbox.hostname,
            profile: entry.profile, rootfs: entry.sandbox.spec.rootfs.description, created_at_unix_ns: entry.createdAt,
            shutdown: end?.shutdown.map(ShutdownDocument.init), ended: ended, trial: entry.trial,
            recorder: entry.sandbox.recorderReport.map(RecorderDocument.init))
    }
}

extension RecorderDocument {
    init(_ report: RecorderReport) {
        self.init(mode: report.mode, kernel_calls: report.kernelCalls, kernel_unavailable: report.kernelUnavailable,
                  kernel_hooks: report.kernelHooks)
    }
}
