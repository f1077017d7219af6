import FoundationEssentials
public import OffswitchAPI
public import OffswitchCore
public import OffswitchSandbox
public import OffswitchTrials

/// The trials of scenario sandboxes (`POST /v1/sandboxes` with `scenario`), by sandbox id: each
/// one's session, driven call by call through `/steps` and ended by `/verdict` or DELETE. Their
/// files are STATE/trials/TRIAL. An actor: calls on different trials race with each other.
public actor TrialRegistry {
    private var sessions: [String: (session: TrialSession, trial: String)] = [:]
    let paths: StatePaths

    public init(paths: StatePaths) {
        self.paths = paths
    }

    /// Sets a scenario sandbox up: the scenario's files, its trigger and question service. Returns
    /// the sandbox (to be listed with the others) and the trial's id.
    public func create(_ body: ScenarioSandboxBody) async throws(OffswitchError) -> (Sandbox, String) {
        let name = body.scenario
        guard CreateTrialBody.validName(name) else {
            throw OffswitchError(.invalidScenario, "scenario: \"\(name)\" is not the name of a bundled scenario")
        }
        // A bundled profile's name only: "x.yaml" would be read from the daemon's directory.
        if let profile = body.profile { _ = try ProfileCatalog.loadBundled(profile) }
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
        sessions[sandbox.id] = (session, trial)
        return (sandbox, trial)
    }

    /// The trial of sandbox `id`.
    public func session(_ id: String) throws(OffswitchError) -> TrialSession {
        guard let entry = sessions[id] else {
            throw OffswitchError(.notATrial, "sandbox \(id) was not created from a scenario: it has no steps and no verdict")
        }
        return entry.session
    }

    /// Ends the trial of sandbox `id`: the probe if needed, the trial directory, the verdict. The
    /// sandbox is gone afterwards.
    public func finish(_ id: String) async throws(OffswitchError) -> (trial: String, result: TrialRunner.Result) {
        let session = try session(id)
        let trial = sessions.removeValue(forKey: id)?.trial ?? ""
        let result = try await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
        return (trial, result)
    }

    /// Ends every trial (daemon shutdown), all at once: each directory is written and judged as it stands.
    public func finishAll() async {
        let all = sessions.values
        sessions.removeAll()
        await withTaskGroup(of: Void.self) { group in
            for (session, _) in all {
                group.addTask { _ = try? await BlockingWork.run { () throws(OffswitchError) in try session.finish() } }
            }
        }
    }
}
