import Glibc
import OffswitchCore

/// The lower layer that turns the host's /usr into a root filesystem: merged-/usr links, empty
/// mount points, an /etc copied from an allowlist of harmless files plus generated `passwd` and
/// `group`, and the agent's home. Built once per host and shared read-only by every sandbox.
///
/// Never copied, whatever the allowlist says: password hashes, SSH keys, machine-id, sudoers;
/// and from the allowlisted names only what every user of the host may read anyway.
enum HostSkeleton {
    /// Bump when the contents change, so hosts rebuild it.
    static let version = 1

    static let etcAllowlist = [
        "alternatives", "bash.bashrc", "bindresvport.blacklist", "debian_version", "environment", "ethertypes",
        "gai.conf", "host.conf", "inputrc", "issue", "issue.net", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
        "locale.alias", "localtime", "login.defs", "magic", "magic.mime", "mime.types", "nsswitch.conf",
        "os-release", "perl", "profile", "profile.d", "protocols", "python3", "python3.11", "rpc", "services",
        "shells", "skel", "terminfo", "timezone", "xattr.conf",
    ]
    static let neverCopied: Set<String> = [
        "shadow", "shadow-", "gshadow", "gshadow-", "ssh", "ssl", "machine-id", "sudoers", "sudoers.d", "passwd",
        "group", "hosts", "hostname",
    ]

    static let passwd = """
        root:x:0:0:root:/root:/bin/bash
        user:x:1000:1000::/home/user:/bin/bash
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin

        """
    static let group = """
        root:x:0:
        tty:x:5:
        users:x:100:
        user:x:1000:
        nogroup:x:65534:

        """

    /// Where a skeleton is built before it is renamed into place: `.building-PID-RANDOM`
    /// (`Leftovers` removes those of dead builders).
    static let stagingPrefix = ".building-"

    /// The skeleton's path, building it first if this host has none of this version.
    static func ensure(in paths: StatePaths) throws(OffswitchError) -> String {
        let final = paths.rootfsDirectory + "/host-v\(version)"
        if access(final + "/.complete", F_OK) == 0 { return final }
        try paths.ensureBase()
        try makeDirectory(paths.rootfsDirectory, mode: 0o700)
        let staging = paths.rootfsDirectory + "/\(stagingPrefix)\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do throws(OffswitchError) {
            try build(at: staging)
            try systemCall("create(\(staging)/.complete)") { open(staging + "/.complete", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644) }
                .closeAfter()
            if rename(staging, final) != 0 {
                // Another process finished first; theirs is as good as ours.
                guard errno == EEXIST || errno == ENOTEMPTY else { throw OffswitchError.system("rename(\(staging), \(final))", errno: errno) }
                removeTree(staging)
            }
        } catch {
            removeTree(staging)
            throw error
        }
        return final
    }

    private static func build(at root: String) throws(OffswitchError) {
        try makeDirectory(root, mode: 0o755)
        for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            var info = stat()
            guard lstat("/" + name, &info) == 0 else { continue }
            guard info.st_mode & S_IFMT == S_IFLNK else {
                throw OffswitchError(.missingFeature,
                    "the host rootfs needs a merged-/usr host, but /\(name) is a directory; use --rootfs dir:PATH")
            }
            let target = try readLink("/" + name)
            try systemCall("symlink(\(root)/\(name))") { symlink(target, root + "/" + name) }
        }
        let directories: [(String, mode_t)] = [
            ("usr", 0o755), ("etc", 0o755), ("home", 0o755), ("root", 0o700), ("tmp", 0o1777), ("proc", 0o555),
            ("sys", 0o555), ("dev", 0o755), ("run", 0o755), ("mnt", 0o755), ("opt", 0o755), ("srv", 0o755),
            ("media", 0o755), ("var", 0o755), ("var/tmp", 0o1777), ("var/log", 0o755), ("var/lib", 0o755),
            ("var/cache", 0o755), ("var/spool", 0o755),
        ]
        for (path, mode) in directories { try makeDirectory(root + "/" + path, mode: mode) }

        for name in etcAllowlist where !neverCopied.contains(name) {
            try copyWorldReadable(from: "/etc/" + name, to: root + "/etc/" + name)
        }
        try writeFile(root + "/etc/passwd", passwd, mode: 0o644)
        try writeFile(root + "/etc/group", group, mode: 0o644)

        let home = root + SandboxUser.agentHome
        try makeDirectory(home, mode: 0o755)
        var skel = stat()
        if stat("/etc/skel", &skel) == 0 {
            for name in listDirectory("/etc/skel") {
                try copyWorldReadable(from: "/etc/skel/" + name, to: home + "/" + name)
            }
        }
        try chownTree(home, uid: SandboxUser.agentUID, gid: SandboxUser.agentGID)
    }

    /// Copies files, directories and symlinks; skips anything other users of the host could not
    /// read, and anything that is not one of those three kinds.
    private static func copyWorldReadable(from source: String, to target: String) throws(OffswitchError) {
        var info = stat()
        guard lstat(source, &info) == 0 else { return }
        switch info.st_mode & S_IFMT {
        case S_IFLNK:
            let link = try readLink(source)
            try systemCall("symlink(\(target))") { symlink(link, target) }
        case S_IFDIR:
            guard info.st_mode & 0o005 == 0o005 else { return }
            try makeDirectory(target, mode: info.st_mode & 0o7777)
            for name in listDirectory(source) {
                try copyWorldReadable(from: source + "/" + name, to: target + "/" + name)
            }
        case S_IFREG:
            guard info.st_mode & 0o004 != 0 else { return }
            try copyFile(source, target, mode: info.st_mode & 0o777)
        default:
            return
        }
    }
}

extension Int32 {
    /// Closes a descriptor we only needed to create something.
    func closeAfter() { close(self) }
}

func makeDirectory(_ path: String, mode: mode_t) throws(OffswitchError) {
    if mkdir(path, mode) != 0 {
        guard errno == EEXIST else { throw OffswitchError.system("mkdir(\(path))", errno: errno) }
    }
    // mkdir honours the umask; the mode must be exact (1777 for tmp).
    try systemCall("chmod(\(path))") { chmod(path, mode) }
}

func writeFile(_ path: String, _ text: String, mode: mode_t) throws(OffswitchError) {
    let fd = try systemCall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = try systemCall("write(\(path))") { bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        offset += n
    }
    try systemCall("fchmod(\(path))") { fchmod(fd, mode) }
}

func copyFile(_ source: String, _ target: String, mode: mode_t) throws(OffswitchError) {
    let input = try systemCall("open(\(source))") { open(source, O_RDONLY | O_CLOEXEC) }
    defer { close(input) }
    let output = try systemCall("open(\(target))") { open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode) }
    defer { close(output) }
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try systemCall("read(\(source))") { read(input, &chunk, chunk.count) }
        if n == 0 { break }
        var offset = 0
        while offset < n {
            offset += try systemCall("write(\(target))") { chunk[offset..<n].withUnsafeBytes { write(output, $0.baseAddress, $0.count) } }
        }
    }
    try systemCall("fchmod(\(target))") { fchmod(output, mode) }
}

func chownTree(_ path: String, uid: UInt32, gid: UInt32) throws(OffswitchError) {
    try systemCall("lchown(\(path))") { lchown(path, uid, gid) }
    var info = stat()
    guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return }
    for name in listDirectory(path) { try chownTree(path + "/" + name, uid: uid, gid: gid) }
}
