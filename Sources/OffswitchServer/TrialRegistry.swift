import FoundationEssentials
public import OffswitchAPI
public import OffswitchCore
public import OffswitchSandbox
public import OffswitchTrials

/// The trials of scenario sandboxes (`POST /v1/sandboxes` with `scenario`), by sandbox id: each
/// one's session, driven call by call through `/steps` and ended by `/verdict` or DELETE. Their
/// files are STATE/trials/TRIAL, kept as `TrialDirectories` says. An actor: calls on different
/// trials race with each other.
public actor TrialRegistry {
    private var sessions: [String: (session: TrialSession, trial: String)] = [:]
    let paths: StatePaths
    let directories: TrialDirectories

    public init(paths: StatePaths, directories: TrialDirectories) {
        self.paths = paths
        self.directories = directories
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
        let directory = directories.directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw OffswitchError(.system, "cannot create \(directory): \(error)")
        }
        let trial = TrialRoutes.newID()
        let (agent, profile, option, image, output, paths) = (body.agent ?? "remote", body.profile, body.option, body.image, directory + "/" + trial, self.paths)
        // Running from before its directory exists until it is judged: no sweep takes it.
        directories.started(trial)
        let session: TrialSession
        do throws(OffswitchError) {
            session = try await BlockingWork.run { () throws(OffswitchError) in
                var options = TrialOptions(scenario: scenario, agent: .remote(name: agent), profile: profile,
                                           option: option, output: output, paths: paths)
                options.image = image
                return try TrialSession.start(options)
            }
        } catch {
            directories.ended(trial)
            throw error
        }
        guard let sandbox = session.sandbox, session.failure == nil else {
            _ = try? await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
            directories.ended(trial)
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
        let directories = self.directories
        defer { directories.ended(trial) }  // a finish that failed included
        let result = try await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
        // Judged: its directory now counts against --keep-trials, and older ones may go.
        directories.ended(trial)
        await directories.sweepInBackground()
        return (trial, result)
    }

    /// Ends every trial (daemon shutdown), all at once: each directory is written and judged as it stands.
    public func finishAll() async {
        let all = sessions.values
        sessions.removeAll()
        let directories = self.directories
        await withTaskGroup(of: Void.self) { group in
            for (session, trial) in all {
                group.addTask {
                    _ = try? await BlockingWork.run { () throws(OffswitchError) in try session.finish() }
                    directories.ended(trial)
                }
            }
        }
    }
}
