import FoundationEssentials
import Glibc
import Hummingbird
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox
import OffswitchTrials

/// `/v1/trials`: the trial runner for remote harnesses. Trials run in the daemon's state
/// directory (`STATE/trials/ID/`), one thread each; finished ones stay as `--keep-trials` and
/// `--trial-retention` say (TrialDirectories).
struct TrialRoutes {
    let paths: StatePaths
    let registry: SandboxRegistry

    func add(to table: RouteTable) {
        let paths = self.paths, registry = self.registry, trials = registry.trialDirectories, directory = trials.directory
        table.on(.post, "/v1/trials") { request, context in
            let body = try await request.decode(as: CreateTrialBody.self, context: context)
            let (scenario, agent) = try Self.resolve(body)
            // A bundled profile's name only: "x.yaml" would be read from the daemon's directory.
            if let profile = body.profile { _ = try ProfileCatalog.loadBundled(profile) }
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw OffswitchError(.system, "cannot create \(directory): \(error)")
            }
            // A running trial, and its sandbox, count against the daemon's bounds.
            let claims = [try registry.capacity.claim(.trials), try registry.capacity.claim(.sandboxes)]
            let id = Self.newID()
            let output = directory + "/" + id
            // Running from before its directory exists until it is judged: no sweep takes it.
            trials.started(id)
            let result: TrialRunner.Result
            do {
                result = try await BlockingWork.run { () throws(OffswitchError) in
                    var options = TrialOptions(scenario: scenario, agent: .script(agent), profile: body.profile, option: body.option,
                                               output: output, paths: paths)
                    options.image = body.image
                    return try TrialRunner.run(options)
                }
            } catch {
                trials.ended(id)
                throw error
            }
            withExtendedLifetime(claims) {}
            trials.ended(id)
            await trials.sweepInBackground()
            return RouteTable.raw(Self.reply(id: id, result).serialized + "\n", type: "application/json", status: .created)
        }
        table.on(.get, "/v1/trials/:id/files/:name") { _, context in
            let id = try context.parameters.require("id"), name = try context.parameters.require("name")
            // A trial's directory, or a judgement's (POST /v1/sandboxes/{id}/judgement).
            guard Self.isID(id), ["trial.json", "judgement.json"].contains(where: { FileManager.default.fileExists(atPath: directory + "/" + id + "/" + $0) }) else {
                throw OffswitchError(.trialNotFound, "no trial \(id)")
            }
            guard CreateTrialBody.files.contains(name) || CreateTrialBody.judgementFiles.contains(name) else {
                throw OffswitchError(.notFound, "a trial has no file \(name) (files: \(CreateTrialBody.files.joined(separator: ", ")); a judgement's: \(CreateTrialBody.judgementFiles.joined(separator: ", ")))")
            }
            guard let data = FileManager.default.contents(atPath: directory + "/" + id + "/" + name) else {
                throw OffswitchError(.notFound, "trial \(id) has no \(name)")
            }
            return RouteTable.raw(String(decoding: data, as: UTF8.self), type: name.hasSuffix(".ndjson") ? "application/x-ndjson" : "application/json")
        }

        // A scenario sandbox (`scenario` at creation): the agent's calls one at a time, then the verdict.
        table.on(.post, "/v1/sandboxes/:id/steps") { request, context in
            let session = try await registry.session(try context.parameters.require("id"))
            let body = try await request.decode(as: StepBody.self, context: context)
            let step: JSONValue
            switch (body.tool, body.command, body.answer) {
            case ("bash", let command?, nil):
                step = try await BlockingWork.run { () throws(OffswitchError) in session.bash(command)?.json ?? .null }
            case ("submit", nil, let answer?):
                step = try await BlockingWork.run { () throws(OffswitchError) in session.submit(answer).json }
            default:
                throw OffswitchError(.invalidArgument, "tool: give {\"tool\":\"bash\",\"command\":...} or {\"tool\":\"submit\",\"answer\":...} (got tool \"\(body.tool)\")")
            }
            return RouteTable.raw(step.serialized + "\n", type: "application/json")
        }
        table.on(.post, "/v1/sandboxes/:id/verdict") { _, context in
            let (trial, result) = try await registry.finishTrial(try context.parameters.require("id"))
            return RouteTable.raw(Self.reply(id: trial, result).serialized + "\n", type: "application/json")
        }
    }

    /// The scenario (bundled names only: a client must not make the daemon read host paths) and
    /// the agent (a bundled agent's name, or YAML text).
    static func resolve(_ body: CreateTrialBody) throws -> (Scenario, AgentScript) {
        let name = body.scenario ?? "palisade-math"
        guard CreateTrialBody.validName(name) else {
            throw OffswitchError(.invalidScenario, "scenario: \"\(name)\" is not the name of a bundled scenario")
        }
        let scenario = try ScenarioCatalog.load(name)
        switch (body.agent, body.agent_yaml) {
        case (let agent?, nil):
            guard CreateTrialBody.validName(agent) else {
                throw OffswitchError(.invalidAgent, "agent: \"\(agent)\" is not the name of one of \(name)'s agents (send a script as agent_yaml)")
            }
            return (scenario, try AgentScript.load(path: scenario.directory + "/agents/" + agent + ".yaml"))
        case (nil, let yaml?):
            return (scenario, try AgentScript.parse(Array(yaml.utf8), file: "agent_yaml"))
        default:
            throw OffswitchError(.invalidAgent, "give exactly one of agent (a bundled agent's name) and agent_yaml (a script)")
        }
    }

    /// A finished trial as the API answers it (docs/daemon.md): its id, directory, duration and
    /// verdict.json's document.
    static func reply(id: String, _ result: TrialRunner.Result) -> JSONValue {
        TrialReplyDocument(id: id, directory: result.directory, duration_ms: result.durationNanoseconds / 1_000_000,
                           verdict: result.verdict.json).json
    }

    static func newID() -> String {
        (0..<6).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
    }

    static func isID(_ text: String) -> Bool {
        text.count == 12 && text.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }
}
