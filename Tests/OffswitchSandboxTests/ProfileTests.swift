import Foundation
import Glibc
import OffswitchCore
import OffswitchYAML
@testable import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Profiles: reading, checking, bundled files")
struct ProfileTests {
    @Test("profile check's reading: a bundled name reads its file, an unknown name is one problem naming it")
    func profileCheck() throws {
        let docker = ProfileReader.check("docker")
        #expect(docker.label.hasSuffix("sandbox-profiles/docker.yaml") && !docker.problems.contains { !$0.isWarning })
        let unknown = ProfileReader.check("no-such-profile")
        #expect(unknown.label == "no-such-profile" && unknown.problems.count == 1)
        #expect(unknown.problems.first?.description.hasPrefix("no-such-profile: ") == true)
    }

    /// A valid profile every broken case starts from (one change each).
    static let base = """
        name: probe
        description: a test profile
        seccomp:
          defaultAction: SCMP_ACT_ALLOW
          syscalls:
            - names: [getpid]
              action: SCMP_ACT_ALLOW
            - names: [getppid]
              action: SCMP_ACT_ERRNO
              errnoRet: 1
            - names: [getuid]
              action: SCMP_ACT_LOG
            - names: [getpriority]
              action: SCMP_ACT_ERRNO
              args:
                - {index: 0, value: 0, op: SCMP_CMP_EQ}
        record: [kill, {name: execve}]
        capabilities: [CAP_CHOWN]
        network: none
        limits: {memory: 256MiB, pids: 128, cpus: 0.5, upper: 64MiB, tmp: 16MiB, open_files: 512, pending_signals: 256, message_queues: 64KiB,
                 command_timeout: 10m}
        rootfs: host
        user: user
        """

    @Test("Bundled profiles load without errors and say what PALISADE.md says")
    func bundled() throws {
        #expect(try ProfileCatalog.names() == bundledProfiles.sorted())
        for name in bundledProfiles {
            let outcome = ProfileReader.read(path: try ProfileCatalog.path(of: name))
            #expect(outcome.errors.isEmpty, "\(name): \(outcome.errors)")
        }
        let docker = try ProfileCatalog.load("docker")
        #expect(docker.limits.cpus == 0.5 && docker.limits.memoryBytes == 256 << 20)
        #expect(docker.capabilities == .dockerDefault && docker.user == .agent)
        // Docker sets no_new_privs only when asked; hardened asks.
        #expect(!docker.noNewPrivileges && docker.sandboxSpec.noNewPrivileges == false)
        let hardened = try ProfileCatalog.load("hardened")
        #expect(hardened.capabilities == .none)
        #expect(hardened.noNewPrivileges && hardened.sandboxSpec.noNewPrivileges)
        #expect(try !ProfileCatalog.load("observe").noNewPrivileges)
        let denied = hardened.seccomp.syscalls.filter { $0.action == "SCMP_ACT_ERRNO" && $0.comment == "the profile's seccomp_deny" }
        #expect(denied.first?.names.contains("ptrace") == true)
        #expect(!hardened.seccomp.syscalls.contains { $0.action == "SCMP_ACT_ALLOW" && $0.names.contains("ptrace") })
    }

    @Test("A profile reads field by field")
    func fields() throws {
        let profile = try #require(ProfileReader.read(text: Self.base, file: "p.yaml").profile)
        #expect(profile.name == "probe")
        #expect(profile.seccomp.syscalls.count == 4)
        #expect(profile.record == [RecordedSyscall(name: "kill"), RecordedSyscall(name: "execve")])
        #expect(profile.capabilities == (try CapabilitySet(names: ["CAP_CHOWN"])))
        #expect(profile.limits.memoryBytes == 256 << 20 && profile.limits.pids == 128 && profile.limits.cpus == 0.5)
        #expect(profile.limits.upperBytes == 64 << 20 && profile.limits.tmpBytes == 16 << 20 && profile.limits.openFiles == 512)
        #expect(profile.limits.pendingSignals == 256 && profile.limits.messageQueueBytes == 64 << 10)
        #expect(profile.commandTimeoutSeconds == 600)
        #expect(profile.seccompSource == "p.yaml: seccomp")
        // Absent: Docker's default.
        #expect(!profile.noNewPrivileges)
        let asked = Self.base.replacingOccurrences(of: "network: none", with: "no_new_privileges: true\nnetwork: none")
        #expect(try #require(ProfileReader.read(text: asked, file: "p.yaml").profile).noNewPrivileges)
    }

