/// A tmpfs PID 1 mounts inside the sandbox while it builds the root (Docker's `--tmpfs`, compose's
/// `tmpfs:`): after the root, `/usr` and `/tmp`, before a read-only root is sealed, so it stays
/// writable. Mounted `nosuid,nodev,noexec` as Docker mounts these, its root owned by root inside.
public struct TmpfsMount: Sendable, Equatable, Codable {
    /// Absolute and normalised; its missing directories are made, no symlink on the way followed.
    public var path: String
    public var sizeBytes: UInt64
    /// Mode of the mount's root directory.
    public var mode: UInt32

    public static let maxMounts = 16
    public static let defaultMode: UInt32 = 0o1777
    static let maxPathBytes = 1024

    public init(path: String, sizeBytes: UInt64, mode: UInt32 = TmpfsMount.defaultMode) {
        self.path = path
        self.sizeBytes = sizeBytes
        self.mode = mode
    }

    /// The path's names below `/` (`/var/cache` is `var`, `cache`).
    public var components: [Substring] { path.split(separator: "/") }

    /// Where a mount point may be: absolute, no empty, `.` or `..` names, not `/`, not in the
    /// kernel's filesystems (`/proc`, `/sys`, `/dev`), except `/dev/shm` itself (Docker sizes it
    /// this way). `field` names the path in the error.
    public static func checkPath(_ path: String, field: String) throws(OffswitchError) {
        func refuse(_ reason: String) -> OffswitchError {
            OffswitchError(.invalidArgument, "\(field): \(reason)")
        }
        guard path.hasPrefix("/") else { throw refuse("must be an absolute path") }
        guard path != "/" else { throw refuse("a tmpfs cannot replace the root; use read_only and tmpfs mounts below it") }
        guard !path.utf8.contains(0) else { throw refuse("contains a NUL byte") }
        guard path.utf8.count <= maxPathBytes else { throw refuse("longer than \(maxPathBytes) bytes") }
        let names = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for name in names {
            if name.isEmpty { throw refuse("\"\(path)\" has an empty name (a doubled or trailing /)") }
            if name == "." || name == ".." { throw refuse("\"\(path)\" is not normalised (no . or .. names)") }
            if name.utf8.count > 255 { throw refuse("a name longer than 255 bytes") }
        }
        if path != "/dev/shm", let first = names.first, ["proc", "sys", "dev"].contains(first) {
            throw refuse("\(path) is in /\(first), the kernel's; only /dev/shm may be given there")
        }
    }

    /// Checks a whole list: at most `maxMounts`, each path once, each between 1 MiB and the
    /// sandbox's memory limit (`memoryBytes`). A size of 0 would be a tmpfs without a bound.
    public static func checkList(_ mounts: [TmpfsMount], memoryBytes: UInt64) throws(OffswitchError) {
        guard mounts.count <= maxMounts else {
            throw OffswitchError(.invalidArgument, "tmpfs: \(mounts.count) mounts, at most \(maxMounts)")
        }
        var seen: [String: Int] = [:]
        for (index, mount) in mounts.enumerated() {
            try checkPath(mount.path, field: "tmpfs[\(index)].path")
            if let first = seen[mount.path] {
                throw OffswitchError(.invalidArgument, "tmpfs[\(index)].path: \(mount.path) is given twice (also tmpfs[\(first)])")
            }
            seen[mount.path] = index
            guard mount.sizeBytes >= 1 << 20, mount.sizeBytes <= memoryBytes else {
                throw OffswitchError(.invalidArgument, "tmpfs[\(index)].size_mib: \(mount.sizeBytes >> 20) MiB is not between 1 and the sandbox's memory limit (\(memoryBytes >> 20) MiB), which bounds what the sandbox writes there anyway")
            }
            guard mount.mode <= 0o7777 else {
                throw OffswitchError(.invalidArgument, "tmpfs[\(index)].mode: \(String(mount.mode, radix: 8)) is not a mode")
            }
        }
    }
}
