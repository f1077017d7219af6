import FoundationEssentials
import OffswitchCore

/// The `--json` form of an exec result. Field names are stable (snake_case); stdout and stderr are
/// UTF-8 text with invalid bytes replaced, and `*_base64` carries the exact bytes.
enum ResultJSON {
    struct Document: Encodable {
        var exit_code: Int32
        var signal: Int32?
        var stdout: String
        var stderr: String
        var stdout_base64: String
        var stderr_base64: String
        var duration_ms: Double
        var timed_out: Bool
        var truncated: Truncated
        var shutdown: Shutdown?
    }
    struct Truncated: Encodable {
        var stdout: Bool
        var stderr: Bool
    }
    struct Shutdown: Encodable {
        var signal: Int32
        var sender_pid: Int32
        var sender_uid: UInt32
        var at_unix_ns: UInt64
    }

    static func encode(_ result: ExecResult) throws -> [UInt8] {
        let document = Document(
            exit_code: result.exitCode, signal: result.signal,
            stdout: String(decoding: result.stdout, as: UTF8.self), stderr: String(decoding: result.stderr, as: UTF8.self),
            stdout_base64: Data(result.stdout).base64EncodedString(), stderr_base64: Data(result.stderr).base64EncodedString(),
            duration_ms: Double(result.durationNanoseconds) / 1e6, timed_out: result.timedOut,
            truncated: Truncated(stdout: result.stdoutTruncated, stderr: result.stderrTruncated),
            shutdown: result.shutdown.map { Shutdown(signal: $0.signal, sender_pid: $0.senderPID, sender_uid: $0.senderUID, at_unix_ns: $0.unixNanoseconds) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [UInt8](try encoder.encode(document))
    }
}