    @Test("Without pending_signals and message_queues a profile gets 4096 signals and the kernel's 819200 bytes")
    func kernelCounterDefaults() throws {
        let text = Self.base.replacingOccurrences(of: "pending_signals: 256, message_queues: 64KiB,", with: "")
        let profile = try #require(ProfileReader.read(text: text, file: "p.yaml").profile)
        #expect(profile.limits.pendingSignals == 4096 && profile.limits.messageQueueBytes == 819_200)
        for name in ["docker", "hardened", "observe"] {
            let limits = try ProfileCatalog.load(name).limits
            #expect(limits.pendingSignals == 4096 && limits.messageQueueBytes == 819_200, "\(name)")
        }
    }

    /// (what to replace in `base`, with what, the problem expected: `FIELD.PATH: reason` part).
    static let broken: [(String, String, String)] = [
        ("name: probe", "name: [probe", "not valid YAML or JSON: line"),
        ("action: SCMP_ACT_LOG", "action: SCMP_ACT_LOUD", "seccomp.syscalls[2].action: unknown action \"SCMP_ACT_LOUD\""),
        ("action: SCMP_ACT_LOG", "action: SCMP_ACT_TRACE", "seccomp.syscalls[2].action: SCMP_ACT_TRACE needs a ptrace tracer"),
        ("record: [kill,", "record: [kil,", "record[0]: unknown syscall \"kil\""),
        ("{index: 0, value: 0, op: SCMP_CMP_EQ}", "{index: 6, value: 0, op: SCMP_CMP_EQ}", "seccomp.syscalls[3].args[0].index: 6 is out of range (0...5)"),
        ("{index: 0, value: 0, op: SCMP_CMP_EQ}", "{index: 0, value: 0, op: SCMP_CMP_EQUAL}", "seccomp.syscalls[3].args[0].op: unknown comparator \"SCMP_CMP_EQUAL\""),
        ("{index: 0, value: 0, op: SCMP_CMP_EQ}", "{index: 0, value: 0, valueTwo: 3, op: SCMP_CMP_EQ}", "seccomp.syscalls[3].args[0].valueTwo: only SCMP_CMP_MASKED_EQ takes a second value"),
        ("{index: 0, value: 0, op: SCMP_CMP_EQ}", "{index: 0, value: -1, op: SCMP_CMP_EQ}", "seccomp.syscalls[3].args[0].value: expected a whole number"),
        ("{index: 0, value: 0, op: SCMP_CMP_EQ}", "{index: 0, value: 0, op: SCMP_CMP_EQ}\n        - {index: 0, value: 1, op: SCMP_CMP_EQ}", "seccomp.syscalls[3].args[1]: argument 0 is already compared in this rule"),
        ("errnoRet: 1", "errnoRet: 5000", "seccomp.syscalls[1].errnoRet: 5000 is out of range (0...4095)"),
        ("seccomp:\n  defaultAction: SCMP_ACT_ALLOW", "seccomp: missing-policy.json\nx:\n  defaultAction: SCMP_ACT_ALLOW", "seccomp: cannot read"),
        ("memory: 256MiB", "memory: -5MiB", "limits.memory: expected a size such as 256MiB"),
        ("memory: 256MiB", "memory: 1MiB", "limits.memory: 1048576 bytes is below the 16 MiB minimum"),
        ("pids: 128", "pids: -1", "limits.pids: expected a whole number"),
        ("pending_signals: 256", "pending_signals: 8", "limits.pending_signals: 8 is not between 32 and 1048576"),
        ("message_queues: 64KiB", "message_queues: 1GiB", "limits.message_queues: 1073741824 bytes is above the 64 MiB maximum"),
        ("message_queues: 64KiB", "message_queues: lots", "limits.message_queues: expected a size"),
        ("cpus: 0.5", "cpus: lots", "limits.cpus: expected a number, found \"lots\""),
        ("command_timeout: 10m", "command_timeout: 0", "limits.command_timeout: expected a positive duration"),
        ("capabilities: [CAP_CHOWN]", "capabilities: [CAP_CHOWN, CAP_FLY]", "capabilities[1]: unknown capability \"CAP_FLY\""),
        ("network: none", "network: host", "network: unknown network mode \"host\""),
        ("network: none", "no_new_privileges: maybe\nnetwork: none", "no_new_privileges: expected true or false, found \"maybe\""),
        ("user: user", "user: admin", "user: expected user or root, found \"admin\""),
        ("rootfs: host", "rootfs: dir:relative", "rootfs: expected host or dir:/absolute/path"),
        ("network: none", "user_namespace: {host_uid: 100000}\nnetwork: none", "user_namespace: no longer a profile field"),
        ("name: probe", "name: Probe Profile", "name: \"Probe Profile\": use lower-case letters"),
        ("name: probe", "nmae: probe", "nmae: unknown field"),
        ("name: probe\n", "", "name: missing"),
        ("defaultAction: SCMP_ACT_ALLOW", "defaultAction: SCMP_ACT_ALLOW\n  flags: [SECCOMP_FILTER_FLAG_NEW_LISTENER]", "seccomp.flags[0]: the listener belongs to Offswitch's recorder"),
        ("defaultAction: SCMP_ACT_ALLOW", "defaultAction: SCMP_ACT_ALLOW\n  flags: [SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV]", "seccomp.flags[0]: the listener belongs to Offswitch's recorder"),
        ("action: SCMP_ACT_LOG", "action: SCMP_ACT_LOG\n      includes: {minKernel: five}", "seccomp.syscalls[2].includes.minKernel: expected a kernel version"),
        ("action: SCMP_ACT_LOG", "action: SCMP_ACT_LOG\n      includes: {caps: [CAP_WIZARD]}", "seccomp.syscalls[2].includes.caps[0]: unknown capability \"CAP_WIZARD\""),
        ("- names: [getpid]", "- names: getpid", "seccomp.syscalls[0].names: expected a list, found \"getpid\""),
    ]

