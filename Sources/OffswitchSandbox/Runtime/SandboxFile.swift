import Glibc
public import OffswitchCore

/// A file inside a sandbox that the host opened for one transfer (`Sandbox.openForReading`,
/// `openForWriting`): the descriptor PID 1 handed over, so the path was resolved inside the root
/// once and the transfer cannot be redirected. Closed when released. Calls block: a server runs
/// them on a thread of its own (`BlockingWork`), a chunk at a time.
public final class SandboxFile: Sendable {
    private let fd: Int32
    /// The path inside the sandbox, for errors.
    public let path: String
    /// Its size when it was opened.
    public let size: Int64

    /// Takes `fd` over: it is closed when this goes, or now if it cannot be read.
    init(fd: Int32, path: String) throws(OffswitchError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = OffswitchError.system("fstat(\(path))", errno: errno)
            close(fd)
            throw error
        }
        self.fd = fd
        self.path = path
        size = Int64(info.st_size)
    }

    deinit { close(fd) }

    /// Up to `count` bytes from where the last read ended; empty at the end of the file.
    public func read(upTo count: Int) throws(OffswitchError) -> [UInt8] {
        var chunk = [UInt8](repeating: 0, count: count)
        let n = try systemCall("read(\(path))") { Glibc.read(fd, &chunk, count) }
        chunk.removeSubrange(n...)
        return chunk
    }

    /// Appends all of `bytes`.
    public func write(_ bytes: [UInt8]) throws(OffswitchError) {
        try Sandbox.write(bytes, to: fd, path: path)
    }

    /// Cuts the file to nothing: a transfer refused half-way leaves no part of it behind.
    public func discard() throws(OffswitchError) {
        _ = try systemCall("ftruncate(\(path))") { ftruncate(fd, 0) }
    }
}
