import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Isolation: what the agent can see", needsRoot)
struct IsolationTests {
    @Test("PID 1 is offswitch-init, named by the CLI")
    func pidOneIsInit() throws {
        let run = try runCLI(["sandbox", "run", "--", "cat", "/proc/1/cmdline"])
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.stdout.split(separator: "\0").first == "offswitch-init")
        let comm = try runCLI(["sandbox", "run", "--", "cat", "/proc/1/comm"])
        #expect(comm.stdout == "offswitch-init\n")
    }

    @Test("Only the sandbox's processes, its own hostname, only lo", arguments: bundledProfiles)
    func namespaces(profile: String) throws {
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            let procs = try sandbox.bash("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '")
            let pids = procs.out.split(separator: " ").compactMap { Int($0) }
            #expect(pids.first == 1)
            // PID 1, bash, ls, grep, sort, tr: nothing of the host (whose pids run into thousands).
            #expect(pids.count <= 8 && pids.allSatisfy { $0 < 100 }, "saw \(procs.out)")

            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, 255)
            let inside = try sandbox.exec(ExecRequest(argv: ["hostname"])).out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(inside == sandbox.hostname)
            #expect(inside != String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))

            #expect(try sandbox.exec(ExecRequest(argv: ["ls", "/sys/class/net"])).out == "lo\n")
            let link = try sandbox.exec(ExecRequest(argv: ["cat", "/sys/class/net/lo/operstate"])).out
            #expect(link == "unknown\n", "loopback should be up")
        }
    }

    @Test("Writes as root vanish with the sandbox; host secrets and homes are not there", arguments: bundledProfiles)
    func throwawayRoot(profile: String) throws {
        let probe = "offswitch-probe-\(getpid())-\(profile)"
        let run = try runCLI(["sandbox", "run", "--profile", profile, "--user", "root", "--", "sh", "-c",
                              "echo x > /etc/\(probe) && echo y > /usr/bin/\(probe) && cat /etc/\(probe) /usr/bin/\(probe)"])
        #expect(run.status == 0, "stderr: \(run.stderr)")
        #expect(run.stdout == "x\ny\n")
        #expect(access("/etc/\(probe)", F_OK) != 0)
        #expect(access("/usr/bin/\(probe)", F_OK) != 0)

        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            // Host markers that must not show through.
            let marker = "/root/.offswitch-host-marker-\(getpid())"
            _ = FileManager.default.createFile(atPath: marker, contents: Data("secret".utf8))
            defer { unlink(marker) }
            let look = try sandbox.bash("""
                ls -A /root /home /srv /var/lib; echo ---; ls /etc/shadow /etc/gshadow /etc/ssh /etc/machine-id 2>&1; \
                echo ---; grep -rl 'PRIVATE KEY' /etc 2>/dev/null; grep -c . /etc/passwd
                """, user: .root)
            let sections = look.out.components(separatedBy: "---\n")
            #expect(sections.count == 3, "output: \(look.out)")
            #expect(!look.out.contains("offswitch-host-marker"))
            #expect(sections[0].split(separator: "\n").filter { !$0.hasSuffix(":") && !$0.isEmpty } == ["user"])
            #expect(sections[1].components(separatedBy: "No such file or directory").count == 5)
            #expect(sections[2] == "3\n", "only generated passwd entries, no private keys")
        }
    }

    @Test("The project directory and /tmp of the host are not visible", arguments: bundledProfiles)
    func noHostDirectories(profile: String) throws {
        let cwd = FileManager.default.currentDirectoryPath
        let marker = "/tmp/offswitch-host-tmp-\(getpid())"
        _ = FileManager.default.createFile(atPath: marker, contents: Data())
        defer { unlink(marker) }
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            let result = try sandbox.bash("ls -d \(cwd) \(marker) /work /opt/* 2>&1; mount | grep -c overlay", user: .root)
            #expect(result.out.contains("cannot access '\(cwd)': No such file or directory"), "\(result.out)")
            #expect(result.out.contains("cannot access '\(marker)': No such file or directory"), "\(result.out)")
        }
    }
}
