import COffswitch
import Glibc
public import OffswitchCore

extension Sandbox {
    /// The largest file the file API reads or writes: 64 MiB. The host holds what it moves, and the
    /// agent sizes the files (`truncate -s 1P` makes a petabyte in no space at all); a larger
    /// file is refused with `file_too_large` before anything is read. Inside, `exec` has no limit.
    public static let fileLimit = 64 << 20

    /// Writes `contents` to `path` inside the sandbox as `user`, creating parent directories.
    /// The path resolves inside the sandbox root only (openat2 RESOLVE_IN_ROOT, no magic links),
    /// with the user's own permissions; a relative path is relative to the user's home.
    public func writeFile(_ path: String, _ contents: [UInt8], user: SandboxUser = .agent, mode: UInt32 = 0o644) throws(OffswitchError) {
        try Self.checkSize(Int64(contents.count), limit: Self.fileLimit, operation: "write", path: path)
        let file = try openForWriting(path, user: user, mode: mode)
        try file.write(contents)
    }

    /// Reads the file at `path` inside the sandbox as `user`; a file over `limit` bytes
    /// (`fileLimit` at most) is refused before it is read.
    public func readFile(_ path: String, user: SandboxUser = .agent, limit: Int = Sandbox.fileLimit) throws(OffswitchError) -> [UInt8] {
        let file = try openForReading(path, user: user, limit: limit)
        var contents: [UInt8] = []
        contents.reserveCapacity(Int(file.size))
        while true {
            let chunk = try file.read(upTo: 1 << 20)
            if chunk.isEmpty { return contents }
            try Self.checkSize(Int64(contents.count + chunk.count), limit: limit, operation: "read", path: file.path)
            contents += chunk
        }
    }

    /// Opens `path` inside the sandbox for reading as `user` (resolved as `readFile` does), for a
    /// caller that moves it in chunks; over `limit` bytes (`fileLimit` at most) it is refused.
    public func openForReading(_ path: String, user: SandboxUser = .agent, limit: Int = Sandbox.fileLimit) throws(OffswitchError) -> SandboxFile {
        let resolved = try resolve(path, user: user)
        let fd = try openInside(resolved, mode: .read, createMode: 0, user: user, operation: "read")
        let file = try SandboxFile(fd: fd, path: resolved)
        try Self.checkSize(file.size, limit: min(limit, Self.fileLimit), operation: "read", path: resolved)
        return file
    }

    /// Opens (creates, or truncates) `path` inside the sandbox for writing as `user`, with `mode`
    /// for a new file, creating parent directories, for a caller that writes it in chunks.
    public func openForWriting(_ path: String, user: SandboxUser = .agent, mode: UInt32 = 0o644) throws(OffswitchError) -> SandboxFile {
        let resolved = try resolve(path, user: user)
        return try SandboxFile(fd: try openInside(resolved, mode: .write, createMode: mode & 0o7777, user: user, operation: "write"), path: resolved)
    }

    /// Throws `file_too_large` when `size` is over `limit`.
    package static func checkSize(_ size: Int64, limit: Int, operation: String, path: String) throws(OffswitchError) {
        guard size > Int64(limit) else { return }
        throw OffswitchError(.fileTooLarge, "\(operation)(\(path)): \(size) bytes or more, over the file API's limit of \(Self.describe(limit)) (inside the sandbox, exec has none)")
    }

