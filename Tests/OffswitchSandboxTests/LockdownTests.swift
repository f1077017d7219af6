import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Lockdown: seccomp, privileges, signals, PID 1", needsRoot)
struct LockdownTests {
    @Test("Seccomp filter, no_new_privs, empty signal mask; capabilities by user", arguments: SandboxUser.allCases)
    func processStatus(user: SandboxUser) throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let status = try sandbox.exec(ExecRequest(argv: ["cat", "/proc/self/status"], user: user)).out
            #expect(statusField(status, "Seccomp") == "2")
            #expect(statusField(status, "NoNewPrivs") == "1")
            #expect(statusField(status, "SigBlk") == "0000000000000000")
            #expect(statusField(status, "SigIgn") == "0000000000000000")
            let expected = user == .root ? CapabilitySet.dockerDefault.hex : "0000000000000000"
            #expect(statusField(status, "CapEff") == expected)
            #expect(statusField(status, "CapBnd") == CapabilitySet.dockerDefault.hex)
            #expect(statusField(status, "Uid")?.split(separator: "\t").first == (user == .root ? "0" : "1000"))
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
