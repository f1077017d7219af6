import Glibc
import OffswitchCore

/// stdin, stdout and stderr as byte streams (FileHandle needs full Foundation, and with it ICU,
/// which costs every invocation tens of milliseconds to load).
enum StandardStreams {
    static func write(_ bytes: [UInt8], to fd: Int32) { writeAll(fd, bytes) }

    static func out(_ bytes: [UInt8]) { write(bytes, to: 1) }
    static func out(_ text: String) { write(Array(text.utf8), to: 1) }
    static func err(_ bytes: [UInt8]) { write(bytes, to: 2) }
    static func err(_ text: String) { write(Array(text.utf8), to: 2) }

    static func isTerminal(_ fd: Int32) -> Bool { isatty(fd) == 1 }

    /// A local file's bytes, or standard input's for `-`.
    static func contents(of local: String) throws(OffswitchError) -> [UInt8] {
        if local == "-" { return readAll(0) }
        let fd = try systemCall("open(\(local))") { open(local, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        return readAll(fd)
    }

    /// Everything readable from `fd` until EOF.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }
}