    private static func describe(_ bytes: Int) -> String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }

    /// Installs a harness file at `path` (absolute, in an existing directory), owned by `owner`
    /// with exactly `mode`, whatever the profile lets root do inside: the host writes it through
    /// the sandbox's root (openat2 RESOLVE_IN_ROOT, no symlink followed, the file must not exist).
    /// For setup, before the agent runs: a scenario's root-owned trigger in the agent's home.
    public func install(_ path: String, _ contents: [UInt8], owner: SandboxUser, mode: UInt32) throws(OffswitchError) {
        try ensureRunning()
        guard path.hasPrefix("/"), !path.utf8.contains(0) else {
            throw OffswitchError(.invalidArgument, "install: \(path) is not an absolute path")
        }
        let fd = try root().open(path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        defer { close(fd) }
        try Self.write(contents, to: fd, path: path)
        let base = spec.userNamespace?.hostUID ?? 0
        let uid = base + (owner == .root ? 0 : SandboxUser.agentUID), gid = base + (owner == .root ? 0 : SandboxUser.agentGID)
        _ = try systemCall("fchown(\(path), \(uid))") { fchown(fd, uid, gid) }
        _ = try systemCall("fchmod(\(path), \(String(mode, radix: 8)))") { fchmod(fd, mode_t(mode & 0o7777)) }
    }

    /// Writes all of `contents`; an error names `path` and the errno.
    static func write(_ contents: [UInt8], to fd: Int32, path: String) throws(OffswitchError) {
        var offset = 0
        while offset < contents.count {
            let n = try systemCall("write(\(path))") {
                contents[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, min($0.count, 1 << 20)) }
            }
            offset += n
        }
    }

    /// A pty pair opened inside the sandbox's own devpts: (master, slave), both close-on-exec.
    public func openTerminal() throws(OffswitchError) -> (master: Int32, slave: Int32) {
        let (mine, theirs) = try replySocket()
        defer { close(mine) }
        do throws(OffswitchError) {
            try control.send(.openPTY, descriptors: [theirs])
        } catch {
            close(theirs)
            throw error
        }
        close(theirs)
        let fds = try awaitReply(on: mine, expecting: 2, what: "openpty(/dev/ptmx)")
        return (fds[0], fds[1])
    }

    private func resolve(_ path: String, user: SandboxUser) throws(OffswitchError) -> String {
        guard !path.isEmpty else { throw OffswitchError(.invalidArgument, "file path is empty") }
        guard !path.utf8.contains(0) else { throw OffswitchError(.invalidArgument, "file path \"\(path)\" contains a NUL byte") }
        guard path.utf8.count < 4000 else { throw OffswitchError(.invalidArgument, "file path is longer than 4000 bytes") }
        return path.hasPrefix("/") ? path : home(of: user) + "/" + path
    }

    private func openInside(_ path: String, mode: FileOrder.Mode, createMode: UInt32, user: SandboxUser, operation: String) throws(OffswitchError) -> Int32 {
        try ensureRunning()
        let (mine, theirs) = try replySocket()
        defer { close(mine) }
        let order = FileOrder(path: path, mode: mode, createMode: createMode, identity: identity(of: user))
        do throws(OffswitchError) {
            try control.send(.openFile(order), descriptors: [theirs])
        } catch {
            close(theirs)
            if error.errno == EPIPE || error.errno == ECONNRESET { throw collectEnd().error(id: id) }
            throw error
        }
        close(theirs)
        let fd = try awaitReply(on: mine, expecting: 1, what: "\(operation)(\(path))")[0]
        // The helper closes its copy, then its end of the socket: once that end is closed, the
        // descriptor is the host's alone, and closing it leaves no writer on the mount
        // (`sealRoot` fails with EBUSY while one is left).
        if mode == .write {
            while (try? ControlChannel.receive(on: mine, capacity: 64, maxDescriptors: 0, stage: "recvmsg(end of \(operation))")) != nil {}
        }
        return fd
    }

    private func replySocket() throws(OffswitchError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try systemCall("socketpair(reply)") {
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    /// The helper's answer: descriptors, or {stage, errno} turned into a typed error.
    private func awaitReply(on socket: Int32, expecting count: Int, what: String) throws(OffswitchError) -> [Int32] {
        guard let (bytes, fds) = try ControlChannel.receive(on: socket, capacity: 64, maxDescriptors: count, stage: "recvmsg(\(what))") else {
            try ensureRunning()
            throw OffswitchError(.system, "\(what): the helper inside the sandbox exited without answering")
        }
        guard bytes.count == MemoryLayout<ofs_file_reply>.size else {
            for fd in fds { close(fd) }
            throw OffswitchError(.protocolError, "\(what): reply of \(bytes.count) bytes")
        }
        let reply = bytes.withUnsafeBytes { $0.loadUnaligned(as: ofs_file_reply.self) }
        if reply.stage == Int32(OFS_STAGE_NOT_REGULAR.rawValue) {
            throw OffswitchError(.notRegularFile, "\(what): not a regular file")
        }
        if reply.err == EROFS {
            for fd in fds { close(fd) }
            throw OffswitchError(.readOnly, "\(what): the sandbox's root is read-only (read_only); only its tmpfs mounts and /dev/shm take writes",
                                 errno: EROFS)
        }
        guard reply.err == 0, fds.count == count else {
            for fd in fds { close(fd) }
            let stage = reply.stage == Int32(OFS_STAGE_MKDIR.rawValue) ? "\(what): creating a parent directory" : what
            throw OffswitchError.system(stage, errno: reply.err == 0 ? EPROTO : reply.err)
        }
        return fds
    }
}
