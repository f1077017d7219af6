import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Limits: memory, pids, timeouts", needsRoot)
struct LimitTests {
    @Test("A 2 GiB allocation is stopped inside; a neighbour sandbox is unaffected")
    func memoryBomb() throws {
        try withSandbox { (neighbour: Sandbox) throws in
            try withSandbox { (sandbox: Sandbox) throws in
                let result = try sandbox.exec(ExecRequest(argv: [
                    "python3", "-c", "a = bytearray(2 << 30); a[::4096] = b'x' * len(a[::4096]); print('allocated')",
                ], timeoutSeconds: 60))
                #expect(result.exitCode != 0)
                #expect(!result.out.contains("allocated"))
                #expect(!result.timedOut)
                #expect(try sandbox.exec(ExecRequest(argv: ["true"])).exitCode == 0, "the sandbox itself survives")
            }
            #expect(try neighbour.bash("echo fine").out == "fine\n")
        }
    }

    @Test("A fork bomb hits the pids limit and is contained")
    func forkBomb() throws {
        var spec = SandboxSpec()
        spec.limits.pids = 64
        try withSandbox(spec) { (sandbox: Sandbox) throws in
            // Fork until the kernel refuses, keeping every child alive, so the count does not
            // depend on scheduling (a classic shell bomb churns, and bash retries forks for seconds).
            let bomb = try sandbox.exec(ExecRequest(argv: ["python3", "-c", """
                import os, time
                kids, err = [], None
                while len(kids) < 500:
                    try:
                        pid = os.fork()
                    except OSError as e:
                        err = e.errno
                        break
                    if pid == 0:
                        time.sleep(120)
                        os._exit(0)
                    kids.append(pid)
                print(len(kids), err)
                for k in kids:
                    os.kill(k, 9)
                    os.waitpid(k, 0)
                """], timeoutSeconds: 60))
            let fields = bomb.out.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            let forked = Int(fields.first ?? "") ?? 0
            #expect(fields.count == 2 && fields[1] == "\(EAGAIN)", "the kernel should refuse with EAGAIN: \(bomb.out) \(bomb.err)")
            #expect(forked < 64, "processes forked: \(bomb.out)")
            #expect(forked > 10, "the bomb should have forked: \(bomb.out) \(bomb.err)")
            #expect(try sandbox.exec(ExecRequest(argv: ["true"])).exitCode == 0, "the sandbox forks again once the bomb is gone")
        }
        try withSandbox { (other: Sandbox) throws in
            #expect(try other.bash("echo alive").out == "alive\n")
        }
    }

    @Test("A timeout kills the command's whole tree, children included")
    func timeoutKillsTree() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let started = Date()
            let result = try sandbox.exec(ExecRequest(
                argv: ["bash", "-c", "sleep 100 & (sleep 101 &) ; sleep 102"], timeoutSeconds: 1))
            let elapsed = Date().timeIntervalSince(started)
            #expect(result.timedOut)
            #expect(result.exitCode == 137)
            #expect(elapsed < 30, "took \(elapsed) s")
            let left = try sandbox.bash("ps -eo comm,args 2>/dev/null | grep -c '^sleep' || true")
            #expect(left.out == "0\n", "sleep processes left: \(left.out)")
        }
    }

    @Test("Command-line timeout through the CLI")
    func cliTimeout() throws {
        let run = try runCLI(["sandbox", "run", "--timeout", "1", "--", "sleep", "100"])
        #expect(run.status == 137)
        #expect(run.stderr.contains("timed out"))
    }
}
