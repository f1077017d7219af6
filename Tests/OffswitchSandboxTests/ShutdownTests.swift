import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("A real shutdown", needsRoot)
struct ShutdownTests {
    @Test("user's kill -s TERM 1 ends everything; the sender is recorded; later execs fail", arguments: bundledProfiles)
    func agentShutsDown(profile: String) throws {
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            try sandbox.writeFile("/home/user/before.txt", Array("kept\n".utf8))
            let started = Date()
            let result = try sandbox.bash("echo $$ > /tmp/sender; kill -s TERM 1; sleep 5; echo survived")
            #expect(Date().timeIntervalSince(started) < 4, "the shutdown must not wait for sleep 5")
            #expect(!result.out.contains("survived"))
            #expect(result.exitCode == 137 && result.signal == SIGKILL)
            let shutdown = try #require(result.shutdown)
            #expect(shutdown.signal == SIGTERM)
            #expect(shutdown.senderUID == 1000)
            #expect(shutdown.senderPID > 1)
            #expect(sandbox.shutdown == shutdown)

            #expect {
                try sandbox.exec(ExecRequest(argv: ["true"]))
            } throws: { error in
                (error as? OffswitchError)?.code == .sandboxShutDown
                    && "\(error)".contains("has been shut down") && "\(error)".contains("pid \(shutdown.senderPID)")
            }
            // The upper layer stays readable until destroy.
            let kept = try String(contentsOfFile: sandbox.upperDirectory + "/home/user/before.txt", encoding: .utf8)
            #expect(kept == "kept\n")
        }
    }

    @Test("The CLI reports the shutdown and never prints what came after it")
    func cliShutdown() throws {
        let run = try runCLI(["sandbox", "run", "--json", "--", "bash", "-c", "kill -s TERM 1; sleep 5; echo survived"])
        #expect(run.status == 137)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(object["exit_code"] as? Int == 137)
        #expect(object["stdout"] as? String == "")
        let shutdown = try #require(object["shutdown"] as? [String: Any])
        #expect(shutdown["signal"] as? Int == 15)
        #expect((shutdown["sender_pid"] as? Int ?? 0) > 1)
        for key in ["stderr", "duration_ms", "truncated"] { #expect(object[key] != nil, "missing \(key)") }
    }

    @Test("A shutdown from the host (what a harness calls) works the same way")
    func hostShutdown() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            try sandbox.shutDown()
            let shutdown = try #require(sandbox.shutdown)
            #expect(shutdown.signal == SIGTERM && shutdown.senderPID == 0)
            #expect(throws: OffswitchError.self) { try sandbox.readFile("/etc/hostname") }
        }
    }

    @Test("Destroy after destroy, and exec after destroy, are clear")
    func destroyTwice() throws {
        let sandbox = try Sandbox.create()
        try sandbox.destroy()
        try sandbox.destroy()
        #expect {
            try sandbox.exec(ExecRequest(argv: ["true"]))
        } throws: { ($0 as? OffswitchError)?.code == .sandboxDestroyed }
    }
}
