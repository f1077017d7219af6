import Glibc
import Hummingbird

/// Copies a sandbox's event log to an HTTP response, whole lines only; with `follow`, goes on
/// as lines are appended until the log's last line (`sandbox_destroyed`) has been sent, or the
/// client goes away: a failed write, or `clientGone` while the log is quiet (ClientHangUp).
/// Returns whether the client was there to the end.
enum EventStream {
    static let lastKind = Array(#""kind":"sandbox_destroyed""#.utf8)

    @discardableResult
    static func copy(from fd: Int32, to writer: inout any ResponseBodyWriter, follow: Bool,
                     finished: @Sendable () -> Bool, clientGone: @Sendable () -> Bool = { false }) async throws -> Bool {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var idleAfterDestroy = 0
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n > 0 {
                pending += chunk[0..<n]
                if let lastNewline = pending.lastIndex(of: 10) {
                    let lines = Array(pending[...lastNewline])
                    try await writer.write(ByteBuffer(bytes: lines))
                    pending.removeSubrange(...lastNewline)
                    if contains(lines, lastKind) { return true }
                }
                continue
            }
            guard follow else { break }
            if clientGone() { return false }
            // A destroy that failed half-way never writes the last line: give up after 5 s of silence.
            if finished() {
                idleAfterDestroy += 1
                if idleAfterDestroy > 100 { break }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        if !pending.isEmpty { try await writer.write(ByteBuffer(bytes: pending)) }
        return true
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
