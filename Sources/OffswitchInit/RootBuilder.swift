import COffswitch
import Glibc
import OffswitchCore

/// Builds the sandbox's filesystem view from inside its new mount namespace, then pivots into it.
/// Every step names itself and its path in the error it throws.
struct RootBuilder {
    let order: SetupOrder
    /// The sandbox's user namespace. The lower layers are seen through idmapped mounts, so that
    /// files the host's root owns belong to root inside.
    let userNamespace: Int32

    private var root: String { order.rootMountPoint }
    /// Host uid and gid of root inside: what PID 1 makes here (the /dev nodes, the tmpfs roots)
    /// belongs to root inside, as it would in a container.
    private var rootUID: UInt32 { order.userNamespace.hostUID }
    private var rootGID: UInt32 { order.userNamespace.hostGID }
    /// tmpfs options giving its root directory to root inside.
    private var owned: String { "uid=\(rootUID),gid=\(rootGID)" }

    func build() throws(OffswitchError) {
        // Nothing we mount may propagate back to the host.
        try mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil, stage: "mount(/, rprivate)")
        let rootOverlay = try idmapped(order.rootOverlay, name: "root")
        // nodev: a device node the agent makes (root in the docker profile has CAP_MKNOD) on the
        // writable root cannot be opened; only /dev's own nodes can.
        try mountOverlay(rootOverlay, at: root)
        if let usr = order.usrOverlay {
            try mountOverlay(try idmapped(usr, name: "usr"), at: root + "/usr")
        }
        try mountKernelFilesystems()
        try buildDev()
        // A tmpfs the creator asked for at /tmp takes the place of the sandbox's own.
        if !order.tmpfs.contains(where: { $0.path == "/tmp" }) {
            let noSuidDev = UInt(MS_NOSUID | MS_NODEV)
            try mount("tmpfs", root + "/tmp", "tmpfs", noSuidDev, "mode=1777,size=\(order.tmpSizeBytes),\(owned)",
                      stage: "mount(tmpfs, \(root)/tmp)")
        }
        try mountRequestedTmpfs()
        try maskKernelInterfaces()
        try pivot()
    }

    /// The layout with each lower layer replaced by an idmapped view of it, mounted beside the
    /// upper directory (in the sandbox's tmpfs, visible only in this mount namespace).
    private func idmapped(_ layout: OverlayLayout, name: String) throws(OffswitchError) -> OverlayLayout {
        let base = String(layout.upper[..<(layout.upper.lastIndex(of: "/") ?? layout.upper.endIndex)])
        var mapped = layout
        mapped.lower = []
        for (index, lower) in layout.lower.enumerated() {
            let target = "\(base)/idmap-\(name)-\(index)"
            try systemCall("mkdir(\(target))") { mkdir(target, 0o755) }
            try systemCall("idmapped mount of \(lower) at \(target)") { ofs_idmapped_bind(lower, target, userNamespace) }
            mapped.lower.append(target)
        }
        return mapped
    }

    /// Overlayfs shows its layer options in /proc/self/mountinfo as they were given, so the host's
    /// state paths (`upperdir=/run/offswitch/sandboxes/ID/fs/upper`) would be read inside. Each
    /// layer is named by a descriptor instead (`lowerdir=/proc/self/fd/5`, resolved through the
    /// host's /proc, which is still mounted here), and the descriptors are closed once mounted.
    private func mountOverlay(_ layout: OverlayLayout, at target: String) throws(OffswitchError) {
        var descriptors: [Int32] = []
        defer { for fd in descriptors { close(fd) } }
        func named(_ path: String) throws(OffswitchError) -> String {
            let fd = try systemCall("open(\(path))") { open(path, Int32(OFS_O_PATH) | O_DIRECTORY | O_CLOEXEC) }
            descriptors.append(fd)
            return "/proc/self/fd/\(fd)"
        }
        var hidden = layout
        hidden.lower = []
        for lower in layout.lower { hidden.lower.append(try named(lower)) }
        hidden.upper = try named(layout.upper)
        hidden.work = try named(layout.work)
        try mount("overlay", target, "overlay", UInt(MS_NODEV), hidden.mountOptions, stage: "mount(overlay, \(target), \(layout.mountOptions))")
    }

    private func mountKernelFilesystems() throws(OffswitchError) {
        let hardened = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        try mount("proc", root + "/proc", "proc", hardened, nil, stage: "mount(proc, \(root)/proc)")
        // sysfs of the new network namespace: only `lo` appears under /sys/class/net.
        try mount("sysfs", root + "/sys", "sysfs", hardened | UInt(MS_RDONLY), nil, stage: "mount(sysfs, \(root)/sys)")
    }

    /// A minimal /dev: a few harmless character devices, a private devpts and /dev/shm.
    private func buildDev() throws(OffswitchError) {
        let dev = root + "/dev"
        try mount("tmpfs", dev, "tmpfs", UInt(MS_NOSUID | MS_NOEXEC), "mode=755,size=1m,\(owned)", stage: "mount(tmpfs, \(dev))")
        let nodes: [(String, UInt32, UInt32)] = [
            ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
        ]
        for (name, major, minor) in nodes {
            let device = dev_t((major << 8) | minor)
            try systemCall("mknod(\(dev)/\(name))") { mknod(dev + "/" + name, S_IFCHR | 0o666, device) }
            try systemCall("chmod(\(dev)/\(name))") { chmod(dev + "/" + name, 0o666) }
            try systemCall("chown(\(dev)/\(name))") { chown(dev + "/" + name, rootUID, rootGID) }
        }
        for name in ["pts", "shm"] {
            try systemCall("mkdir(\(dev)/\(name))") { mkdir(dev + "/" + name, 0o755) }
            try systemCall("chown(\(dev)/\(name))") { chown(dev + "/" + name, rootUID, rootGID) }
        }
        // New terminals belong to group tty (5) inside.
        try mount("devpts", dev + "/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC),
                  "newinstance,ptmxmode=0666,mode=0620,gid=\(rootGID + 5)", stage: "mount(devpts, \(dev)/pts)")
        for path in [dev + "/pts", dev + "/pts/ptmx"] {
            try systemCall("chown(\(path))") { chown(path, rootUID, rootGID) }
        }
        try mount("tmpfs", dev + "/shm", "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), "mode=1777,size=64m,\(owned)",
                  stage: "mount(tmpfs, \(dev)/shm)")
        let links = [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
        for (name, target) in links {
            try systemCall("symlink(\(dev)/\(name))") { symlink(target, dev + "/" + name) }
            try systemCall("lchown(\(dev)/\(name))") { lchown(dev + "/" + name, rootUID, rootGID) }
        }
        // Read-only once populated: no new device node (say /dev/kmsg's 1:11) can be made in it.
        try mount(nil, dev, nil, UInt(MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC), "mode=755,size=1m,\(owned)", stage: "mount(remount ro, \(dev))")
    }

    /// The creator's tmpfs mounts (Docker's `--tmpfs`: nosuid, nodev, noexec), parents first so
    /// that none hides another, each named by its index in errors. They are charged, page by page,
    /// to the memory cgroup of whoever writes them, like /tmp.
    private func mountRequestedTmpfs() throws(OffswitchError) {
        let ordered = order.tmpfs.enumerated().sorted { $0.element.path.utf8.lexicographicallyPrecedes($1.element.path.utf8) }
        for (index, mount) in ordered {
            let target = try mountPoint(mount.path, field: "tmpfs[\(index)].path")
            defer { close(target) }
            try self.mount("tmpfs", "/proc/self/fd/\(target)", "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC),
                           "mode=\(String(mount.mode, radix: 8)),size=\(mount.sizeBytes),\(owned)",
                           stage: "mount(tmpfs, \(root)\(mount.path))")
        }
    }

    /// An O_PATH descriptor of the directory at `path` below the root, its missing names made
    /// (0755, root's inside) one by one. No symlink is followed, not even one pointing inside: PID
    /// 1 still sees the host's filesystem, and an image layer may hold a link to anywhere in it.
    /// A link or a non-directory on the way is the creator's error, named by `field`.
    private func mountPoint(_ path: String, field: String) throws(OffswitchError) -> Int32 {
        var directory = try systemCall("open(\(root))") { open(root, Int32(OFS_O_PATH) | O_DIRECTORY | O_CLOEXEC) }
        var walked = ""
        for name in path.split(separator: "/").map(String.init) {
            walked += "/" + name
            // No O_NOFOLLOW: with O_PATH it would open a final symlink itself (then ENOTDIR);
            // RESOLVE_NO_SYMLINKS refuses it with ELOOP instead.
            let flags = Int32(OFS_O_PATH) | O_DIRECTORY
            var next = ofs_open_beneath(directory, name, flags, 0)
            if next < 0 && errno == ENOENT {
                let made = mkdirat(directory, name, 0o755) == 0
                if (!made && errno != EEXIST) || (made && fchownat(directory, name, rootUID, rootGID, AT_SYMLINK_NOFOLLOW) != 0) {
                    let error = errno
                    close(directory)
                    throw OffswitchError.system("\(made ? "chown" : "mkdir")(\(root)\(walked)) for \(field)", errno: error)
                }
                next = ofs_open_beneath(directory, name, flags, 0)
            }
            let error = errno
            close(directory)
            guard next >= 0 else {
                switch error {
                case ELOOP: throw OffswitchError(.invalidArgument, "\(field): \(walked) is a symbolic link; a tmpfs mount point is never reached through one")
                case ENOTDIR, EEXIST: throw OffswitchError(.invalidArgument, "\(field): \(walked) is not a directory")
                default: throw OffswitchError.system("open(\(root)\(walked)) for \(field)", errno: error)
                }
            }
            directory = next
        }
        return directory
    }

    /// Files read as empty inside: Docker's masked files, then host-global facts no namespace
    /// covers, which Offswitch masks too (docs/security.md): the host's boot command line, key
    /// quotas of every host uid, kernel memory and symbol layout, loaded modules.
    static let maskedFiles = ["/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                              "/proc/timer_stats", "/proc/sched_debug",
                              "/proc/cmdline", "/proc/key-users", "/proc/slabinfo", "/proc/vmallocinfo",
                              "/proc/kallsyms", "/proc/modules"]
    /// Directories seen empty inside: Docker's, then the host's pressure stall figures
    /// (/proc/pressure is the whole machine's, not the sandbox's cgroup).
    static let maskedDirectories = ["/proc/acpi", "/proc/scsi", "/sys/firmware", "/proc/pressure"]

    /// Docker's read-only and masked paths: kernel knobs a container must not turn.
    private func maskKernelInterfaces() throws(OffswitchError) {
        for path in ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"] {
            let target = root + path
            guard exists(target) else { continue }
            try mount(target, target, nil, UInt(MS_BIND | MS_REC), nil, stage: "mount(bind, \(target))")
            try mount(nil, target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil,
                      stage: "mount(remount ro, \(target))")
        }
        // PID 1's OOM score (set by the host, the floor of every process's) cannot be raised from
        // inside to make PID 1 the OOM killer's victim: its score files are read-only here.
        for path in ["/proc/1/oom_score_adj", "/proc/1/oom_adj", "/proc/1/task/1/oom_score_adj", "/proc/1/task/1/oom_adj"] {
            let target = root + path
            try mount(target, target, nil, UInt(MS_BIND), nil, stage: "mount(bind, \(target))")
            try mount(nil, target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil,
                      stage: "mount(remount ro, \(target))")
        }
        for path in Self.maskedFiles where exists(root + path) {
            try mount(root + "/dev/null", root + path, nil, UInt(MS_BIND), nil, stage: "mount(mask, \(root + path))")
        }
        for path in Self.maskedDirectories where exists(root + path) {
            try mount("tmpfs", root + path, "tmpfs", UInt(MS_RDONLY), "size=0", stage: "mount(mask, \(root + path))")
        }
    }

    /// pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
    /// the sandbox (runc's trick: no put_old directory inside the sandbox to find later).
    private func pivot() throws(OffswitchError) {
        try systemCall("chdir(\(root))") { chdir(root) }
        try systemCall("pivot_root(\(root))") { ofs_pivot_root(".", ".") }
        try systemCall("umount2(old root)") { umount2(".", Int32(MNT_DETACH)) }
        try systemCall("chdir(/)") { chdir("/") }
    }

    private func mount(_ source: String?, _ target: String, _ type: String?, _ flags: UInt, _ data: String?,
                       stage: String) throws(OffswitchError) {
        try systemCall(stage) { ofs_mount(source, target, type, flags, data) }
    }

    private func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