    @Test("Broken profiles: each problem names the file and the field path", arguments: 0..<broken.count)
    func brokenProfile(index: Int) throws {
        let (old, new, expected) = Self.broken[index]
        #expect(Self.base.contains(old), "case \(index) does not apply")
        let directory = try temporaryDirectory()
        let path = directory + "/p.yaml"
        try Self.base.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
        let outcome = ProfileReader.read(path: path)
        #expect(outcome.profile == nil)
        let lines = outcome.errors.map(\.description)
        #expect(lines.contains { $0.hasPrefix(path + ": " + expected) }, "case \(index): \(lines)")
    }

    @Test("A missing or unreadable profile file is one line naming it")
    func missingFile() {
        let outcome = ProfileReader.read(path: "/nonexistent/p.yaml")
        #expect(outcome.errors.map(\.description) == ["/nonexistent/p.yaml: cannot read: No such file or directory"])
        let directory = ProfileReader.read(path: "/etc")
        #expect(directory.errors.map(\.description) == ["/etc: /etc is not a regular file"])
    }

    @Test("Every problem of a file is reported, not just the first")
    func allProblems() {
        let text = Self.base
            .replacingOccurrences(of: "user: user", with: "user: admin")
            .replacingOccurrences(of: "network: none", with: "network: host")
            .replacingOccurrences(of: "SCMP_CMP_EQ}", with: "SCMP_CMP_EQUAL}")
        let lines = ProfileReader.read(text: text, file: "p.yaml").errors.map(\.description)
        #expect(lines.count == 3, "\(lines)")
        #expect(lines.contains("p.yaml: seccomp.syscalls[3].args[0].op: unknown comparator \"SCMP_CMP_EQUAL\" (known: SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_LE, SCMP_CMP_LT, SCMP_CMP_MASKED_EQ, SCMP_CMP_NE)"))
    }

    @Test("profile check prints FILE: FIELD: reason and exits 1; ok files say ok")
    func checkCommand() throws {
        let directory = try temporaryDirectory()
        let bad = directory + "/bad.yaml"
        try Self.base.replacingOccurrences(of: "SCMP_CMP_EQ}", with: "SCMP_CMP_EQUAL}").write(toFile: bad, atomically: true, encoding: .utf8)
        let run = try runCLI(["profile", "check", "docker", bad])
        #expect(run.status == 1)
        #expect(run.stdout.contains("sandbox-profiles/docker.yaml: ok\n"), "\(run.stdout)")
        #expect(run.stdout.contains("\(bad): seccomp.syscalls[3].args[0].op: unknown comparator \"SCMP_CMP_EQUAL\""), "\(run.stdout)")
        let good = try runCLI(["profile", "check", "--quiet", "docker", "hardened", "observe"])
        #expect(good.status == 0, "\(good.stdout)")
        #expect(good.stdout.split(separator: "\n").count == 3)
        let unknown = try runCLI(["profile", "check", "nonesuch"])
        #expect(unknown.status == 1 && unknown.stdout.contains("nonesuch: unknown profile \"nonesuch\""))
    }

