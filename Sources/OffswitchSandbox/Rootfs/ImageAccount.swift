import COffswitch
import Glibc
import OffswitchCore
import OffswitchImages

/// The agent's account in an image's root. Scenarios run the agent as `user` (uid 1000, home
/// /home/user), as Palisade's image had it; an image without uid 1000 gets that account in the
/// sandbox's own generated layer (over the image, under what the agent writes): its `passwd` and
/// `group` with one line more each, and the home directory. The image itself is not changed.
enum ImageAccount {
    /// The file at `relative` (no `..`) in the topmost layer that has it, as the overlay shows it:
    /// nil when no layer has it, when a layer above deletes it (a whiteout) or hides its directory
    /// (an opaque one), when a directory on the way is a link (the host never follows a link of
    /// the image's), or when it is not a regular file (a FIFO is never opened for reading).
    static func read(_ relative: String, lowers: [String]) -> String? {
        let components = relative.split(separator: "/").map(String.init)
        for lower in lowers {
            var current = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard current >= 0 else { continue }
            var hidden = false, missing = false
            for (index, component) in components.enumerated() {
                var info = stat()
                guard fstatat(current, component, &info, AT_SYMLINK_NOFOLLOW) == 0 else { missing = true; break }
                let last = index == components.count - 1
                // A whiteout (a 0:0 character device) hides every lower layer's entry.
                if info.st_mode & S_IFMT == S_IFCHR && info.st_rdev == 0 { hidden = true; break }
                if last {
                    guard info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20 else { hidden = true; break }
                    let fd = openat(current, component, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
                    close(current)
                    guard fd >= 0 else { return nil }
                    defer { close(fd) }
                    return contents(fd)
                }
                guard info.st_mode & S_IFMT == S_IFDIR else { hidden = true; break }
                let next = openat(current, component, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
                close(current)
                current = next
                guard current >= 0 else { return nil }
                // An opaque directory hides what lower layers have under it.
                var flag: UInt8 = 0
                if ofs_fgetxattr(current, "trusted.overlay.opaque", &flag, 1) == 1 && flag == UInt8(ascii: "y") && !last {
                    let rest = components[(index + 1)...].joined(separator: "/")
                    let found = fstatat(current, rest, &info, AT_SYMLINK_NOFOLLOW) == 0
                    if !found { close(current); return nil }
                }
            }
            close(current)
            if hidden { return nil }
            if missing { continue }
        }
        return nil
    }

    private static func contents(_ fd: Int32) -> String? {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        return n < 0 ? nil : String(decoding: bytes[0..<n], as: UTF8.self)
    }

    /// Whether the image has a directory at `relative` (its links not followed).
    static func hasDirectory(_ relative: String, lowers: [String]) -> Bool {
        for lower in lowers {
            var info = stat()
            let directory = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard directory >= 0 else { continue }
            defer { close(directory) }
            guard fstatat(directory, relative, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            return info.st_mode & S_IFMT == S_IFDIR
        }
        return false
    }

    /// The numeric ids of the accounts in an /etc/passwd or /etc/group text.
    static func ids(_ text: String) -> [String: UInt32] {
        var ids: [String: UInt32] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 3, let id = UInt32(fields[2]) { ids[String(fields[0])] = id }
        }
        return ids
    }

    /// Adds `user` (1000:1000) when the image has no uid 1000; true when it did.
    static func addAgentIfMissing(lowers: [String], into layer: String) throws(OffswitchError) -> Bool {
        let passwd = read("etc/passwd", lowers: lowers) ?? ""
        guard !ids(passwd).values.contains(SandboxUser.agentUID) else { return false }
        // Read, not merely looked up: a lookup would follow the image's links on the host.
        let shell = read("bin/bash", lowers: lowers) != nil || read("usr/bin/bash", lowers: lowers) != nil ? "/bin/bash" : "/bin/sh"
        let group = read("etc/group", lowers: lowers) ?? ""
        func appended(_ text: String, _ line: String) -> String { (text.isEmpty || text.hasSuffix("\n") ? text : text + "\n") + line + "\n" }
        try writeFile(layer + "/etc/passwd", appended(passwd, "user:x:1000:1000::/home/user:\(shell)"), mode: 0o644)
        if !ids(group).values.contains(SandboxUser.agentGID) {
            try writeFile(layer + "/etc/group", appended(group, "user:x:1000:"), mode: 0o644)
        }
        // Owned by uid 1000 as stored: the layer is seen through the sandbox's idmapped mount.
        try makeDirectory(layer + "/home", mode: 0o755)
        try makeDirectory(layer + "/home/user", mode: 0o755)
        try systemCall("chown(\(layer)/home/user)") { chown(layer + "/home/user", SandboxUser.agentUID, SandboxUser.agentGID) }
        return true
    }

    /// Makes `/home/user` (the agent's working directory and `HOME`, whatever its name in the
    /// image) when the image has none: an image whose uid 1000 is another account (`ubuntu` in
    /// Ubuntu's images, with `/home/ubuntu`) keeps that account, and gets the directory. True when
    /// it was made.
    static func addAgentHomeIfMissing(lowers: [String], into layer: String) throws(OffswitchError) -> Bool {
        guard !hasDirectory("home/user", lowers: lowers) else { return false }
        try makeDirectory(layer + "/home", mode: 0o755)
        try makeDirectory(layer + "/home/user", mode: 0o755)
        try systemCall("chown(\(layer)/home/user)") { chown(layer + "/home/user", SandboxUser.agentUID, SandboxUser.agentGID) }
        return true
    }

    /// The image's `User` as a sandbox user: empty means none (the profile's stays); `0`, `root`
    /// and the name of uid 0 are root; `1000` and the name of uid 1000 the agent; anything else
    /// is refused, naming the image, since Offswitch runs commands as one of those two.
    static func defaultUser(_ text: String?, image: ImageRecord, lowers: [String]) throws(OffswitchError) -> SandboxUser? {
        guard let text, !text.isEmpty else { return nil }
        let name = String(text.split(separator: ":", omittingEmptySubsequences: false).first ?? "")
        let uid = UInt32(name) ?? ids(read("etc/passwd", lowers: lowers) ?? "")[name]
        switch uid {
        case 0: return .root
        case SandboxUser.agentUID: return .agent
        default:
            throw OffswitchError(.invalidArgument, "image \(image.references.first ?? image.id): its User \"\(text)\" is \(uid.map { "uid \($0)" } ?? "no account of the image"); sandboxes run commands as root (0) or user (1000): pass --user")
        }
    }
}
