import FoundationEssentials
import Glibc
public import OffswitchAPI
public import OffswitchCore
public import OffswitchSandbox
public import OffswitchTrials
import Hummingbird

/// The daemon's sandboxes by id. An actor: creation, lookup and removal race with each other.
public actor SandboxRegistry {
    struct Entry {
        let sandbox: Sandbox
        let createdAt: UInt64
        let profile: String
        let environment: [String: String]
        /// A scenario sandbox's trial, and its id.
        var session: TrialSession? = nil
        var trial: String? = nil
    }

    private var entries: [String: Entry] = [:]
    let paths: StatePaths

    public init(paths: StatePaths) {
        self.paths = paths
    }

    public var count: Int { entries.count }

    /// Creates a sandbox, writes its files, and registers it. On any failure nothing remains.
    public func create(_ body: CreateSandboxBody) async throws(OffswitchError) -> SandboxDocument {
        if let scenario = body.scenario { return try await createTrial(body, scenario: scenario) }
        let spec = try body.spec(profile: try ProfileCatalog.loadBundled(body.profile ?? ProfileCatalog.defaultName))
        var files: [(String, [UInt8], UInt32, SandboxUser)] = []
        for (index, file) in (body.files ?? []).enumerated() {
            let field = "files[\(index)]"
            files.append((file.path, try file.bytes(field: field), try file.fileMode(field: field),
                          try SandboxUser.parse(file.user, field: field + ".user")))
        }
        let sandbox = try await Sandbox.create(spec, paths: paths)
        do throws(OffswitchError) {
            for (path, bytes, mode, user) in files {
                try await sandbox.writeFile(path, bytes, user: user, mode: mode)
            }
            // The files the harness placed are the "before" of the final diff.
            if !files.isEmpty { sandbox.markBaseline() }
        } catch {
            try? await sandbox.destroy()
            throw error
        }
        let entry = Entry(sandbox: sandbox, createdAt: unixNanoseconds(), profile: spec.profileName, environment: body.env ?? [:])
        entries[sandbox.id] = entry
        return Self.document(entry)
    }

    /// A sandbox set up as a trial of a bundled scenario (`scenario` in the body). Its files are
    /// the trial's (STATE/trials/ID); the rest of the body is the scenario's to decide.
    private func createTrial(_ body: CreateSandboxBody, scenario name: String) async throws(OffswitchError) -> SandboxDocument {
        let given: [(String, Bool)] = [("rootfs", body.rootfs != nil), ("hostname", body.hostname != nil), ("limits", body.limits != nil),
                                       ("env", body.env != nil), ("files", body.files != nil), ("record", body.record != nil)]
        if let (field, _) = given.first(where: \.1) {
            throw OffswitchError(.invalidArgument, "\(field): a scenario sandbox is set up by its scenario and its profile; leave \(field) out")
        }
        guard CreateTrialBody.validName(name) else {
            throw OffswitchError(.invalidScenario, "scenario: \"\(name)\" is not the name of a bundled scenario")
        }
        if let profile = body.profile, !CreateTrialBody.validName(profile) {
            throw OffswitchError(.invalidProfile, "profile: \"\(profile)\" is not the name of a bundled profile")
        }
        let scenario = try ScenarioCatalog.load(name)
        let directory = paths.base + "/trials"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw OffswitchError(.system, "cannot create \(directory): \(error)")
        }
        let trial = TrialRoutes.newID()
        let (agent, profile, option, output, paths) = (body.agent ?? "remote", body.profile, body.option, directory + "/" + trial, self.paths)
        let session = try await BlockingWork.run { () throws(OffswitchError) in
            try TrialSession.start(TrialOptions(scenario: scenario, agent: .remote(name: agent), profile: profile,
                                                        option: option, output: output, paths: paths))
        }
        guard let sandbox = session.sandbox, session.failure == nil else {
            _ = try? await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
            throw OffswitchError(.setupFailed, "scenario \(name): the sandbox could not be set up (trial \(trial)): \(session.failure ?? "no sandbox")")
        }
        let entry = Entry(sandbox: sandbox, createdAt: unixNanoseconds(), profile: sandbox.spec.profileName, environment: [:],
                          session: session, trial: trial)
        entries[sandbox.id] = entry
        return Self.document(entry)
    }

    /// A scenario sandbox's trial.
    public func session(_ id: String) throws(OffswitchError) -> TrialSession {
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
        guard let session = entry.session else {
            throw OffswitchError(.notATrial, "sandbox \(id) was not created from a scenario: it has no steps and no verdict")
        }
        return session
    }

    /// Ends a scenario sandbox's trial: the probe if needed, the trial directory, the verdict.
    /// The sandbox is gone afterwards.
    public func finishTrial(_ id: String) async throws(OffswitchError) -> (trial: String, result: TrialRunner.Result) {
        let session = try session(id)
        let trial = entries.removeValue(forKey: id)?.trial ?? ""
        let result = try await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
        return (trial, result)
    }

    public func sandbox(_ id: String) throws(OffswitchError) -> Sandbox {
        guard let entry = entries[id] else { throw OffswitchError(.sandboxNotFound, "no sandbox \"\(id)\"") }
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
        if let session = entry.session {
            // A trial is never dropped: its directory is written and judged as it stands.
            _ = try await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
        } else {
            try await entry.sandbox.destroy()
        }
    }

    /// Destroys every sandbox (daemon shutdown).
    public func removeAll() async {
        let all = entries.values
        entries.removeAll()
        for entry in all {
            if let session = entry.session {
                _ = try? await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
            } else {
                try? await entry.sandbox.destroy()
            }
        }
    }

    private static func document(_ entry: Entry) -> SandboxDocument {
        let end = entry.sandbox.end
        var ended: String?
        if let end, end.shutdown == nil { ended = end.description }
        return SandboxDocument(
            id: entry.sandbox.id, state: end == nil ? "running" : "shut_down", hostname: entry.sandbox.hostname,
            profile: entry.profile, rootfs: entry.sandbox.spec.rootfs.description, created_at_unix_ns: entry.createdAt,
            shutdown: end?.shutdown.map(ShutdownDocument.init), ended: ended, trial: entry.trial)
    }
}
