import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchImages

/// What a batch is: every agent `repeats` times, written to OUT/batch.json before the first trial
/// (`offswitch.batch/1`, docs/exports.md), so an interrupted batch can be continued.
public struct BatchPlan: Sendable {
    public static let file = "batch.json"
    public static let format = "offswitch.batch/1"

    public var scenario: String
    public var profile: String?
    public var option: String?
    /// An image as every trial's root (`--image`); nil for the scenario's.
    public var image: String?
    public var repeats: Int
    public var agents: [AgentScript]

    public struct Job: Sendable {
        public var agent: AgentScript
        public var number: Int
        /// The trial's directory name under OUT/trials/: AGENT-NNN.
        public var name: String
    }

    /// Repeat by repeat, so an interrupted batch has every agent about equally often.
    public var jobs: [Job] {
        let width = max(3, String(repeats).count)
        return (1...repeats).flatMap { number in
            agents.map { agent in
                let digits = String(number)
                return Job(agent: agent, number: number, name: agent.name + "-" + String(repeating: "0", count: width - digits.count) + digits)
            }
        }
    }

    /// A new batch in `directory` (created, or an existing empty one), its plan written there.
    /// `agents` are agent scripts, directories of them (every *.yaml) or the scenario's agent names.
    public static func create(scenario name: String?, agents references: [String], profile: String?, option: String?,
                              image: String? = nil, repeats: Int, directory: String) throws(OffswitchError) -> BatchPlan {
        let scenario = try ScenarioCatalog.load(name ?? "palisade-math")
        var paths: [String] = []
        for reference in references {
            if let mode = try? fileMode(reference), mode & S_IFMT == S_IFDIR {
                let names = listDirectory(reference).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                if names.isEmpty { throw OffswitchError(.invalidArgument, "--agents \(reference): the directory holds no *.yaml agent script") }
                paths += names.map { reference + "/" + $0 }
            } else {
                paths.append(AgentScript.path(of: reference, in: scenario))
            }
        }
        var loaded: [AgentScript] = []
        for path in paths {
            let agent = try AgentScript.load(path: path)
            if let other = loaded.first(where: { $0.name == agent.name }) {
                throw OffswitchError(.invalidArgument, "--agents: \(path) and \(other.path) are both named \(agent.name); trial directories are named by agent, so names must differ")
            }
            loaded.append(agent)
        }
        if let image, !image.hasPrefix("sha256:") { _ = try ImageReference(parsing: image) }
        let plan = BatchPlan(scenario: name ?? "palisade-math", profile: profile, option: option, image: image, repeats: repeats, agents: loaded)
        if mkdir(directory, 0o755) != 0 {
            guard errno == EEXIST else { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
            guard let mode = try? fileMode(directory), mode & S_IFMT == S_IFDIR else {
                throw OffswitchError(.invalidArgument, "--out \(directory) exists and is not a directory")
            }
            guard listDirectory(directory).isEmpty else {
                throw OffswitchError(.invalidArgument, "--out \(directory) exists and is not empty; give a new directory, or add --resume to continue the batch in it")
            }
        }
        try TrialFiles.write(plan.json.pretty, to: directory + "/" + file)
        return plan
    }

    /// The plan of the batch in `directory`; options given again must say what it says.
    public static func resume(directory: String, scenario: String?, profile: String?, option: String?, image: String? = nil, repeats: Int?,
                              agents: [String]) throws(OffswitchError) -> BatchPlan {
        let plan = try load(directory + "/" + file)
        func differs(_ option: String, _ given: String?, _ planned: String?) throws(OffswitchError) {
            if let given, given != planned {
                throw OffswitchError(.invalidArgument, "\(directory)/\(file) was started with \(option) \(planned ?? "(none)"), this command says \(given); drop the option, or start a new batch")
            }
        }
        try differs("--scenario", scenario, plan.scenario)
        try differs("--profile", profile, plan.profile)
        try differs("--option", option, plan.option)
        try differs("--image", image, plan.image)
        try differs("--repeat", repeats.map(String.init), String(plan.repeats))
        if !agents.isEmpty {
            throw OffswitchError(.invalidArgument, "--resume runs the agents in \(directory)/\(file); drop --agents")
        }
        return plan
    }

    var json: JSONValue {
        .object([
            ("format", .string(Self.format)), ("scenario", .string(scenario)), ("profile", profile.map { .string($0) } ?? .null),
            ("option", option.map { .string($0) } ?? .null), ("image", image.map { .string($0) } ?? .null), ("repeat", .int(Int64(repeats))),
            ("agents", .array(agents.map { agent in
                .object([("name", .string(agent.name)), ("path", .string(Self.absolute(agent.path))),
                         ("sha256", .string(SHA256.hex(agent.source))), ("expect", agent.expect.map { .string($0.rawValue) } ?? .null)])
            })),
        ])
    }

    private static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    public static func load(_ path: String) throws(OffswitchError) -> BatchPlan {
        let document = try TrialFiles.readJSON(path)
        guard document["format"]?.text == format else {
            throw OffswitchError(.invalidArgument, "\(path): not a batch plan (format is \(document["format"]?.text ?? "missing"), expected \(format))")
        }
        guard let scenario = document["scenario"]?.string, let repeats = document["repeat"]?.int, repeats >= 1,
              let list = document["agents"]?.array else {
            throw OffswitchError(.invalidArgument, "\(path): scenario, repeat or agents is missing")
        }
        var agents: [AgentScript] = []
        for entry in list {
            guard let agentPath = entry["path"]?.string, let sha = entry["sha256"]?.string else {
                throw OffswitchError(.invalidArgument, "\(path): an agent has no path or sha256")
            }
            let agent = try AgentScript.load(path: agentPath)
            guard SHA256.hex(agent.source) == sha else {
                throw OffswitchError(.invalidArgument, "\(agentPath) changed since the batch started (\(path) has sha256 \(sha)); its trials would not be comparable")
            }
            agents.append(agent)
        }
        return BatchPlan(scenario: scenario, profile: document["profile"]?.string, option: document["option"]?.string,
                         image: document["image"]?.string, repeats: Int(repeats), agents: agents)
    }

    public static func trialDirectory(_ batch: String, _ job: Job) -> String { batch + "/trials/" + job.name }

    /// A trial is finished when its verdict.json exists (the runner writes it last).
    public static func isFinished(_ directory: String) -> Bool { access(directory + "/verdict.json", F_OK) == 0 }
}
