import COffswitch
import Glibc
public import OffswitchCore

/// The host's window into a sandbox's root: what the host may do inside it (the harness placing
/// its socket, the question service looking at the agent's files, the escape battery checking what
/// an attempt left). Every path resolves inside the root only (openat2 RESOLVE_IN_ROOT, no magic
/// links), so a symlink the agent planted never leads the host outside; nothing follows the last
/// component unless asked. Opened from PID 1's root, it stays the sandbox's root while held.
public final class SandboxRoot: Sendable {
    /// An O_PATH descriptor of the sandbox's `/`.
    private let root: Int32
    /// The sandbox's id, for errors.
    private let sandboxID: String
    /// The host directory holding what the agent wrote (the overlay's upper layer).
    public let upperDirectory: String

    init(initPID: pid_t, sandboxID: String, upperDirectory: String) throws(OffswitchError) {
        let path = "/proc/\(initPID)/root"
        root = try systemCall("open(\(path))") { Glibc.open(path, Int32(OFS_O_PATH) | O_DIRECTORY | O_CLOEXEC) }
        self.sandboxID = sandboxID
        self.upperDirectory = upperDirectory
    }

    deinit { close(root) }

    /// Opens `path` (absolute inside the sandbox) with `flags`; O_NOFOLLOW unless `followLast`.
    public func open(_ path: String, flags: Int32, mode: UInt32 = 0, followLast: Bool = false) throws(OffswitchError) -> Int32 {
        try systemCall("open(\(path) in sandbox \(sandboxID))") {
            ofs_open_in_root(root, path, flags | O_CLOEXEC | (followLast ? 0 : O_NOFOLLOW), mode_t(mode))
        }
    }

    /// Like `open`, nil when the path cannot be opened (absent, or refused).
    public func openIfPresent(_ path: String, flags: Int32, followLast: Bool = false) -> Int32? {
        let fd = ofs_open_in_root(root, path, flags | O_CLOEXEC | (followLast ? 0 : O_NOFOLLOW), 0)
        return fd >= 0 ? fd : nil
    }

    /// Creates the directory `path` (its parent must exist) owned by the host's root, which is
    /// `nobody` inside: no one in the sandbox, root included, may change it. An existing
    /// directory is fine, anything else there is an error.
    public func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws(OffswitchError) {
        let (parent, name) = try Self.split(path)
        let directory = try open(parent, flags: Int32(OFS_O_PATH) | O_DIRECTORY, followLast: true)
        defer { close(directory) }
        if mkdirat(directory, name, mode_t(mode)) != 0 && errno != EEXIST {
            throw OffswitchError.system("mkdir(\(path) in sandbox \(sandboxID))", errno: errno)
        }
        let made = try open(path, flags: Int32(OFS_O_PATH) | O_DIRECTORY)
        close(made)
    }

    /// A listening Unix socket bound at `path` inside (its directory must exist), with `mode`.
    /// Bound through the directory's descriptor, so no symlink on the way is followed.
    public func listen(at path: String, mode: UInt32, backlog: Int32 = 64) throws(OffswitchError) -> Int32 {
        let (parent, name) = try Self.split(path)
        let directory = try open(parent, flags: Int32(OFS_O_PATH) | O_DIRECTORY, followLast: true)
        defer { close(directory) }
        let listener = try systemCall("socket(AF_UNIX) for \(path)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        do throws(OffswitchError) {
            // /proc/self/fd/N names the directory itself: the kernel resolves no path inside.
            let hostPath = "/proc/self/fd/\(directory)/\(name)"
            let bound = try withUnixAddress(hostPath) { Glibc.bind(listener, $0, $1) }
            if bound != 0 { throw OffswitchError.system("bind(\(path) in sandbox \(sandboxID))", errno: errno) }
            _ = try systemCall("chmod(\(path) in sandbox \(sandboxID))") { fchmodat(directory, name, mode_t(mode), 0) }
            _ = try systemCall("listen(\(path))") { Glibc.listen(listener, backlog) }
            return listener
        } catch {
            close(listener)
            throw error
        }
    }

    private static func split(_ path: String) throws(OffswitchError) -> (parent: String, name: String) {
        guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/"), path.index(after: slash) < path.endIndex else {
            throw OffswitchError(.invalidArgument, "\(path): not an absolute path naming a file")
        }
        let name = String(path[path.index(after: slash)...])
        guard name != "." && name != ".." else { throw OffswitchError(.invalidArgument, "\(path): not a name") }
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, name)
    }
}

extension Sandbox {
    /// The host's window into this sandbox's root (see `SandboxRoot`).
    public func root() throws(OffswitchError) -> SandboxRoot {
        try ensureRunning()
        return try SandboxRoot(initPID: initPID, sandboxID: id, upperDirectory: upperDirectory)
    }
}
