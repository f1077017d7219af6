import Glibc
import Hummingbird

/// Copies a sandbox's event log to an HTTP response, whole lines only; with `follow`, goes on
/// as lines are appended until the sandbox is destroyed (or the client goes away).
enum EventStream {
    static func copy(from fd: Int32, to writer: inout any ResponseBodyWriter, follow: Bool,
                     finished: @Sendable () -> Bool) async throws {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n > 0 {
                pending += chunk[0..<n]
                if let lastNewline = pending.lastIndex(of: 10) {
                    try await writer.write(ByteBuffer(bytes: pending[...lastNewline]))
                    pending.removeSubrange(...lastNewline)
                }
                continue
            }
            // At the end of what is written so far.
            guard follow, !finished() else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        // Read once more after the end was seen: destroy appends its last line before it reports.
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            pending += chunk[0..<n]
        }
        if !pending.isEmpty { try await writer.write(ByteBuffer(bytes: pending)) }
    }
}
