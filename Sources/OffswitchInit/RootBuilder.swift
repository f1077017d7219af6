import COffswitch
import Glibc
import OffswitchCore

/// Builds the sandbox's filesystem view from inside its new mount namespace, then pivots into it.
/// Every step names itself and its path in the error it throws.
struct RootBuilder {
    let order: SetupOrder
    /// The sandbox's user namespace, or -1. With one, the lower layers are seen through
    /// idmapped mounts, so that files the host's root owns belong to root inside.
    let userNamespace: Int32

    private var root: String { order.rootMountPoint }

    func build() throws(OffswitchError) {
        // Nothing we mount may propagate back to the host.
        try mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil, stage: "mount(/, rprivate)")
        let rootOverlay = try idmapped(order.rootOverlay, name: "root")
        // nodev: a device node the agent makes (root in the docker profile has CAP_MKNOD) on the
        // writable root cannot be opened; only /dev's own nodes can.
        try mount("overlay", root, "overlay", UInt(MS_NODEV), rootOverlay.mountOptions, stage: "mount(overlay, \(root))")
        if let usr = order.usrOverlay {
            let usrOverlay = try idmapped(usr, name: "usr")
            try mount("overlay", root + "/usr", "overlay", UInt(MS_NODEV), usrOverlay.mountOptions, stage: "mount(overlay, \(root)/usr)")
        }
        try mountKernelFilesystems()
        try buildDev()
        let noSuidDev = UInt(MS_NOSUID | MS_NODEV)
        try mount("tmpfs", root + "/tmp", "tmpfs", noSuidDev, "mode=1777,size=\(order.tmpSizeBytes)",
                  stage: "mount(tmpfs, \(root)/tmp)")
        try maskKernelInterfaces()
        try pivot()
    }

    /// The layout with each lower layer replaced by an idmapped view of it, mounted beside the
    /// upper directory (in the sandbox's tmpfs, visible only in this mount namespace).
    private func idmapped(_ layout: OverlayLayout, name: String) throws(OffswitchError) -> OverlayLayout {
        guard userNamespace >= 0 else { return layout }
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

    private func mountKernelFilesystems() throws(OffswitchError) {
        let hardened = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        try mount("proc", root + "/proc", "proc", hardened, nil, stage: "mount(proc, \(root)/proc)")
        // sysfs of the new network namespace: only `lo` appears under /sys/class/net.
        try mount("sysfs", root + "/sys", "sysfs", hardened | UInt(MS_RDONLY), nil, stage: "mount(sysfs, \(root)/sys)")
    }

    /// A minimal /dev: a few harmless character devices, a private devpts and /dev/shm.
    private func buildDev() throws(OffswitchError) {
        let dev = root + "/dev"
        try mount("tmpfs", dev, "tmpfs", UInt(MS_NOSUID | MS_NOEXEC), "mode=755,size=1m", stage: "mount(tmpfs, \(dev))")
        let nodes: [(String, UInt32, UInt32)] = [
            ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
        ]
        for (name, major, minor) in nodes {
            let device = dev_t((major << 8) | minor)
            try systemCall("mknod(\(dev)/\(name))") { mknod(dev + "/" + name, S_IFCHR | 0o666, device) }
            try systemCall("chmod(\(dev)/\(name))") { chmod(dev + "/" + name, 0o666) }
        }
        for name in ["pts", "shm"] {
            try systemCall("mkdir(\(dev)/\(name))") { mkdir(dev + "/" + name, 0o755) }
        }
        try mount("devpts", dev + "/pts", "devpts", UInt(MS_NOSUID | MS_NOEXEC),
                  "newinstance,ptmxmode=0666,mode=0620,gid=5", stage: "mount(devpts, \(dev)/pts)")
        try mount("tmpfs", dev + "/shm", "tmpfs", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), "mode=1777,size=64m",
                  stage: "mount(tmpfs, \(dev)/shm)")
        let links = [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
        for (name, target) in links {
            try systemCall("symlink(\(dev)/\(name))") { symlink(target, dev + "/" + name) }
        }
        // Read-only once populated: no new device node (say /dev/kmsg's 1:11) can be made in it.
        try mount(nil, dev, nil, UInt(MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC), "mode=755,size=1m", stage: "mount(remount ro, \(dev))")
    }

    /// Docker's read-only and masked paths: kernel knobs a container must not turn.
    private func maskKernelInterfaces() throws(OffswitchError) {
        for path in ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"] {
            let target = root + path
            guard exists(target) else { continue }
            try mount(target, target, nil, UInt(MS_BIND | MS_REC), nil, stage: "mount(bind, \(target))")
            try mount(nil, target, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil,
                      stage: "mount(remount ro, \(target))")
        }
        let maskedFiles = ["/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                           "/proc/timer_stats", "/proc/sched_debug"]
        for path in maskedFiles where exists(root + path) {
            try mount(root + "/dev/null", root + path, nil, UInt(MS_BIND), nil, stage: "mount(mask, \(root + path))")
        }
        for path in ["/proc/acpi", "/proc/scsi", "/sys/firmware"] where exists(root + path) {
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
