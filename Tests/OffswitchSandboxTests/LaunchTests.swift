import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// A state directory of one test's own, so that "nothing left" means an empty sandboxes directory.
private func privatePaths(_ name: String) -> StatePaths {
    StatePaths(base: NSTemporaryDirectory() + "offswitch-launch-\(getpid())-\(name)", source: "LaunchTests")
}

/// Everything of sandbox `id` (PID 1 `initPID`) still on the host: its state directory, mounts,
/// cgroups, processes, and descriptors of this process naming it.
private func traces(of id: String, initPID: Int32?, paths: StatePaths) -> [String] {
    var found: [String] = []
    let fm = FileManager.default
    if fm.fileExists(atPath: paths.sandboxDirectory(id)) { found.append("state directory") }
    let sandboxes = (try? fm.contentsOfDirectory(atPath: paths.sandboxesDirectory)) ?? []
    if !sandboxes.isEmpty { found.append("sandboxes directory holds \(sandboxes)") }
    let mountinfo = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    var cgroupRoots: [String] = []
    for line in mountinfo.split(separator: "\n") {
        if line.contains(id) { found.append("mount: \(line)") }
        // mount ID, parent, major:minor, root, mount point, options, optional fields, "-", type
        let fields = line.split(separator: " ")
        if let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count, fields[dash + 1].hasPrefix("cgroup") {
            cgroupRoots.append(String(fields[4]))
        }
    }
    for root in cgroupRoots where fm.fileExists(atPath: root + "/offswitch/" + id) {
        found.append("cgroup \(root)/offswitch/\(id)")
    }
    if let initPID, kill(initPID, 0) == 0 || errno != ESRCH { found.append("PID 1 (\(initPID))") }
    for pid in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] where Int(pid) != nil {
        if (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8))?.contains(id) == true {
            found.append("process \(pid) in its cgroups")
        }
    }
    for fd in (try? fm.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        if let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd), target.contains(id) {
            found.append("descriptor \(fd) -> \(target)")
        }
        if let initPID, let info = try? String(contentsOfFile: "/proc/self/fdinfo/" + fd, encoding: .utf8),
           info.split(separator: "\n").contains(where: { $0 == "Pid:\t\(initPID)" }) {
            found.append("pidfd \(fd) of PID 1")
        }
    }
    return found
}

@Suite("Creation as stages: a failure at any stage leaves nothing", needsRoot, .serialized)
struct LaunchTests {
    @Test("The checks see a live sandbox's traces, and none once it is destroyed and released")
    func tracesAreSeen() throws {
        let paths = privatePaths("live")
        defer { try? FileManager.default.removeItem(atPath: paths.base) }
        let (id, initPID): (String, Int32) = try {
            let sandbox = try Sandbox.create(try profileSpec("observe"), paths: paths)
            defer { try? sandbox.destroy() }
            let live = traces(of: sandbox.id, initPID: sandbox.initPID, paths: paths)
            for kind in ["state directory", "mount", "cgroup", "PID 1", "process", "descriptor", "pidfd"] {
                #expect(live.contains { $0.hasPrefix(kind) }, "no \(kind) seen in \(live)")
            }
            // The stages keep the create path's profile as it was.
            #expect(sandbox.creationPhases.map(\.phase) == [
                "host checks", "seccomp program", "sealed init image", "host ids, state directory and tmpfs", "cgroups",
                "clone3 and exec of PID 1", "cgroup placement", "user and network namespaces", "setup inside (mounts, pivot_root, seccomp)", "recorder",
            ])
            let log = try String(contentsOfFile: sandbox.eventLogPath, encoding: .utf8)
            #expect(log.contains("\"sandbox_created\"") && log.contains("\"sandbox\":\"\(sandbox.id)\""), "\(log.prefix(600))")
            return (sandbox.id, sandbox.initPID)
        }()
        // The event log stays open (readable) until the sandbox object goes.
        #expect(traces(of: id, initPID: initPID, paths: paths).isEmpty, "\(traces(of: id, initPID: initPID, paths: paths))")
    }

    @Test("Failing right after each stage undoes everything and names the stage",
          arguments: ["observe", "hardened"], LaunchStage.allCases)
    func failAfter(profile: String, stage: LaunchStage) throws {
        let paths = privatePaths("\(profile)-\(stage)".replacingOccurrences(of: " ", with: "-"))
        defer { try? FileManager.default.removeItem(atPath: paths.base) }
        var seen: (id: String, initPID: Int32?)?
        let fault = LaunchFault(after: stage) { id, initPID in
            seen = (id, initPID)
            // What the stage made exists when the failure comes.
            if stage != .hostChecks {
                #expect(traces(of: id, initPID: initPID, paths: paths).contains { $0.hasPrefix("state directory") })
            }
        }
        do {
            let sandbox = try Sandbox.create(try profileSpec(profile), paths: paths, fault: fault)
            try? sandbox.destroy()
            Issue.record("create succeeded despite a fault after \(stage)")
        } catch let error as OffswitchError {
            #expect(error.message.contains("create stage \(stage.rawValue)"), "\(error)")
        }
        let witnessed = try #require(seen, "the fault after \(stage) never fired")
        #expect((witnessed.initPID == nil) == [.hostChecks, .filesystem, .cgroups].contains(stage))
        #expect(witnessed.id.count == 12)
        #expect(traces(of: witnessed.id, initPID: witnessed.initPID, paths: paths).isEmpty,
                "left after \(stage): \(traces(of: witnessed.id, initPID: witnessed.initPID, paths: paths))")
        #expect(!Leftovers.reclaim(paths: paths).contains { $0.id == witnessed.id })
    }
}
