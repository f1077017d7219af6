import Glibc
import OffswitchCore

/// The cgroups of one sandbox: memory, pids and cpu limits on whichever hierarchy offers each
/// controller (v2 first), plus a v2 group for `cgroup.kill` where v2 exists at all.
public final class SandboxCgroups: Sendable {
    /// Every directory this sandbox owns, deepest last created, removed in reverse.
    let directories: [String]
    let unifiedGroup: String?
    let legacyGroups: [String]

    static let parentName = "offswitch"

    init(id: String, limits: ResourceLimits, mounts: CgroupMounts) throws(OffswitchError) {
        var created: [String] = []
        var unifiedGroup: String?
        var legacyGroups: [String] = []
        do throws(OffswitchError) {
            let wanted: [String] = ["memory", "pids", "cpu"]
            var onUnified: [String] = []
            if let unified = mounts.unified {
                onUnified = wanted.filter { mounts.unifiedControllers.contains($0) }
                let parent = unified + "/" + Self.parentName
                try Self.makeDirectory(parent)
                if !onUnified.isEmpty {
                    let enable = onUnified.map { "+" + $0 }.joined(separator: " ")
                    try writeControlFile(unified + "/cgroup.subtree_control", enable)
                    try writeControlFile(parent + "/cgroup.subtree_control", enable)
                }
                let group = parent + "/" + id
                try Self.makeDirectory(group)
                created.append(group)
                unifiedGroup = group
                try CgroupV2.apply(limits, controllers: onUnified, group: group)
            }
            for controller in wanted where !onUnified.contains(controller) {
                guard let root = mounts.legacy[controller] else {
                    throw OffswitchError(.missingFeature,
                        "no cgroup \(controller) controller on this host (neither cgroup v2 nor v1 offers it)")
                }
                let group = root + "/" + Self.parentName + "/" + id
                if legacyGroups.contains(group) { continue }  // cpu and cpuacct may share a hierarchy
                try Self.makeDirectory(root + "/" + Self.parentName)
                try Self.makeDirectory(group)
                created.append(group)
                legacyGroups.append(group)
                try CgroupV1.apply(limits, controller: controller, group: group)
            }
        } catch {
            for directory in created.reversed() { rmdir(directory) }
            throw error
        }
        directories = created
        self.unifiedGroup = unifiedGroup
        self.legacyGroups = legacyGroups
    }

