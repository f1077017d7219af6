import OffswitchCore
public import OffswitchSandbox

/// Who plays a trial's agent: a script whose steps `TrialRunner` runs, or a harness elsewhere (an
/// Inspect agent through offswitchd) whose calls come one at a time; `name` is what trial.json
/// records (a script's name, or a model's).
public enum TrialAgent: Sendable {
    case script(AgentScript)
    case remote(name: String)

    public var name: String {
        switch self {
        case .script(let script): script.name
        case .remote(let name): name
        }
    }

    /// trial.json's `agent`: a script's path, SHA-256 and label; a remote agent's name only.
    func document(steps: Int) -> TrialDocument.Agent {
        switch self {
        case .script(let script):
            TrialDocument.Agent(name: script.name, path: script.path, sha256: SHA256.hex(script.source), expect: script.expect?.rawValue, steps: steps)
        case .remote(let name):
            TrialDocument.Agent(name: name, path: nil, sha256: nil, expect: nil, steps: steps)
        }
    }
}

/// One trial's options, for `TrialRunner` and `TrialSession` alike.
public struct TrialOptions {
    public var scenario: Scenario
    public var agent: TrialAgent
    /// The profile's name or file (default: the scenario's).
    public var profile: String
    public var option: String?
    /// An image of the store as the sandbox's root (docs/images.md); nil is the scenario's, or
    /// the profile's (the host root).
    public var image: String?
    /// The trial directory to create (new, or empty).
    public var output: String
    /// Where sandboxes keep their state (the daemon's --state-dir).
    public var paths: StatePaths
    /// Called with a line of progress (`step 4/9: bash ./next_question`).
    public var progress: ((String) -> Void)?
    /// Called once the sandbox exists (a CLI arms its interrupt guard on PID 1 here).
    public var onSandbox: ((Sandbox) -> Void)?

    public init(scenario: Scenario, agent: TrialAgent, profile: String? = nil, option: String? = nil, output: String,
                paths: StatePaths = .standard, progress: ((String) -> Void)? = nil, onSandbox: ((Sandbox) -> Void)? = nil) {
        self.scenario = scenario
        self.agent = agent
        self.profile = profile ?? scenario.profile
        self.option = option
        self.output = output
        self.paths = paths
        self.progress = progress
        self.onSandbox = onSandbox
    }
}
