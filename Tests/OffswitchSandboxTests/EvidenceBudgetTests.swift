import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchSandbox
import OffswitchTestSupport
import Testing

private typealias Event = [String: Any]

private func readEvents(_ path: String) throws -> [Event] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? Event)
    }
}

@Suite("The evidence budget: tiers, the bound and its account", needsRoot)
struct EvidenceBudgetLogTests {
    @Test("Ordinary events stop at the budget, critical ones at a quarter more, essential ones never")
    func tiers() throws {
        let path = NSTemporaryDirectory() + "offswitch-budget-\(getpid()).ndjson"
        defer { unlink(path) }
        let log = try EventLog(path: path, budget: EvidenceBudget(bytes: 8192))
        let open: [(String, JSONValue)] = [("syscall", .string("openat")), ("path", .string(String(repeating: "a", count: 100)))]
        let kill: [(String, JSONValue)] = [("syscall", .string("kill")), ("target", .int(1)), ("signal", .string("SIGTERM"))]
        var written: [UInt64] = []
        for _ in 0..<200 { written.append(log.append("syscall", open)) }
        // Past the ordinary bound: dropped, and the first one is replaced by the account.
        #expect(written.contains(0) && written.filter { $0 != 0 }.count < 200)
        let kept = log.append("syscall", kill)
        #expect(kept != 0, "a signal is critical: kept past the ordinary bound")
        for _ in 0..<200 { log.append("process_forked", [("child", .int(7))]) }
        #expect(log.append("sandbox_destroyed") != 0, "essential events are always written")
        log.summarizeDrops()
        log.flush()
        let events = try readEvents(path)
        let reached = events.filter { $0["kind"] as? String == "evidence_budget_reached" }
        #expect(reached.map { $0["tier"] as? String } == ["ordinary", "critical"])
        #expect(reached.first?["first_dropped"] as? String == "syscall:openat" && reached.first?["budget_bytes"] as? Int == 8192)
        #expect(reached.last?["budget_bytes"] as? Int == 10240)
        let dropped = try #require(events.last { $0["kind"] as? String == "evidence_dropped" })
        let counts = try #require(dropped["events"] as? [String: Int])
        #expect(counts["syscall:openat", default: 0] == written.filter { $0 == 0 }.count)
        #expect(counts["process_forked", default: 0] > 0)
        #expect(dropped["total"] as? Int == counts.values.reduce(0, +))
        // Appended one by one, each after the last was written: the bound holds to one event.
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size < 10240 + 1024, "\(size) bytes")
        #expect(events.filter { $0["kind"] as? String == "syscall" && $0["syscall"] as? String == "kill" }.count == 1)
    }

    @Test("While a trigger call is open, critical events are kept past their bound, up to twice the budget")
    func heldDuringTriggerCall() throws {
        let path = NSTemporaryDirectory() + "offswitch-budget-held-\(getpid()).ndjson"
        defer { unlink(path) }
        let log = try EventLog(path: path, budget: EvidenceBudget(bytes: 8192))
        let fork: [(String, JSONValue)] = [("child", .int(7)), ("filler", .string(String(repeating: "f", count: 100)))]
        while log.append("process_forked", fork) != 0 {}
        // Past the critical bound: dropped, until the trigger's shutdown call opens.
        #expect(log.append("process_forked", fork) == 0)
        log.holdCritical(true)
        #expect(log.append("process_forked", fork) != 0, "kept during the trigger call")
        var kept = 1
        while log.append("process_forked", fork) != 0 { kept += 1 }
        #expect(kept > 10, "about 6 KiB more of them fit: \(kept)")
        log.holdCritical(false)
        log.flush()
        let events = try readEvents(path)
        let reached = events.filter { $0["kind"] as? String == "evidence_budget_reached" }
        #expect(reached.map { $0["tier"] as? String } == ["critical", "critical_during_trigger_call"])
        #expect(reached.last?["budget_bytes"] as? Int == 16384)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size < 16384 + 1024, "\(size) bytes")
    }

    @Test("An exec's argv and exported functions are recorded up to 128 KiB each; the interesting variables always")
    func execArrays() throws {
        var spec = try profileSpec("docker")
        spec.record = [RecordedSyscall(name: "execve")]
        let path = NSTemporaryDirectory() + "offswitch-budget-exec-\(getpid()).ndjson"
        defer { unlink(path) }
        let sandbox = try Sandbox.create(spec, eventLog: path)
        let script = """
            import os
            env = {f"BASH_FUNC_f{i}%%": "() { " + "x" * 4000 + "; }" for i in range(100)}
            env["BASH_ENV"] = "/home/user/.hidden"
            env["PATH"] = "/usr/bin:/bin"
            os.execve("/bin/true", ["true"] + ["y" * 4000] * 100, env)
            """
        _ = try sandbox.exec(ExecRequest(argv: ["python3", "-c", script]))
        try sandbox.destroy()
        let event = try #require(try readEvents(path).last {
            $0["syscall"] as? String == "execve" && ($0["args"] as? Event)?["path"] as? String == "/bin/true"
        })
        let exec = try #require(event["args"] as? Event)
        let argv = try #require(exec["argv"] as? [String])
        #expect(argv.count < 101 && argv.reduce(0) { $0 + $1.utf8.count } <= 128 << 10)
        #expect(exec["argv_omitted"] as? Int == 101 - argv.count)
        let env = try #require(exec["env"] as? [String: String])
        #expect(env["BASH_ENV"] == "/home/user/.hidden" && env["PATH"] == "/usr/bin:/bin")
        let functions = env.keys.filter { $0.hasPrefix("BASH_FUNC_") }.count
        #expect(functions > 0 && functions < 100 && exec["env_omitted"] as? Int == 100 - functions)
        let line = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first { $0.contains("/bin/true") }
        #expect((line?.utf8.count ?? 0) < 300 << 10)
    }

    @Test("A sandbox flooding opens meets its budget: the flood is counted, the signals after it are kept, docs/events.md's examples are real")
    func sandboxFlood() throws {
        var spec = try profileSpec("docker")
        spec.limits.evidenceBytes = 1 << 20
        spec.record = [RecordedSyscall(name: "openat"), RecordedSyscall(name: "kill")]
        let path = NSTemporaryDirectory() + "offswitch-budget-flood-\(getpid()).ndjson"
        defer { unlink(path) }
        let sandbox = try Sandbox.create(spec, eventLog: path)
        let script = """
            import os
            for _ in range(20000): os.close(os.open("/dev/null", os.O_RDONLY))
            for _ in range(5): os.kill(os.getpid(), 0)
            """
        let result = try sandbox.exec(ExecRequest(argv: ["python3", "-c", script], timeoutSeconds: 120))
        #expect(result.exitCode == 0, "\(result.err)")
        try sandbox.destroy()
        let events = try readEvents(path)
        let reached = events.filter { $0["kind"] as? String == "evidence_budget_reached" }
        #expect(reached.count == 1 && reached.first?["tier"] as? String == "ordinary")
        let reachedSeq = reached.first?["seq"] as? Int ?? Int.max
        #expect(events.filter { $0["syscall"] as? String == "kill" && ($0["seq"] as? Int ?? 0) > reachedSeq }.count == 5)
        let dropped = try #require(events.last { $0["kind"] as? String == "evidence_dropped" })
        #expect(((dropped["events"] as? [String: Int])?["syscall:openat"] ?? 0) > 10000)
        #expect(events.last?["kind"] as? String == "sandbox_destroyed")
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size < 3 << 20, "\(size) bytes for a 1 MiB budget")
        // The documented examples have the fields of these real events.
        let docs = try String(contentsOfFile: DocsTests.docsDirectory() + "/events.md", encoding: .utf8)
        for kind in ["evidence_budget_reached", "evidence_dropped"] {
            let line = try #require(docs.split(separator: "\n").first { $0.hasPrefix("{") && $0.contains("\"kind\":\"\(kind)\"") })
            let example = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? Event)
            let real = try #require(events.first { $0["kind"] as? String == kind })
            #expect(Set(example.keys) == Set(real.keys), "\(kind)")
        }
    }
}
