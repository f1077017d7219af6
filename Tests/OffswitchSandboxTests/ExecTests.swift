import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Exec semantics", needsRoot)
struct ExecTests {
    @Test("stdin, cwd, environment, exit codes, signals, missing commands")
    func semantics() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let echo = try sandbox.exec(ExecRequest(argv: ["cat"], stdin: Array("piped\n".utf8)))
            #expect(echo.out == "piped\n" && echo.exitCode == 0)

            let pwd = try sandbox.exec(ExecRequest(argv: ["pwd"]))
            #expect(pwd.out == "/home/user\n")
            let rootPwd = try sandbox.exec(ExecRequest(argv: ["pwd"], user: .root))
            #expect(rootPwd.out == "/root\n")
            let tmp = try sandbox.exec(ExecRequest(argv: ["pwd"], cwd: "/tmp"))
            #expect(tmp.out == "/tmp\n")

            let env = try sandbox.exec(ExecRequest(argv: ["sh", "-c", "echo $FOO $HOME $HOSTNAME"], environment: ["FOO": "bar"]))
            #expect(env.out == "bar /home/user \(sandbox.hostname)\n")

            #expect(try sandbox.bash("exit 42").exitCode == 42)
            let killed = try sandbox.bash("kill -s SEGV $$")
            #expect(killed.exitCode == 128 + SIGSEGV && killed.signal == SIGSEGV)

            let missing = try sandbox.exec(ExecRequest(argv: ["no-such-command"]))
            #expect(missing.exitCode == 127)
            #expect(missing.err.contains("no-such-command"))
            let notExecutable = try sandbox.exec(ExecRequest(argv: ["/etc/passwd"]))
            #expect(notExecutable.exitCode == 126)

            #expect(throws: OffswitchError.self) { try sandbox.exec(ExecRequest(argv: ["true"], cwd: "/nonexistent")) }
            #expect(throws: OffswitchError.self) { try sandbox.exec(ExecRequest(argv: [])) }
            #expect(throws: OffswitchError.self) { try sandbox.exec(ExecRequest(argv: ["echo", "a\u{0}b"])) }
        }
    }

    @Test("Large output is kept up to the limit and flagged; stderr and stdout stay apart")
    func outputLimit() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let big = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "head -c 5000000 /dev/zero; echo oops >&2"], outputLimitBytes: 1000))
            #expect(big.stdout.count == 1000 && big.stdoutTruncated)
            #expect(big.err == "oops\n" && !big.stderrTruncated)
            let full = try sandbox.exec(ExecRequest(argv: ["head", "-c", "3000000", "/dev/urandom"]))
            #expect(full.stdout.count == 3_000_000 && !full.stdoutTruncated)
            let input = [UInt8](repeating: 7, count: 4_000_000)
            let counted = try sandbox.exec(ExecRequest(argv: ["wc", "-c"], stdin: input))
            #expect(counted.out == "4000000\n")
        }
    }

    @Test("A background process outliving its command does not hold the exec open")
    func backgroundChild() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let started = Date()
            let result = try sandbox.bash("sleep 30 & echo started")
            #expect(result.out == "started\n")
            #expect(Date().timeIntervalSince(started) < 20)
        }
    }

    @Test("Concurrent async execs into one sandbox, each on its own thread")
    func concurrent() async throws {
        let sandbox = try await Sandbox.create()
        try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<16 {
                group.addTask { try await sandbox.exec(ExecRequest(argv: ["sh", "-c", "sleep 0.5; echo \(index)"])).out }
            }
            var seen: Set<String> = []
            for try await output in group { seen.insert(output) }
            #expect(seen.count == 16)
        }
        try await sandbox.writeFile("/tmp/async", Array("a".utf8))
        #expect(try await sandbox.readFile("/tmp/async") == Array("a".utf8))
        try await sandbox.destroy()
    }

    @Test("An interactive shell on a pty inside the sandbox")
    func terminal() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
            #expect(pipe(&input) == 0 && pipe(&output) == 0)
            let script = "tty; echo hello-$((6*7)); exit 3\n"
            _ = script.withCString { write(input[1], $0, strlen($0)) }
            close(input[1])
            let session = TerminalSession(sandbox: sandbox, user: .agent, argv: ["bash", "--norc", "-i"], input: input[0], output: output[1])
            let code = try session.run()
            close(output[1])
            close(input[0])
            let text = String(decoding: FileHandle(fileDescriptor: output[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
            #expect(code == 3)
            #expect(text.contains("hello-42"))
            #expect(text.contains("/dev/pts/0"))
        }
    }
}