    /// A descriptor of the v2 group for CLONE_INTO_CGROUP, or -1 when this host has no v2 group.
    func openUnifiedGroup() throws(OffswitchError) -> Int32 {
        guard let group = unifiedGroup else { return -1 }
        return try systemCall("open(\(group))") { open(group, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    /// Moves a process (and its future children) into the v1 groups; it was born in the v2 one.
    func addToLegacyGroups(pid: pid_t) throws(OffswitchError) {
        for group in legacyGroups {
            try writeControlFile(group + "/cgroup.procs", "\(pid)")
        }
    }

    /// Kills every process in the sandbox's groups.
    func killAll() {
        if let group = unifiedGroup, access(group + "/cgroup.kill", F_OK) == 0 {
            try? writeControlFile(group + "/cgroup.kill", "1")
            return
        }
        for group in legacyGroups {
            for pid in Self.members(of: group) { kill(pid, SIGKILL) }
        }
    }

    /// The host pids in `group`'s `cgroup.procs` (empty when it cannot be read).
    static func members(of group: String) -> [pid_t] {
        (readSmallFile(group + "/cgroup.procs") ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    /// The host pids of every process in the sandbox's groups.
    var members: Set<pid_t> { Set(directories.flatMap(Self.members(of:))) }

    /// Freezes (or thaws) every process of the sandbox and waits until the kernel says the group
    /// is frozen: the v2 group's `cgroup.freeze`, else a v1 freezer group. Frozen processes cannot
    /// see or react to what the host does meanwhile (a probe of the shutdown path).
    func setFrozen(_ frozen: Bool) throws(OffswitchError) {
        guard let group = unifiedGroup, access(group + "/cgroup.freeze", F_OK) == 0 else {
            throw OffswitchError(.missingFeature, "no cgroup freezer for this sandbox (cgroup v2's cgroup.freeze is needed)")
        }
        try writeControlFile(group + "/cgroup.freeze", frozen ? "1" : "0")
        guard frozen else { return }
        // cgroup.events says `frozen 1` once every task has stopped; bounded wait (5 s).
        for attempt in 0..<500 {
            if (readSmallFile(group + "/cgroup.events") ?? "").contains("frozen 1") { return }
            usleep(UInt32(min(100 * (attempt + 1), 10_000)))
        }
        throw OffswitchError(.system, "freezing \(group): cgroup.events did not say frozen within 5 s")
    }

    /// Tasks in the pids group now and its limit (nil: unlimited); nil without a pids group.
    var pids: (current: Int, limit: Int?)? {
        let groups = (unifiedGroup.map { [$0] } ?? []) + legacyGroups
        for group in groups where access(group + "/pids.current", F_OK) == 0 {
            guard let current = Int((readSmallFile(group + "/pids.current") ?? "").filter { $0 != "\n" }) else { return nil }
            let limit = (readSmallFile(group + "/pids.max") ?? "max").filter { $0 != "\n" }
            return (current, Int(limit))
        }
        return nil
    }

    /// Removes the groups, waiting (bounded) for the kernel to finish tearing down dying tasks.
    func remove() throws(OffswitchError) {
        for directory in directories.reversed() {
            var attempt = 0
            while rmdir(directory) != 0 {
                let err = errno
                if err == ENOENT { break }
                guard err == EBUSY, attempt < 200 else { throw OffswitchError.system("rmdir(\(directory))", errno: err) }
                if attempt % 20 == 19 { killAll() }
                attempt += 1
                usleep(UInt32(min(1000 * attempt, 20_000)))
            }
        }
    }

    private static func makeDirectory(_ path: String) throws(OffswitchError) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw OffswitchError.system("mkdir(\(path))", errno: errno)
        }
    }
}

/// Limits through the unified hierarchy's files.
enum CgroupV2 {
    static func apply(_ limits: ResourceLimits, controllers: [String], group: String) throws(OffswitchError) {
        if controllers.contains("memory") {
            try writeControlFile(group + "/memory.max", "\(limits.memoryBytes)")
            if access(group + "/memory.swap.max", F_OK) == 0 { try writeControlFile(group + "/memory.swap.max", "0") }
        }
        if controllers.contains("pids") {
            try writeControlFile(group + "/pids.max", "\(limits.pids)")
        }
        if controllers.contains("cpu") {
            try writeControlFile(group + "/cpu.max", "\(CgroupV1.quota(limits.cpus)) \(CgroupV1.period)")
        }
    }
}

/// Limits through a legacy (v1) controller hierarchy.
enum CgroupV1 {
    static let period = 100_000

    static func quota(_ cpus: Double) -> Int { max(1000, Int((cpus * Double(period)).rounded())) }

    static func apply(_ limits: ResourceLimits, controller: String, group: String) throws(OffswitchError) {
        switch controller {
        case "memory":
            try writeControlFile(group + "/memory.limit_in_bytes", "\(limits.memoryBytes)")
            // With swap accounting, keep swap out of reach too (it must be set after the limit).
            if access(group + "/memory.memsw.limit_in_bytes", F_OK) == 0 {
                try writeControlFile(group + "/memory.memsw.limit_in_bytes", "\(limits.memoryBytes)")
            }
            // A v1 group charges socket buffers only once its TCP limit is set, and then to a
            // counter of their own: without it, loopback TCP buffers of a 64 MiB sandbox took
            // 1.1 GiB of host memory. At the limit the sandbox's sockets are under memory pressure
            // (windows shrink, sends wait); nothing is killed. v2 charges them to memory.max.
            try writeControlFile(group + "/memory.kmem.tcp.limit_in_bytes", "\(limits.memoryBytes)")
        case "pids":
            try writeControlFile(group + "/pids.max", "\(limits.pids)")
        case "cpu":
            try writeControlFile(group + "/cpu.cfs_period_us", "\(period)")
            try writeControlFile(group + "/cpu.cfs_quota_us", "\(quota(limits.cpus))")
        default:
            break
        }
    }
}
