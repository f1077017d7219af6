import FoundationEssentials
import Glibc
public import OffswitchCore

/// `POST /v1/sandboxes/{id}/exec` body. `stdin` is text; `stdin_base64` exact bytes (not both).
public struct ExecBody: Codable, Sendable {
    public var argv: [String]
    public var stdin: String?
    public var stdin_base64: String?
    public var cwd: String?
    public var env: [String: String]?
    public var user: String?
    public var timeout: Double?
    public var output_limit: Int?
    /// `agent` (default) or `harness`: who asks, as the event log labels it.
    public var origin: String?

    public init(argv: [String], stdin: String? = nil, stdin_base64: String? = nil, cwd: String? = nil,
                env: [String: String]? = nil, user: String? = nil, timeout: Double? = nil, output_limit: Int? = nil,
                origin: String? = nil) {
        self.origin = origin
        self.argv = argv
        self.stdin = stdin
        self.stdin_base64 = stdin_base64
        self.cwd = cwd
        self.env = env
        self.user = user
        self.timeout = timeout
        self.output_limit = output_limit
    }

    /// The runtime request, or an error naming the bad field. The defaults are the sandbox
    /// profile's (`user`, `limits.command_timeout`).
    public func request(defaultUser: SandboxUser = .agent, defaultTimeout: Double? = nil) throws(OffswitchError) -> ExecRequest {
        guard !argv.isEmpty else { throw OffswitchError(.invalidArgument, "argv: must name a program") }
        var input: [UInt8] = []
        switch (stdin, stdin_base64) {
        case (let text?, nil): input = Array(text.utf8)
        case (nil, let encoded?):
            guard let data = Data(base64Encoded: encoded) else {
                throw OffswitchError(.invalidArgument, "stdin_base64: not valid base64")
            }
            input = [UInt8](data)
        case (nil, nil): break
        default: throw OffswitchError(.invalidArgument, "stdin, stdin_base64: give one, not both")
        }
        let who = try SandboxUser.parse(user, field: "user", default: defaultUser)
        if let output_limit, output_limit < 0 { throw OffswitchError(.invalidArgument, "output_limit: must not be negative") }
        var from = ExecOrigin.agent
        if let origin {
            guard let value = ExecOrigin(rawValue: origin) else {
                throw OffswitchError(.invalidArgument, "origin: \"\(origin)\" is neither \"agent\" nor \"harness\"")
            }
            from = value
        }
        return ExecRequest(argv: argv, stdin: input, cwd: cwd, environment: env ?? [:], user: who, timeoutSeconds: timeout ?? defaultTimeout,
                           outputLimitBytes: output_limit ?? ExecRequest.defaultOutputLimit, origin: from)
    }
}

/// An exec result as JSON: the API's exec response and `offswitch sandbox run --json`.
/// Field names are stable and always present. Each stream travels once: as text in `stdout`
/// when its bytes are valid UTF-8 and their JSON escaping is no longer than base64 (then
/// `stdout_base64` is null), otherwise as base64 in `stdout_base64` (then `stdout` is null).
/// Either way the bytes arrive exactly, and a stream never takes more of the reply than its
/// base64 would (4/3 of its bytes): valid UTF-8 full of control bytes grows six times as JSON
/// text (`\u0001`), so it travels as base64.
public struct ExecDocument: Codable, Sendable, Equatable {
    public var exit_code: Int32
    public var signal: Int32?
    public var stdout: String?
    public var stderr: String?
    public var stdout_base64: String?
    public var stderr_base64: String?
    public var duration_ms: Double
    public var timed_out: Bool
    public var truncated: Truncated
    public var shutdown: ShutdownDocument?

    public struct Truncated: Codable, Sendable, Equatable {
        public var stdout: Bool
        public var stderr: Bool
    }

    public init(_ result: ExecResult) {
        exit_code = result.exitCode
        signal = result.signal
        (stdout, stdout_base64) = Self.carry(result.stdout)
        (stderr, stderr_base64) = Self.carry(result.stderr)
        duration_ms = Double(result.durationNanoseconds / 1000) / 1000
        timed_out = result.timedOut
        truncated = Truncated(stdout: result.stdoutTruncated, stderr: result.stderrTruncated)
        shutdown = result.shutdown.map(ShutdownDocument.init)
    }

    private static func carry(_ bytes: [UInt8]) -> (String?, String?) {
        if escapedLength(bytes) <= base64Length(bytes.count), let text = String(validating: bytes, as: UTF8.self) {
            return (text, nil)
        }
        return (nil, Data(bytes).base64EncodedString())
    }

    /// The bytes `APIJSON` writes for `bytes` as a JSON string, quotes left out: a quote, a
    /// backslash and the controls with a short escape (`\b \t \n \f \r`) take two, the other
    /// controls six (`\u001b`), every other byte one. ExecDocumentTests holds it to the encoder.
    private static func escapedLength(_ bytes: [UInt8]) -> Int {
        var length = 0
        for byte in bytes {
            switch byte {
            case 0x22, 0x5c, 0x08, 0x09, 0x0a, 0x0c, 0x0d: length += 2
            case 0..<0x20: length += 6
            default: length += 1
            }
        }
        return length
    }

    /// Padded base64's length for `count` bytes.
    private static func base64Length(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    /// The exact output bytes, whichever way they travelled.
    public var stdoutBytes: [UInt8] { Self.bytes(stdout, stdout_base64) }
    public var stderrBytes: [UInt8] { Self.bytes(stderr, stderr_base64) }

    private static func bytes(_ text: String?, _ encoded: String?) -> [UInt8] {
        if let text { return Array(text.utf8) }
        return encoded.flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } ?? []
    }

    private enum CodingKeys: String, CodingKey {
        case exit_code, signal, stdout, stderr, stdout_base64, stderr_base64, duration_ms, timed_out, truncated, shutdown
    }

    /// Nulls are written out, so every key is always there.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(exit_code, forKey: .exit_code)
        try container.encode(signal, forKey: .signal)
        try container.encode(stdout, forKey: .stdout)
        try container.encode(stderr, forKey: .stderr)
        try container.encode(stdout_base64, forKey: .stdout_base64)
        try container.encode(stderr_base64, forKey: .stderr_base64)
        try container.encode(duration_ms, forKey: .duration_ms)
        try container.encode(timed_out, forKey: .timed_out)
        try container.encode(truncated, forKey: .truncated)
        try container.encode(shutdown, forKey: .shutdown)
    }
}

/// Who shut a sandbox down.
public struct ShutdownDocument: Codable, Sendable, Equatable {
    public var signal: Int32
    /// The sender's pid inside the sandbox; 0 when the signal came from outside.
    public var sender_pid: Int32
    public var sender_uid: UInt32
    public var at_unix_ns: UInt64

    public init(_ info: ShutdownInfo) {
        signal = info.signal
        sender_pid = info.senderPID
        sender_uid = info.senderUID
        at_unix_ns = info.unixNanoseconds
    }
}

/// JSON with sorted keys: stable output for people and diffs.
public enum APIJSON {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try encoder.encode(value))
    }
}

extension SandboxUser {
    /// `user` (default) or `root`, naming the field when it is neither.
    public static func parse(_ text: String?, field: String, default fallback: SandboxUser = .agent) throws(OffswitchError) -> SandboxUser {
        guard let text else { return fallback }
        guard let user = SandboxUser(rawValue: text) else {
            throw OffswitchError(.invalidArgument, "\(field): \"\(text)\" is not a user; use \"user\" or \"root\"")
        }
        return user
    }
}
