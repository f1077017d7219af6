import OffswitchCore
@testable import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("cgroup hierarchies")
struct CgroupMountsTests {
    static let hybrid = """
        30 25 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
        31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
        33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
        35 30 0:31 / /sys/fs/cgroup/pids rw,relatime shared:14 - cgroup cgroup rw,pids
        36 30 0:32 / /sys/fs/cgroup/unified rw,relatime shared:15 - cgroup2 cgroup2 rw
        """
    static let pureV2 = """
        22 1 0:21 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:7 - cgroup2 cgroup2 rw,nsdelegate
        """

    @Test("A hybrid host: limits on v1, kill on v2")
    func hybrid() {
        let mounts = CgroupMounts.parse(mountinfo: Self.hybrid, isFilesystem: { _, _ in true }, controllers: { _ in "hugetlb" })
        #expect(mounts.unified == "/sys/fs/cgroup/unified")
        #expect(mounts.legacy["memory"] == "/sys/fs/cgroup/memory")
        #expect(mounts.legacy["cpu"] == "/sys/fs/cgroup/cpu")
        #expect(!mounts.unifiedControllers.contains("memory"))
    }

    @Test("A pure v2 host: everything on v2")
    func pureV2() {
        let mounts = CgroupMounts.parse(mountinfo: Self.pureV2, isFilesystem: { _, _ in true }, controllers: { _ in "cpuset cpu io memory pids" })
        #expect(mounts.unified == "/sys/fs/cgroup")
        #expect(mounts.legacy.isEmpty)
        #expect(mounts.unifiedControllers.isSuperset(of: ["memory", "pids", "cpu"]))
    }

    @Test("A path that is not a cgroup filesystem is never used")
    func wrongFilesystem() {
        let mounts = CgroupMounts.parse(mountinfo: Self.hybrid, isFilesystem: { _, _ in false }, controllers: { _ in "" })
        #expect(mounts.unified == nil && mounts.legacy.isEmpty)
    }

    @Test("Escaped mount points are decoded")
    func escapes() {
        #expect(CgroupMounts.unescapeMountPath("/a\\040b\\134c") == "/a b\\c")
    }

    @Test("A missing controller is one clear sentence", .enabled(if: isRoot, "needs root: creates cgroup directories"))
    func missingController() throws {
        let real = try CgroupMounts.discover()
        var crippled = real
        crippled.legacy["memory"] = nil
        crippled.unifiedControllers.remove("memory")
        #expect {
            _ = try SandboxCgroups(id: "test-missing-\(UInt32.random(in: 0...UInt32.max))", limits: .defaults, mounts: crippled)
        } throws: { error in
            let error = error as? OffswitchError
            return error?.code == .missingFeature && error?.message == "no cgroup memory controller on this host (neither cgroup v2 nor v1 offers it)"
        }
    }
}
