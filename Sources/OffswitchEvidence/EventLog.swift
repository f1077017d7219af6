import Glibc
public import OffswitchCore
import Synchronization

/// One sandbox's event log: NDJSON, one event a line (format in docs/events.md), appended with a
/// single write(2) per event as it happens, so a crash loses at most the line being written.
/// Safe to append from any thread; sequence numbers follow the order of the lines.
public final class EventLog: Sendable {
    public static let formatVersion = 1
    public let path: String
    private let fd: Int32
    private let origin: UInt64
    private let sequence = Mutex<UInt64>(0)

    /// Creates (or truncates) the log at `path`, mode 0600.
    public init(path: String) throws(OffswitchError) {
        self.path = path
        fd = try systemCall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600) }
        origin = Self.monotonicNanoseconds()
    }

    deinit { close(fd) }

    /// Nanoseconds of CLOCK_MONOTONIC.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    /// Appends one event: the common fields, then the process (when there is one), then `fields`.
    @discardableResult
    public func append(_ kind: String, process: ProcessFacts? = nil, _ fields: [(String, JSONValue)] = []) -> UInt64 {
        sequence.withLock { seq in
            seq += 1
            var object: [(String, JSONValue)] = [
                ("seq", .uint(seq)), ("t_ns", .uint(Self.monotonicNanoseconds() &- origin)), ("kind", .string(kind)),
            ]
            if let process { object += process.fields }
            object += fields
            var line = JSONValue.object(object).serialized
            line += "\n"
            var bytes = Array(line.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
            return seq
        }
    }

    /// Events appended so far.
    public var count: UInt64 { sequence.withLock { $0 } }
}
