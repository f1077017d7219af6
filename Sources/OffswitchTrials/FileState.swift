import COffswitch
import Glibc
public import OffswitchCore
import OffswitchEvidence
public import OffswitchSandbox

/// What a path of a sandbox holds, as `scenario_state` and `protected_state` record it
/// (docs/events.md): its type, mode, owner, size and SHA-256 (regular files up to 64 MiB), a
/// symlink's target, and its `object`, the identity file events carry, so a verdict can follow
/// the file under any name. Read through the sandbox's root (`SandboxRoot`): a symlink inside
/// never leads the host out of it.
public enum FileState {
    /// The largest file hashed; a bigger one is described without `sha256`.
    public static let hashLimit: Int64 = 64 << 20

    /// `path`'s state. `uidBase` is the host uid of the sandbox's uid 0 (owners are given as the
    /// sandbox sees them). With `installed` (a device and inode), the file is judged by identity:
    /// not hashed, and `installed` says whether it is that file.
    public static func describe(_ path: String, in root: SandboxRoot, uidBase: Int64,
                                installed: (device: UInt64, inode: UInt64)? = nil, hashLimit: Int64 = hashLimit) -> JSONValue {
        guard let fd = root.openIfPresent(path, flags: OFS_O_PATH) else { return .object([("type", .string("missing"))]) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .object([("type", .string("unreadable"))]) }
        var fields: [(String, JSONValue)] = []
        let type = info.st_mode & S_IFMT
        switch type {
        case S_IFREG:
            fields.append(("type", .string("file")))
        case S_IFLNK:
            fields.append(("type", .string("symlink")))
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = readlinkat(fd, "", &buffer, buffer.count)
            fields.append(("target", n >= 0 ? .string(String(decoding: buffer[0..<n], as: UTF8.self)) : .null))
        case S_IFDIR: fields.append(("type", .string("directory")))
        default: fields.append(("type", .string("other")))
        }
        fields.append(("mode", .string(String(info.st_mode & 0o7777, radix: 8))))
        fields.append(("uid", .int(Int64(info.st_uid) - uidBase)))
        fields.append(("gid", .int(Int64(info.st_gid) - uidBase)))
        if type == S_IFREG || type == S_IFDIR, let acl = accessControlList(path, in: root, directory: type == S_IFDIR) {
            fields.append(("acl", .string(acl)))
        }
        if type == S_IFREG && installed == nil {
            fields.append(("size", .int(Int64(info.st_size))))
            // Opened again to read: O_PATH cannot. Non-blocking: a FIFO put in its place does not hang the host.
            let content = root.openIfPresent(path, flags: O_RDONLY | O_NONBLOCK)
            if let content, info.st_size <= hashLimit {
                fields.append(("sha256", SHA256.file(descriptor: content).map { .string($0) } ?? .null))
            }
            if let content { close(content) }
        }
        if let installed {
            fields.append(("installed", .bool(UInt64(info.st_dev) == installed.device && UInt64(info.st_ino) == installed.inode)))
        }
        if let object = try? FileObject.of(descriptor: fd) { fields.append(("object", .string(object))) }
        return .object(fields)
    }

    /// A POSIX ACL's entries (`system.posix_acl_access`, and a directory's
    /// `system.posix_acl_default`) by their SHA-256, `access=HEX` and `default=HEX` joined by
    /// `;`; nil when it has none. `setfacl` can grant or take away what the mode does not show.
    static func accessControlList(_ path: String, in root: SandboxRoot, directory: Bool) -> String? {
        // O_PATH descriptors cannot read extended attributes.
        guard let fd = root.openIfPresent(path, flags: O_RDONLY | O_NONBLOCK | (directory ? O_DIRECTORY : 0)) else { return nil }
        defer { close(fd) }
        var parts: [String] = []
        for (name, label) in [("system.posix_acl_access", "access"), ("system.posix_acl_default", "default")] {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = ofs_fgetxattr(fd, name, &buffer, buffer.count)
            guard n > 0 else { continue }
            parts.append(label + "=" + SHA256.hex(Array(buffer[0..<n])))
        }
        return parts.isEmpty ? nil : parts.joined(separator: ";")
    }
}
