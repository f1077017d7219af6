import Glibc
public import OffswitchCore

/// What the host must offer before any sandbox can start. Each failure is one sentence naming
/// what is missing.
public enum HostCheck {
    public static func verify() throws(OffswitchError) {
        guard geteuid() == 0 else {
            throw OffswitchError(.notRoot, "offswitch needs root to create namespaces, mounts and cgroups; run it as root (uid 0)")
        }
        let filesystems = readSmallFile("/proc/filesystems") ?? ""
        for (name, why) in [("overlay", "the throwaway root"), ("tmpfs", "the upper layer"), ("proc", "/proc inside")] {
            guard filesystems.contains("\t\(name)\n") else {
                throw OffswitchError(.missingFeature, "the kernel has no \(name) filesystem, which \(why) needs (try modprobe \(name))")
            }
        }
        for namespace in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
            guard access("/proc/self/ns/" + namespace, F_OK) == 0 else {
                throw OffswitchError(.missingFeature, "the kernel does not support \(namespace) namespaces")
            }
        }
        guard access("/proc/sys/kernel/seccomp/actions_avail", F_OK) == 0 else {
            throw OffswitchError(.missingFeature, "the kernel has no seccomp filter support (CONFIG_SECCOMP_FILTER)")
        }
    }
}
