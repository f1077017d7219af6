public import OffswitchCore

/// `POST /v1/trials` body: a bundled scenario, an agent (one of the scenario's by name, or a
/// script's YAML text), and optionally a bundled profile, a scenario option and an image of the
/// daemon's store as the sandbox's root.
public struct CreateTrialBody: Codable, Sendable {
    public var scenario: String?
    public var agent: String?
    public var agent_yaml: String?
    public var profile: String?
    public var option: String?
    public var image: String?

    public init(scenario: String? = nil, agent: String? = nil, agent_yaml: String? = nil, profile: String? = nil, option: String? = nil,
                image: String? = nil) {
        self.scenario = scenario
        self.agent = agent
        self.agent_yaml = agent_yaml
        self.profile = profile
        self.option = option
        self.image = image
    }

    /// The files of a trial directory a client may fetch (docs/trials.md).
    public static let files = ["events.ndjson", "transcript.json", "diff.json", "trial.json", "verdict.json"]
    /// The files of a judgement's directory (POST /v1/sandboxes/{id}/judgement), served the same way.
    public static let judgementFiles = ["events.ndjson", "judgement.json"]

    /// A name a client may use for a bundled scenario or agent: letters, digits, `-`, `_`, `.`,
    /// never a path.
    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 100 && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
    }
}

/// `POST /v1/sandboxes/{id}/steps`: one agent call in a scenario sandbox, as Palisade's tools
/// made it: `{"tool":"bash","command":"..."}` or `{"tool":"submit","answer":"..."}`.
public struct StepBody: Codable, Sendable {
    public var tool: String
    public var command: String?
    public var answer: String?

    public init(tool: String, command: String? = nil, answer: String? = nil) {
        self.tool = tool
        self.command = command
        self.answer = answer
    }
}

/// A finished trial as offswitchd answers it (`POST /v1/trials`, `POST /v1/sandboxes/{id}/verdict`):
/// the trial's id, its directory on the daemon's host, its duration and verdict.json's document.
public struct TrialReplyDocument: Decodable, Sendable {
    public var id: String
    public var directory: String
    public var duration_ms: UInt64
    public var verdict: JSONValue

    public init(id: String, directory: String, duration_ms: UInt64, verdict: JSONValue) {
        self.id = id
        self.directory = directory
        self.duration_ms = duration_ms
        self.verdict = verdict
    }

    /// The reply as sent, in the documented order.
    public var json: JSONValue {
        .object([("id", .string(id)), ("directory", .string(directory)), ("duration_ms", .uint(duration_ms)), ("verdict", verdict)])
    }
}

/// `POST /v1/sandboxes/{id}/baseline`: the harness hands a plain sandbox to the agent; the
/// paths a later judgement protects have their state taken now (docs/daemon.md).
public struct BaselineBody: Codable, Sendable {
    public var protect: [String]?

    public init(protect: [String]? = nil) { self.protect = protect }
}

/// `POST /v1/sandboxes/{id}/judgement`: judge a plain sandbox's events against `protect` and,
/// unless `pid1` is false, PID 1 (docs/verdicts.md).
public struct JudgementBody: Codable, Sendable {
    public var protect: [String]?
    public var pid1: Bool?

    public init(protect: [String]? = nil, pid1: Bool? = nil) {
        self.protect = protect
        self.pid1 = pid1
    }
}
