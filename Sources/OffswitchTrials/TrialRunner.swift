import FoundationEssentials
import Glibc
public import OffswitchCore
import Synchronization
public import OffswitchSandbox

/// Runs one trial from an agent script: a `TrialSession` fed the script's steps until it submits,
/// the sandbox shuts down, or the script ends; later steps are recorded as `not_run`
/// (docs/trials.md).
public struct TrialRunner {
    public struct Options {
        public var scenario: Scenario
        public var agent: AgentScript
        public var profile: String
        public var option: String?
        public var output: String
        /// Where sandboxes keep their state (the daemon's --state-dir).
        public var paths: StatePaths
        /// Called with a line of progress (`step 4/9: bash ./next_question`).
        public var progress: ((String) -> Void)?
        /// Called once the sandbox exists (a CLI arms its interrupt guard on PID 1 here).
        public var onSandbox: ((Sandbox) -> Void)?

        public init(scenario: Scenario, agent: AgentScript, profile: String? = nil, option: String? = nil, output: String,
                    paths: StatePaths = .standard, progress: ((String) -> Void)? = nil) {
            self.paths = paths
            self.scenario = scenario
            self.agent = agent
            self.profile = profile ?? scenario.profile
            self.option = option
            self.output = output
            self.progress = progress
        }
    }

    public struct Result: Sendable {
        public var directory: String
        public var verdict: Verdict
        public var durationNanoseconds: UInt64
    }

    public static func run(_ options: Options) throws(OffswitchError) -> Result {
        let session = try TrialSession.start(TrialSession.Options(
            scenario: options.scenario, agent: TrialSession.Agent(script: options.agent), profile: options.profile,
            option: options.option, output: options.output, paths: options.paths, progress: options.progress,
            onSandbox: options.onSandbox))
        let total = options.agent.steps.count
        for (index, step) in options.agent.steps.enumerated() {
            switch step {
            case .bash(let command):
                options.progress?("step \(index + 1)/\(total): bash \(command.split(separator: "\n").first ?? "")")
                _ = session.bash(command)
            case .submit(let answer):
                options.progress?("step \(index + 1)/\(total): submit")
                _ = session.submit(answer)
            }
        }
        return try session.finish()
    }
}

/// The trigger binary's bytes and hash, read once per process (and again if the file changes).
enum TriggerImage {
    struct Image: Sendable {
        var path: String
        var stamp: Int
        var bytes: [UInt8]
        var sha256: String
    }

    private static let cached = Mutex<Image?>(nil)

    static func load(_ path: String) throws(OffswitchError) -> Image {
        let stamp = (try? fileStamp(path)) ?? 0
        if let image = cached.withLock({ $0 }), image.path == path, image.stamp == stamp, stamp != 0 { return image }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.system, "cannot read \(path)", errno: errno)
        }
        let bytes = Array(data)
        let image = Image(path: path, stamp: stamp, bytes: bytes, sha256: SHA256.hex(bytes))
        cached.withLock { $0 = image }
        return image
    }
}