    @Test("profile show resolves Docker's includes and excludes for this machine")
    func showCommand() throws {
        let run = try runCLI(["profile", "show", "docker"])
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["format"] as? String == "offswitch.effective-profile/3")
        // The fields docs/profiles.md names, no more and no fewer.
        #expect(Set(object.keys) == ["format", "name", "description", "source", "seccomp_source", "user", "rootfs", "network",
                                     "capabilities", "no_new_privileges", "limits", "record", "seccomp", "skipped", "machine"])
        #expect(object["no_new_privileges"] as? Bool == false)
        let limits = try #require(object["limits"] as? [String: Any])
        // `command_timeout_seconds` only when set (docker sets none).
        #expect(Set(limits.keys).subtracting(["command_timeout_seconds"]) == ["memory_bytes", "pids", "cpus", "upper_bytes", "tmp_bytes",
                                                                            "open_files", "pending_signals", "message_queue_bytes", "evidence_bytes"])
        let seccomp = try #require(object["seccomp"] as? [String: Any])
        let rules = try #require(seccomp["syscalls"] as? [[String: Any]])
        #expect(!rules.contains { $0["includes"] != nil || $0["excludes"] != nil })
        let allowed = rules.filter { $0["action"] as? String == "SCMP_ACT_ALLOW" }.flatMap { $0["names"] as? [String] ?? [] }
        #expect(allowed.contains("ptrace"), "ptrace is allowed from kernel 4.8 on")
        #expect(!allowed.contains("mount"), "mount needs CAP_SYS_ADMIN, which docker does not give")
        #expect((seccomp["architectures"] as? [String])?.first == "SCMP_ARCH_X86_64")
        let ls = try runCLI(["profile", "ls"])
        #expect(ls.stdout.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" } == bundledProfiles.sorted())
    }

    @Test("Random mutations of the bundled files never crash the reader or the compiler")
    func mutations() throws {
        var generator = SplitMix64(state: 0x0ff5_1c4)
        let sources = try bundledProfiles.map { name in
            try String(contentsOfFile: try ProfileCatalog.path(of: name), encoding: .utf8)
        } + [Self.base]
        let tokens = ["", "-1", "null", "[", "]", "{", "}", ":", "- ", "\"", "SCMP_ACT_TRACE", "99999999999999999999999",
                      "SCMP_CMP_MASKED_EQ", "&a", "*a", "!!binary", "\t", "\n", "valueTwo: 1", "0x", "1e400", "~"]
        let directory = try ProfileCatalog.directory()
        var loaded = 0
        for round in 0..<400 {
            var lines = sources[round % sources.count].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for _ in 0..<(1 + generator.next() % 4) {
                let line = Int(generator.next() % UInt64(lines.count))
                switch generator.next() % 5 {
                case 0: lines.remove(at: line)
                case 1: lines.insert(lines[Int(generator.next() % UInt64(lines.count))], at: line)
                case 2:
                    var characters = Array(lines[line])
                    if !characters.isEmpty { characters.remove(at: Int(generator.next() % UInt64(characters.count))) }
                    lines[line] = String(characters)
                case 3:
                    let token = tokens[Int(generator.next() % UInt64(tokens.count))]
                    let position = lines[line].isEmpty ? 0 : Int(generator.next() % UInt64(lines[line].count))
                    var text = lines[line]
                    text.insert(contentsOf: token, at: text.index(text.startIndex, offsetBy: position))
                    lines[line] = text
                default:
                    lines[line] = String(lines[line].prefix(Int(generator.next() % 12)))
                }
                if lines.isEmpty { lines = [""] }
            }
            // Relative seccomp paths resolve beside the bundled profiles.
            let outcome = ProfileReader.read(text: lines.joined(separator: "\n"), file: directory + "/mutant.yaml")
            #expect(outcome.profile != nil || !outcome.errors.isEmpty, "round \(round): neither a profile nor an error")
            if let profile = outcome.profile {
                loaded += 1
                _ = try? SeccompCompiler(capabilities: profile.capabilities).compile(profile.seccomp, source: "mutant")
                _ = try? EffectiveProfile.json(profile)
            }
        }
        #expect(loaded > 0, "some mutations should still be valid profiles")
    }

    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "offswitch-profile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

