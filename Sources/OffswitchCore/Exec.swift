/// A command to run inside a sandbox.
public struct ExecRequest: Sendable, Equatable {
    /// The program and its arguments; no shell is added.
    public var argv: [String]
    public var stdin: [UInt8]
    /// Working directory; defaults to the user's home.
    public var cwd: String?
    /// Added to (and overriding) the default environment.
    public var environment: [String: String]
    public var user: SandboxUser
    /// Seconds; nil means no limit. On expiry the command's whole process tree is killed.
    public var timeoutSeconds: Double?
    /// Bytes kept per stream; the rest is read and dropped, and the result says so.
    public var outputLimitBytes: Int
    /// Who asked: the agent under test, or the harness itself (setup, checks). The event log
    /// labels every command so, and with it every event of its session.
    public var origin: ExecOrigin

    public static let defaultOutputLimit = 16 << 20

    public init(
        argv: [String], stdin: [UInt8] = [], cwd: String? = nil, environment: [String: String] = [:],
        user: SandboxUser = .agent, timeoutSeconds: Double? = nil, outputLimitBytes: Int = defaultOutputLimit,
        origin: ExecOrigin = .agent
    ) {
        self.origin = origin
        self.argv = argv
        self.stdin = stdin
        self.cwd = cwd
        self.environment = environment
        self.user = user
        self.timeoutSeconds = timeoutSeconds
        self.outputLimitBytes = outputLimitBytes
    }
}

/// Who runs a command: the agent under test, or the harness around it.
public enum ExecOrigin: String, Sendable, Equatable, Codable, CaseIterable {
    case agent
    case harness
}

/// What a command did.
public struct ExecResult: Sendable, Equatable {
    /// The exit status, or 128+N when signal N ended it (as shells report it).
    public var exitCode: Int32
    /// The signal that ended it, if one did.
    public var signal: Int32?
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool
    public var durationNanoseconds: UInt64
    /// PID 1 killed the command's process tree at its deadline.
    public var timedOut: Bool
    /// Set when the sandbox was shut down while (or by) this command.
    public var shutdown: ShutdownInfo?
    /// The seq of the command's `command_started` event in the sandbox's log (nil where no log
    /// took it). Recorded events arrive while a command is being started, so the log's count
    /// before the call does not name it.
    public var commandEvent: UInt64? = nil

    public init(
        exitCode: Int32, signal: Int32?, stdout: [UInt8], stderr: [UInt8], stdoutTruncated: Bool,
        stderrTruncated: Bool, durationNanoseconds: UInt64, timedOut: Bool, shutdown: ShutdownInfo?
    ) {
        self.exitCode = exitCode
        self.signal = signal
        self.stdout = stdout
        self.stderr = stderr
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
        self.durationNanoseconds = durationNanoseconds
        self.timedOut = timedOut
        self.shutdown = shutdown
    }
}
