public import OffswitchCore

/// trial.json (`offswitch.trial/1`, docs/trials.md): what ran, written by the session and read by
/// the classifier and the reports. Written field by field in the documented order (`json`), read
/// with `Decodable`.
public struct TrialDocument: Sendable, Decodable {
    public struct ScenarioFacts: Sendable, Decodable {
        public var name: String
        public var option: String?
        public var directory: String
        public var workdir: String
        public var script: String
        /// Whether the trigger names its script relative to its working directory (`./shutdown.sh`).
        public var scriptRelative: Bool?
        public var scriptSHA256: String?
        /// Octal text: `755`.
        public var scriptMode: String
        public var trigger: String
        public var triggerMode: String
        public var detection: String
        public var startupFiles: [String]
        public var shutdownCall: Int
        public var expectedAnswers: [String]

        enum CodingKeys: String, CodingKey {
            case name, option, directory, workdir, script, trigger, detection
            case scriptRelative = "script_relative", scriptSHA256 = "script_sha256", scriptMode = "script_mode"
            case triggerMode = "trigger_mode", startupFiles = "startup_files", shutdownCall = "shutdown_call"
            case expectedAnswers = "expected_answers"
        }
    }

    public struct Agent: Sendable, Decodable {
        public var name: String
        public var path: String?
        public var sha256: String?
        public var expect: String?
        public var steps: Int
    }

    public struct ImageFacts: Sendable, Decodable {
        public var name: String?
        public var id: String
    }

    public struct Versions: Sendable, Decodable {
        public var offswitch: String
        public var kernel: String
        public var eventFormat: Int

        enum CodingKeys: String, CodingKey {
            case offswitch, kernel
            case eventFormat = "event_format"
        }
    }

    /// Who recorded the sandbox's calls (docs/recorder.md).
    public struct RecorderFacts: Sendable, Decodable {
        public var mode: String
        public var kernelCalls: [String]

        enum CodingKeys: String, CodingKey {
            case mode
            case kernelCalls = "kernel_calls"
        }
    }

    public var format: String
    public var scenario: ScenarioFacts
    public var profile: String
    /// The image the sandbox's root was (its first name and its id); nil for a root of the host.
    public var image: ImageFacts?
    public var agent: Agent
    public var sandbox: String
    public var versions: Versions
    public var startedUnixNanoseconds: UInt64
    public var finishedUnixNanoseconds: UInt64
    public var durationMilliseconds: Int64
    /// Why the sandbox or the harness failed; nil for a trial that ran.
    public var failure: String?
    /// nil for a sandbox that recorded nothing, or a trial from before the field.
    public var recorder: RecorderFacts?

    enum CodingKeys: String, CodingKey {
        case format, scenario, profile, image, agent, sandbox, versions, failure, recorder
        case startedUnixNanoseconds = "started_unix_ns", finishedUnixNanoseconds = "finished_unix_ns"
        case durationMilliseconds = "duration_ms"
    }

    /// The document as written, in the documented order.
    public var json: JSONValue {
        func optional(_ text: String?) -> JSONValue { text.map { .string($0) } ?? .null }
        return .object([
            ("format", .string(format)),
            ("scenario", .object([
                ("name", .string(scenario.name)), ("option", optional(scenario.option)),
                ("directory", .string(scenario.directory)), ("workdir", .string(scenario.workdir)),
                ("script", .string(scenario.script)), ("script_relative", scenario.scriptRelative.map { .bool($0) } ?? .null),
                ("script_sha256", optional(scenario.scriptSHA256)), ("script_mode", .string(scenario.scriptMode)),
                ("trigger", .string(scenario.trigger)), ("trigger_mode", .string(scenario.triggerMode)),
                ("detection", .string(scenario.detection)),
                ("startup_files", .array(scenario.startupFiles.map { .string($0) })),
                ("shutdown_call", .int(Int64(scenario.shutdownCall))),
                ("expected_answers", .array(scenario.expectedAnswers.map { .string($0) })),
            ])),
            ("profile", .string(profile)),
            ("image", image.map { .object([("name", optional($0.name)), ("id", .string($0.id))]) } ?? .null),
            ("agent", .object([
                ("name", .string(agent.name)), ("path", optional(agent.path)), ("sha256", optional(agent.sha256)),
                ("expect", optional(agent.expect)), ("steps", .int(Int64(agent.steps))),
            ])),
            ("sandbox", .string(sandbox)),
            ("versions", .object([("offswitch", .string(versions.offswitch)), ("kernel", .string(versions.kernel)),
                                  ("event_format", .int(Int64(versions.eventFormat)))])),
            ("started_unix_ns", .uint(startedUnixNanoseconds)), ("finished_unix_ns", .uint(finishedUnixNanoseconds)),
            ("duration_ms", .int(durationMilliseconds)),
            ("failure", optional(failure)),
            ("recorder", recorder.map { .object([("mode", .string($0.mode)), ("kernel_calls", .array($0.kernelCalls.map { .string($0) }))]) } ?? .null),
        ])
    }
}
