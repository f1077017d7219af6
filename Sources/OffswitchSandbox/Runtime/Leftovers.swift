import Glibc
import OffswitchCore

/// Finds and removes what sandboxes of dead processes left behind: a process killed with -9
/// (or a crashed daemon) cannot destroy its sandboxes. Each sandbox directory holds an owner
/// lock (flock) for as long as its owner lives, so a lock we can take marks a leftover.
public enum Leftovers {
    /// One sandbox cleaned up, and what was removed.
    public struct Reclaimed: Sendable, Equatable, CustomStringConvertible {
        public var id: String
        public var removed: [String]
        public var description: String { "sandbox \(id): removed \(removed.joined(separator: ", "))" }
    }

    /// Reclaims every abandoned sandbox under `paths`, and skeleton builds a dead process left.
    /// Sandboxes of live processes are untouched.
    public static func reclaim(paths: StatePaths = .standard) -> [Reclaimed] {
        guard let mounts = try? HostEnvironment.cgroupMounts.get() else { return [] }
        var reclaimed: [Reclaimed] = []
        for id in listDirectory(paths.sandboxesDirectory) where !id.hasPrefix(".") {
            let directory = paths.sandboxDirectory(id)
            let lockPath = directory + "/" + SandboxFilesystem.ownerLockName
            let lock = open(lockPath, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            if lock < 0 {
                // No lock yet: a sandbox being created right now, unless it is old.
                var info = stat()
                guard stat(directory, &info) == 0, time(nil) - info.st_mtim.tv_sec > 60 else { continue }
            } else if flock(lock, LOCK_EX | LOCK_NB) != 0 {
                close(lock)
                continue  // its owner is alive
            }
            defer { if lock >= 0 { close(lock) } }
            reclaimed.append(Reclaimed(id: id, removed: remove(id: id, directory: directory, mounts: mounts)))
        }
        return reclaimed + reclaimSkeletonBuilds(paths: paths)
    }

    /// A rootfs skeleton is built in `.building-PID-RANDOM` and renamed when complete; a process
    /// killed meanwhile leaves the directory. It is abandoned when its builder is dead, or when
    /// the directory is an hour old (a build takes well under a second; the pid may be reused).
    static func reclaimSkeletonBuilds(paths: StatePaths) -> [Reclaimed] {
        var reclaimed: [Reclaimed] = []
        for name in listDirectory(paths.rootfsDirectory) where name.hasPrefix(HostSkeleton.stagingPrefix) {
            let directory = paths.rootfsDirectory + "/" + name
            let builder = name.dropFirst(HostSkeleton.stagingPrefix.count).split(separator: "-").first.flatMap { pid_t($0) }
            var info = stat()
            guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { continue }
            let dead = builder.map { kill($0, 0) != 0 && errno == ESRCH } ?? true
            guard dead || time(nil) - info.st_mtim.tv_sec > 3600 else { continue }
            removeTree(directory)
            if access(directory, F_OK) != 0 { reclaimed.append(Reclaimed(id: name, removed: ["directory \(directory)"])) }
        }
        return reclaimed
    }

    private static func remove(id: String, directory: String, mounts: CgroupMounts) -> [String] {
        var removed: [String] = []
        var groups: [String] = []
        if let unified = mounts.unified { groups.append(unified + "/" + SandboxCgroups.parentName + "/" + id) }
        for root in Set(mounts.legacy.values) { groups.append(root + "/" + SandboxCgroups.parentName + "/" + id) }
        var killed = 0
        for group in groups where access(group, F_OK) == 0 {
            for pid in SandboxCgroups.members(of: group) where kill(pid, SIGKILL) == 0 { killed += 1 }
        }
        if killed > 0 { removed.append("\(killed) processes") }
        for group in groups where access(group, F_OK) == 0 {
            var attempt = 0
            while rmdir(group) != 0 && errno == EBUSY && attempt < 200 {
                attempt += 1
                usleep(UInt32(min(1000 * attempt, 20_000)))
            }
            if access(group, F_OK) != 0 { removed.append("cgroup \(group)") }
        }
        let tmpfs = directory + "/fs"
        if umount2(tmpfs, Int32(MNT_DETACH)) == 0 { removed.append("mount \(tmpfs)") }
        removeTree(directory)
        if access(directory, F_OK) != 0 { removed.append("directory \(directory)") }
        return removed
    }
}
