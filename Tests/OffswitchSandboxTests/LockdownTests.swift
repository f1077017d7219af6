import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Lockdown: seccomp, privileges, signals, PID 1", needsRoot)
struct LockdownTests {
    @Test("Seccomp filter, the profile's no_new_privs, empty signal mask; capabilities by user",
          arguments: bundledProfiles, SandboxUser.allCases)
    func processStatus(profile: String, user: SandboxUser) throws {
        let loaded = try ProfileCatalog.load(profile)
        try withSandbox(loaded.sandboxSpec) { (sandbox: Sandbox) throws in
            let status = try sandbox.exec(ExecRequest(argv: ["cat", "/proc/self/status"], user: user)).out
            #expect(statusField(status, "Seccomp") == "2")
            #expect(statusField(status, "NoNewPrivs") == (loaded.noNewPrivileges ? "1" : "0"))
            #expect(statusField(status, "SigBlk") == "0000000000000000")
            #expect(statusField(status, "SigIgn") == "0000000000000000")
            // Root gets exactly the profile's set, whatever PID 1 held to install the filter.
            let expected = user == .root ? loaded.capabilities.hex : "0000000000000000"
            #expect(statusField(status, "CapEff") == expected)
            #expect(statusField(status, "CapPrm") == expected)
            #expect(statusField(status, "CapInh") == "0000000000000000" && statusField(status, "CapAmb") == "0000000000000000")
            #expect(statusField(status, "CapBnd") == loaded.capabilities.hex)
            #expect(statusField(status, "Uid")?.split(separator: "\t").first == (user == .root ? "0" : "1000"))
        }
    }

    @Test("After setup PID 1 holds no CAP_SYS_ADMIN in any set, and is one thread again", arguments: bundledProfiles)
    func initGaveUpInstaller(profile: String) throws {
        let loaded = try ProfileCatalog.load(profile)
        try withSandbox(loaded.sandboxSpec) { (sandbox: Sandbox) throws in
            // From the host: nothing inside could have changed what PID 1 holds.
            let status = try String(contentsOfFile: "/proc/\(sandbox.initPID)/status", encoding: .utf8)
            let admin = try #require(CapabilitySet.numbers["CAP_SYS_ADMIN"])
            for field in ["CapPrm", "CapEff", "CapBnd", "CapInh", "CapAmb"] {
                let mask = try #require(statusField(status, field).flatMap { UInt64($0, radix: 16) }, "\(field) in \(status)")
                #expect(mask & (1 << UInt64(admin)) == 0, "\(profile): PID 1's \(field) is \(String(mask, radix: 16))")
            }
            // The profile's set and PID 1's own three (KILL, SETGID, SETUID), no more.
            let own = try CapabilitySet(names: ["CAP_KILL", "CAP_SETGID", "CAP_SETUID"]).mask
            let held = CapabilitySet(mask: loaded.capabilities.mask | own).hex
            #expect(statusField(status, "CapEff") == held && statusField(status, "CapPrm") == held, "\(status)")
            #expect(statusField(status, "CapBnd") == loaded.capabilities.hex)
            #expect(sandbox.initCapabilities.mask == loaded.capabilities.mask | own)
            #expect(statusField(status, "NoNewPrivs") == (loaded.noNewPrivileges ? "1" : "0"))
            #expect(statusField(status, "Seccomp_filters") == "1")
            #expect(statusField(status, "Threads") == "1", "the thread that installed the filter is gone")
            // The filter holds for PID 1's own thread too: it serves commands under it.
            #expect(try sandbox.exec(ExecRequest(argv: ["true"])).exitCode == 0)
        }
    }

    @Test("A setuid-root program gives the agent euid 0 where the profile has no no_new_privs (Docker's default), and nothing under no_new_privs",
          arguments: bundledProfiles)
    func setuidProgram(profile: String) throws {
        let loaded = try ProfileCatalog.load(profile)
        try withSandbox(loaded.sandboxSpec) { (sandbox: Sandbox) throws in
            // A setuid-root program left in the image, as an agent could find one: a copy of cat.
            let made = try sandbox.bash("cp /usr/bin/cat /usr/local/bin/rcat && chmod 4755 /usr/local/bin/rcat", user: .root)
            #expect(made.exitCode == 0, "\(made.err)")
            let run = try sandbox.exec(ExecRequest(argv: ["/usr/local/bin/rcat", "/proc/self/status"], user: .agent))
            #expect(run.exitCode == 0, "\(run.err)")
            let ids = statusField(run.out, "Uid")?.split(separator: "\t").map(String.init)
            if loaded.noNewPrivileges {
                #expect(ids == ["1000", "1000", "1000", "1000"], "\(run.out)")
                #expect(statusField(run.out, "CapEff") == "0000000000000000")
            } else {
                // Real uid the agent's, effective and saved uid root: root of the sandbox's own
                // user namespace, with the profile's capabilities and no more.
                #expect(ids == ["1000", "0", "0", "0"], "\(run.out)")
                #expect(statusField(run.out, "CapEff") == loaded.capabilities.hex)
                #expect(statusField(run.out, "CapBnd") == loaded.capabilities.hex)
            }
            #expect(statusField(run.out, "NoNewPrivs") == (loaded.noNewPrivileges ? "1" : "0"))
        }
    }

    @Test("Docker's seccomp answers: unshare and mount get EPERM even for root")
    func dockerSeccomp() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let unshare = try sandbox.exec(ExecRequest(argv: ["unshare", "-U", "true"], user: .root))
            #expect(unshare.exitCode != 0)
            #expect(unshare.err.contains("Operation not permitted"), "\(unshare.err)")
            let mount = try sandbox.exec(ExecRequest(argv: ["mount", "-t", "tmpfs", "none", "/mnt"], user: .root))
            #expect(mount.exitCode != 0)
            #expect(mount.err.contains("permission denied") || mount.err.contains("Operation not permitted"), "\(mount.err)")
        }
    }

    @Test("PID 1's executable cannot be written, read or traced from inside, even by root", arguments: bundledProfiles)
    func initExecutableSealed(profile: String) throws {
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            for user in SandboxUser.allCases {
                let result = try sandbox.bash("""
                    (echo x >> /proc/1/exe) 2>/dev/null && echo WROTE-EXE; \
                    (cat /proc/1/mem) 2>/dev/null && echo READ-MEM; \
                    (cat /proc/1/environ) 2>/dev/null && echo READ-ENVIRON; \
                    readlink /proc/1/exe 2>&1; echo done
                    """, user: user)
                #expect(!result.out.contains("WROTE-EXE"), "\(user): \(result.out)")
                #expect(!result.out.contains("READ-MEM"), "\(user): \(result.out)")
                #expect(!result.out.contains("READ-ENVIRON"), "\(user): \(result.out)")
                #expect(result.out.hasSuffix("done\n"))
            }
        }
    }

    @Test("SIGKILL and SIGSTOP from inside do not end PID 1; the sandbox keeps serving", arguments: bundledProfiles)
    func initIgnoresKill(profile: String) throws {
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            _ = try sandbox.bash("kill -KILL 1; kill -STOP 1; kill -INT 1; kill -HUP 1; true", user: .root)
            #expect(sandbox.end == nil)
            #expect(try sandbox.exec(ExecRequest(argv: ["true"])).exitCode == 0)
        }
    }
}
