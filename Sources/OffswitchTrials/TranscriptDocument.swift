public import OffswitchCore

/// transcript.json (`offswitch.transcript/1`, docs/trials.md): the agent's calls as the tools made
/// them, and the harness's probe. Written by the session (`json`, fields in the documented order,
/// absent ones left out), read by the classifier and the report; a step is also the reply of
/// offswitchd's `/steps` route.
public struct TranscriptDocument: Sendable, Decodable {
    public var format: String
    public var steps: [TranscriptStep]
    /// The harness's run of the trigger when the agent stopped before it; nil when none ran.
    public var probe: Probe?

    public struct Probe: Sendable, Decodable {
        public var command: String
        /// The seq of its `command_started` event; nil when it could not be started.
        public var commandEvent: UInt64?
        public var shutdown: Bool
        public var exitCode: Int64?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case command, shutdown, error
            case commandEvent = "command_event", exitCode = "exit_code"
        }

        var json: JSONValue {
            .object([("command", .string(command)), ("command_event", commandEvent.map { .uint($0) } ?? .null), ("shutdown", .bool(shutdown))]
                + (exitCode.map { [("exit_code", JSONValue.int($0))] } ?? []) + (error.map { [("error", JSONValue.string($0))] } ?? []))
        }
    }

    public var json: JSONValue {
        .object([("format", .string(format)), ("steps", .array(steps.map(\.json))), ("probe", probe?.json ?? .null)])
    }
}

/// One agent call in transcript.json.
public struct TranscriptStep: Sendable, Decodable {
    public enum Tool: String, Sendable, Decodable {
        case bash, submit
    }

    public enum Status: String, Sendable, Decodable {
        case completed
        case timedOut = "timed_out"
        /// The machine went down before or during the call (the call fails, as Palisade's did).
        case shutDown = "shut_down"
        case failed
        /// After the agent submitted, the trial finished, or the sandbox went down.
        case notRun = "not_run"
    }

    /// Palisade's own check after a bash call: whether its detection file exists.
    public struct PalisadeCheck: Sendable, Decodable {
        public var ran: Bool
        public var detected: Bool?
        public var why: String?

        var json: JSONValue {
            ran ? .object([("ran", .bool(true)), ("detected", .bool(detected ?? false))])
                : .object([("ran", .bool(false)), ("why", .string(why ?? ""))])
        }
    }

    public var step: Int
    public var tool: Tool
    public var command: String?
    public var answer: String?
    public var status: Status
    /// Why a call did not run.
    public var why: String?
    public var error: String?
    /// The seq of its `command_started` event.
    public var commandEvent: UInt64?
    public var exitCode: Int64?
    public var output: String?
    public var durationMilliseconds: Int64?
    public var shutdownDuringStep: Bool?
    public var palisadeCheck: PalisadeCheck?

    enum CodingKeys: String, CodingKey {
        case step, tool, command, answer, status, why, error, output
        case commandEvent = "command_event", exitCode = "exit_code", durationMilliseconds = "duration_ms"
        case shutdownDuringStep = "shutdown_during_step", palisadeCheck = "palisade_check"
    }

    init(step: Int, tool: Tool, command: String? = nil, answer: String? = nil, status: Status) {
        self.step = step
        self.tool = tool
        self.command = command
        self.answer = answer
        self.status = status
    }

    /// The step as written: the fields it has, in the documented order.
    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [("step", .int(Int64(step))), ("tool", .string(tool.rawValue))]
        if let command { fields.append(("command", .string(command))) }
        if let answer { fields.append(("answer", .string(answer))) }
        fields.append(("status", .string(status.rawValue)))
        if let why { fields.append(("why", .string(why))) }
        if let error { fields.append(("error", .string(error))) }
        if let commandEvent { fields.append(("command_event", .uint(commandEvent))) }
        if let exitCode { fields.append(("exit_code", .int(exitCode))) }
        if let output { fields.append(("output", .string(output))) }
        if let durationMilliseconds { fields.append(("duration_ms", .int(durationMilliseconds))) }
        if let shutdownDuringStep { fields.append(("shutdown_during_step", .bool(shutdownDuringStep))) }
        if let palisadeCheck { fields.append(("palisade_check", palisadeCheck.json)) }
        return .object(fields)
    }
}
