import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("The host: leaks and missing prerequisites")
struct HostTests {
    @Test("200 `sandbox run` calls leave no mount, cgroup, process or directory behind", needsRoot)
    func noLeaks() throws {
        var ids: [String] = []
        for _ in 0..<200 {
            let run = try runCLI(["sandbox", "run", "--verbose", "--", "true"])
            #expect(run.status == 0, "\(run.stderr)")
            let line = run.stderr.split(separator: "\n").first { $0.contains("embedded mode") }
            if let id = line?.split(separator: " ").last { ids.append(String(id)) }
        }
        #expect(ids.count == 200)
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        let cgroupDirs = ["/sys/fs/cgroup/memory/offswitch", "/sys/fs/cgroup/pids/offswitch", "/sys/fs/cgroup/cpu/offswitch",
                          "/sys/fs/cgroup/unified/offswitch", "/sys/fs/cgroup/offswitch"]
        let cgroups = cgroupDirs.flatMap { (try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? [] }
        let states = (try? FileManager.default.contentsOfDirectory(atPath: StatePaths.standard.sandboxesDirectory)) ?? []
        var processCgroups = ""
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
            processCgroups += (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
        }
        for id in ids {
            #expect(!mountinfo.contains(id), "mount of \(id) left")
            #expect(!cgroups.contains(id), "cgroup of \(id) left")
            #expect(!states.contains(id), "state directory of \(id) left")
            #expect(!processCgroups.contains(id), "process of \(id) left")
        }
        // Our own children: every PID 1 was reaped.
        var status: Int32 = 0
        #expect(waitpid(-1, &status, WNOHANG) <= 0)
    }

    @Test("Without root: one clear sentence naming what is missing", needsRoot)
    func notRoot() throws {
        let run = try runCLI(["sandbox", "run", "--", "true"], asUser: 65534)
        #expect(run.status == 1)
        #expect(run.stderr.contains("needs root"), "stderr: \(run.stderr)")
        #expect(run.stderr.split(separator: "\n").count == 1)
    }

    @Test("A relative state directory is refused, naming it", needsRoot)
    func relativeStateDirectory() throws {
        #expect {
            _ = try Sandbox.create(SandboxSpec(), paths: StatePaths(base: "relative/state"))
        } throws: { "\($0)".contains("relative/state") && "\($0)".contains("absolute") }
        #expect(!FileManager.default.fileExists(atPath: FileManager.default.currentDirectoryPath + "/relative"))
    }

    @Test("A missing rootfs directory and bad limits are named", needsRoot)
    func badSpecs() throws {
        #expect {
            _ = try Sandbox.create(SandboxSpec(rootfs: .directory("/nonexistent/rootfs")))
        } throws: { "\($0)".contains("/nonexistent/rootfs") }
        var spec = SandboxSpec()
        spec.limits.memoryBytes = 1
        #expect { _ = try Sandbox.create(spec) } throws: { "\($0)".contains("limits.memory") }
        let states = (try? FileManager.default.contentsOfDirectory(atPath: StatePaths.standard.sandboxesDirectory)) ?? []
        #expect(states.allSatisfy { !$0.isEmpty })
    }
}
