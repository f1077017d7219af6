import COffswitch
import Glibc
import OffswitchCore
import OffswitchImages

/// The host side of one sandbox's filesystem: a size-limited tmpfs holding the overlay's upper
/// and work directories plus a small per-sandbox layer (hostname, hosts, mount points). The
/// tmpfs is mounted in the host's namespace so that the upper layer stays readable after a
/// shutdown, until destroy unmounts it.
struct SandboxFilesystem {
    let directory: String
    var tmpfs: String { directory + "/fs" }
    var rootMountPoint: String { directory + "/root" }
    var upper: String { tmpfs + "/upper" }
    var usrUpper: String { tmpfs + "/usr-upper" }

    init(id: String, paths: StatePaths) {
        directory = paths.sandboxDirectory(id)
    }

    static let ownerLockName = "owner.lock"

    /// Creates the directory and takes its owner lock, held for the sandbox's lifetime: a
    /// directory whose lock nobody holds belongs to a process that died (see `Leftovers`).
    /// The lock is taken under another name and renamed into place: a `Leftovers` scan of another
    /// process that met `owner.lock` between its creation and our flock would take it first,
    /// take the new sandbox for a dead one's and remove it (seen once in a full make test:
    /// flock EAGAIN).
    func claim(paths: StatePaths) throws(OffswitchError) -> Int32 {
        try paths.ensureBase()
        try systemCall("mkdir(\(directory))") { mkdir(directory, 0o700) }
        let lockPath = directory + "/" + Self.ownerLockName
        let staging = lockPath + ".new"
        let lock = try systemCall("open(\(staging))") { open(staging, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        do throws(OffswitchError) {
            try systemCall("flock(\(staging))") { flock(lock, LOCK_EX | LOCK_NB) }
            try systemCall("rename(\(staging), \(lockPath))") { rename(staging, lockPath) }
        } catch {
            close(lock)
            throw error
        }
        return lock
    }

    /// What PID 1 must mount, and the image held for the sandbox's life when its root is one.
    struct Made {
        var root: OverlayLayout
        var usr: OverlayLayout?
        var image: ImageStore.Use?
        /// The image had no uid 1000: `user` was added to its passwd and group (ImageAccount).
        var accountAdded = false
        /// The image had no /home/user: it was made, the agent's (ImageAccount).
        var homeAdded = false
    }

    /// Creates the tmpfs and the layer in a claimed directory, and returns what PID 1 must mount.
    func create(hostname: String, hosts: [HostEntry] = [], source: RootfsSource, upperBytes: UInt64,
                userNamespace mapping: UserNamespaceMapping, paths: StatePaths) throws(OffswitchError) -> Made
    {
        try makeDirectory(tmpfs, mode: 0o700)
        try makeDirectory(rootMountPoint, mode: 0o755)
        try systemCall("mount(tmpfs, \(tmpfs))") {
            ofs_mount("tmpfs", tmpfs, "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755,size=\(upperBytes)")
        }
        let layer = tmpfs + "/layer"
        for path in [upper, tmpfs + "/work", usrUpper, tmpfs + "/usr-work", layer, layer + "/etc"] {
            try makeDirectory(path, mode: 0o755)
        }
        for (path, mode) in [("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("tmp", 0o1777)] as [(String, mode_t)] {
            try makeDirectory(layer + "/" + path, mode: mode)
        }
        try writeFile(layer + "/etc/hostname", hostname + "\n", mode: 0o644)
        // The caller's entries come after the sandbox's own, one checked line each (HostEntry).
        let ownHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t\(hostname)\n"
        try writeFile(layer + "/etc/hosts", ownHosts + hosts.map(\.line).joined(), mode: 0o644)
        // The upper directories are the roots of / and /usr inside: root inside must own them.
        for path in [upper, usrUpper] {
            try systemCall("chown(\(path), \(mapping.hostUID))") { chown(path, mapping.hostUID, mapping.hostGID) }
        }

        switch source {
        case .host:
            let skeleton = try HostSkeleton.ensure(in: paths)
            return Made(root: OverlayLayout(lower: [layer, skeleton], upper: upper, work: tmpfs + "/work"),
                        usr: OverlayLayout(lower: ["/usr"], upper: usrUpper, work: tmpfs + "/usr-work"))
        case .image(let reference):
            let image = try paths.imageStore.use(reference)
            // No network: name no resolver, whatever the image's resolv.conf says (Docker lays its
            // own over the image's too).
            try writeFile(layer + "/etc/resolv.conf", "# offswitch: this sandbox has no network\n", mode: 0o644)
            let added = try ImageAccount.addAgentIfMissing(lowers: image.lowers, into: layer)
            // Made with the account; made alone when the image's uid 1000 has another name.
            let homeAdded = try ImageAccount.addAgentHomeIfMissing(lowers: image.lowers, into: layer) || added
            // Commands as root start in /root: an image without it gets one (root's, 0700).
            if !ImageAccount.hasDirectory("root", lowers: image.lowers) { try makeDirectory(layer + "/root", mode: 0o700) }
            return Made(root: OverlayLayout(lower: [layer] + image.lowers, upper: upper, work: tmpfs + "/work"), image: image,
                        accountAdded: added, homeAdded: homeAdded)
        case .directory(let path):
            var info = stat()
            guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw OffswitchError(.invalidArgument, "rootfs dir:\(path): not a directory", errno: errno)
            }
            return Made(root: OverlayLayout(lower: [layer, path], upper: upper, work: tmpfs + "/work"))
        }
    }

    /// Unmounts the tmpfs and removes the directory. Safe to call on a half-built sandbox.
    func remove() throws(OffswitchError) {
        if umount2(tmpfs, 0) != 0 && errno != EINVAL && errno != ENOENT {
            // Busy: a process still holds a file there. Detach so nothing outlives destroy on the host.
            try systemCall("umount2(\(tmpfs), MNT_DETACH)") { umount2(tmpfs, Int32(MNT_DETACH)) }
        }
        removeTree(directory)
        if access(directory, F_OK) == 0 {
            throw OffswitchError.system("remove(\(directory))", errno: ENOTEMPTY)
        }
    }
}
