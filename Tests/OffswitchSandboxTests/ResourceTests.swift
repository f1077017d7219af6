import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Resources: CPU, rlimits, /dev, filesystem sizes, reaping", needsRoot)
struct ResourceTests {
    @Test("A CPU limit of 0.1 cores throttles a spinning loop")
    func cpuLimit() throws {
        var spec = SandboxSpec()
        spec.limits.cpus = 0.1
        try withSandbox(spec) { (sandbox: Sandbox) throws in
            // Spin for 2 s of wall-clock time; with 0.1 cores it gets about 0.2 s of CPU.
            let result = try sandbox.bash("end=$((SECONDS + 2)); while ((SECONDS < end)); do :; done; times", timeout: 30)
            let user = result.out.split(separator: "\n").first?.split(separator: " ").first ?? ""
            let minutes = Double(user.split(separator: "m").first ?? "") ?? 99
            let seconds = Double(user.split(separator: "m").last?.dropLast() ?? "") ?? 99
            #expect(minutes * 60 + seconds < 1.0, "user CPU: \(result.out)")
        }
    }

    @Test("Open-file limit, core dumps off, a minimal /dev")
    func processLimits() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            #expect(try sandbox.bash("ulimit -n; ulimit -c").out == "1024\n0\n")
            let dev = try sandbox.bash("ls -A /dev | sort | tr '\\n' ' '; echo; ls -A /dev/pts | tr '\\n' ' '")
            #expect(dev.out == "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero \nptmx ", "\(dev.out)")
            let io = try sandbox.bash("head -c 5 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; (echo x > /dev/full) 2>&1 | grep -c 'No space'")
            #expect(io.out == "5\nnull-ok\n1\n")
            #expect(try sandbox.bash("stat -c %a /tmp /dev/shm").out == "1777\n1777\n")
        }
    }

    @Test("The upper layer and /tmp are size-limited")
    func filesystemSizes() throws {
        var spec = SandboxSpec()
        spec.limits.upperBytes = 8 << 20
        spec.limits.tmpBytes = 4 << 20
        try withSandbox(spec) { (sandbox: Sandbox) throws in
            let home = try sandbox.bash("head -c 20000000 /dev/zero > /home/user/big; echo $?; du -m /home/user/big | cut -f1")
            #expect(home.out.hasPrefix("1\n"), "\(home.out) \(home.err)")
            #expect(home.err.contains("No space left"))
            let tmp = try sandbox.bash("head -c 10000000 /dev/zero > /tmp/big; echo $?")
            #expect(tmp.out == "1\n")
        }
    }

    @Test("A directory tree 3,000 deep that the agent made in its upper layer is gone after destroy (its diff does not recurse: DiffTests)")
    func deepTreeTornDown() throws {
        var upper = ""
        try withSandbox(SandboxSpec()) { (sandbox: Sandbox) throws in
            upper = sandbox.upperDirectory
            let made = try sandbox.bash("cd /home/user && python3 -c 'import os\nfor _ in range(3000): os.mkdir(\"d\"); os.chdir(\"d\")\nprint(\"made\")'")
            #expect(made.out == "made\n", "\(made.err)")
        }
        #expect(!upper.isEmpty && access(upper, F_OK) != 0, "\(upper) is still there")
    }

    @Test("PID 1 reaps orphans: no zombies remain")
    func reaping() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            _ = try sandbox.bash("for i in 1 2 3 4 5; do (sleep 0.1 &) ; done")
            _ = try sandbox.bash("sleep 0.5")
            let zombies = try sandbox.bash("grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l")
            #expect(zombies.out == "0\n")
        }
    }
}
