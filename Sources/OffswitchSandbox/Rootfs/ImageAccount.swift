import COffswitch
import Glibc
import OffswitchCore
import OffswitchImages

/// The agent's account in an image's root. Scenarios run the agent as `user` (uid 1000, home
/// /home/user), as Palisade's image had it; an image without uid 1000 gets that account in the
/// sandbox's own generated layer (over the image, under what the agent writes): its `passwd` and
/// `group` with one line more each, and the home directory. The image itself is not changed.
enum ImageAccount {
    /// The file at `relative` in the topmost layer that has it, read without following a link
    /// out of the layer; nil when no layer has it or a layer above deletes it (a whiteout).
    static func read(_ relative: String, lowers: [String]) -> String? {
        for lower in lowers {
            let directory = open(lower, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard directory >= 0 else { continue }
            defer { close(directory) }
            let fd = ofs_open_in_root(directory, relative, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0)
            if fd < 0 { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0 else { return nil }
            // A whiteout (a 0:0 character device) hides the lower layers' file.
            guard info.st_mode & S_IFMT == S_IFREG, info.st_size <= 1 << 20 else { return nil }
            var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            return n < 0 ? nil : String(decoding: bytes[0..<n], as: UTF8.self)
        }
        return nil
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
        let shell = read("bin/bash", lowers: lowers) != nil || access(lowers.first.map { $0 + "/bin/bash" } ?? "", F_OK) == 0 ? "/bin/bash" : "/bin/sh"
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
