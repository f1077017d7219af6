import Foundation
import Glibc
import OffswitchTestSupport
import Testing

@Suite("offswitchd under concurrent load", needsRoot)
struct ConcurrencyTests {
    private func residentKiB(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test("Terminals whose program does not read, and whose client does not read, hold no daemon thread and no unbounded memory; SIGTERM still stops it")
    func stalledTerminals() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let pid = try #require(daemon.process?.processIdentifier)
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let neighbour = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        _ = try daemon.curl("POST", "/v1/sandboxes/\(neighbour)/exec", json: ["argv": ["true"]])
        let idle = residentKiB(pid)
        // Four programs that never read their terminal, each sent 256 KiB of keystrokes (more than a
        // pty holds): the daemon's writes used to block the threads every route runs on.
        var clients: [Int32] = []
        for _ in 0..<4 {
            clients.append(try silentTerminal(daemon.socket, id, input: Array("exec sleep 600\n".utf8) + [UInt8](repeating: 0x61, count: 256 << 10)))
        }
        // Two programs that print without end to clients that never read.
        for _ in 0..<2 { clients.append(try silentTerminal(daemon.socket, id, input: Array("exec yes offswitch\n".utf8))) }
        defer { for fd in clients { close(fd) } }
        sleep(5)
        for call in 0..<5 {
            let reply = try daemon.curl("POST", "/v1/sandboxes/\(neighbour)/exec", json: ["argv": ["echo", "alive-\(call)"]])
            #expect(reply.status == 200 && reply.json["stdout"] as? String == "alive-\(call)\n", "\(reply.status) \(reply.text)")
        }
        let resident = residentKiB(pid)
        // `yes` writes hundreds of MiB a second: buffered output would be gigabytes by now.
        #expect(resident - idle < 100 << 10, "offswitchd grew from \(idle / 1024) MiB to \(resident / 1024) MiB")
        daemon.stop(signal: SIGTERM)
        #expect(daemon.process?.isRunning == false)
    }

    @Test("SIGTERM stops offswitchd within its grace period while every kind of attack runs, and nothing is left behind",
          .timeLimit(.minutes(3)))
    func stopUnderAttack() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let attacks = [
            ":(){ :|:& };: ; sleep 600",                                                   // fork bomb, at the pids limit
            "python3 -c 'import os\nwhile True:\n  f = open(\"x\", \"w\"); f.write(\"a\"); f.close(); os.unlink(\"x\")'",  // event flood
            "head -c 480M /dev/zero > big; sleep 600",                                     // a full upper layer to hash at teardown
            "while :; do :; done & while :; do :; done",                                   // every core
            "yes offswitch",                                                               // output without end
        ]
        var clients: [Process] = []
        for script in attacks {
            let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
            let body = try JSONSerialization.data(withJSONObject: ["argv": ["bash", "-c", script], "timeout": 600])
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            client.arguments = ["-s", "-o", "/dev/null", "--unix-socket", daemon.socket, "-X", "POST", "--data-binary", "@-",
                                "http://offswitchd/v1/sandboxes/\(id)/exec"]
            let input = Pipe()
            client.standardInput = input
            try client.run()
            input.fileHandleForWriting.write(body)
            try input.fileHandleForWriting.close()
            clients.append(client)
        }
        // A terminal whose program never reads, sent more than a pty holds.
        let stalled = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let terminal = try silentTerminal(daemon.socket, stalled, input: Array("exec sleep 600\n".utf8) + [UInt8](repeating: 0x61, count: 256 << 10))
        defer { close(terminal) }
        sleep(4)
        let started = Date()
        daemon.stop(signal: SIGTERM)
        let took = Date().timeIntervalSince(started)
        // Every sandbox destroyed at once, each within its diff's 10 s deadline, then 15 s for
        // open requests (docs/daemon.md): 25 s, and slack for a loaded machine.
        #expect(took < 45, "offswitchd took \(Int(took)) s to stop")
        let process = try #require(daemon.process)
        #expect(!process.isRunning)
        // A stop past the grace period once ended in the service group's fatalError (its
        // cancellation allows 5 s), with a sandbox half torn down: the daemon exits 0, or says why.
        let logTail = String(daemon.log().suffix(3000))
        #expect(process.terminationReason == .exit && process.terminationStatus == 0,
                "offswitchd ended with \(process.terminationReason == .exit ? "status" : "signal") \(process.terminationStatus): \(logTail)")
        for client in clients where client.isRunning { client.terminate() }
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let ours = mounts.split(separator: "\n").filter { $0.contains(daemon.stateDirectory) }
        #expect(ours.isEmpty, "mounts of the daemon's state directory are left: \(ours); \(logTail)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/sandboxes")) ?? []
        #expect(left.isEmpty, "sandbox directories left: \(left)")
    }

    @Test("32 sandboxes each run 20 execs at once, with no error; memory returns near idle")
    func thirtyTwoSandboxes() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let pid = try #require(daemon.process?.processIdentifier)
        // Warm up once so the idle figure includes what every daemon keeps (caches, buffers).
        let warm = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        _ = try daemon.curl("POST", "/v1/sandboxes/\(warm)/exec", json: ["argv": ["true"]])
        _ = try daemon.curl("DELETE", "/v1/sandboxes/\(warm)")
        let idle = residentKiB(pid)

        // Real threads: curl blocks, and the cooperative pool has only as many threads as cores.
        let failures = Collected()
        let created = Collected()
        inParallel(32) { index in
            let reply = try daemon.curl("POST", "/v1/sandboxes", json: ["limits": ["memory_mib": 128]])
            guard reply.status == 201, let id = reply.json["id"] as? String else { return failures.add("create \(index): \(reply.text)") }
            created.add(id)
        }
        let ids = created.items
        let listed = try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any]
        #expect(listed?.count == 32, "all 32 exist at once")
        try #require(ids.count == 32, "\(failures.items.prefix(3))")
        inParallel(32) { index in
            for call in 0..<20 {
                let reply = try daemon.curl("POST", "/v1/sandboxes/\(ids[index])/exec", json: ["argv": ["sh", "-c", "echo \(index)-\(call)"]])
                if reply.status != 200 || reply.json["stdout"] as? String != "\(index)-\(call)\n" {
                    failures.add("exec \(index)/\(call): \(reply.status) \(reply.text)")
                }
            }
        }
        inParallel(32) { index in
            let removed = try daemon.curl("DELETE", "/v1/sandboxes/\(ids[index])")
            if removed.status != 204 { failures.add("delete \(index): \(removed.text)") }
        }
        let failureList = failures.items
        #expect(failureList.isEmpty, "\(failureList.prefix(5))")
        #expect(try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any] != nil)
        let after = residentKiB(pid)
        // "About its idle size": allocator caches may keep some, a leak per sandbox would not fit.
        #expect(after < idle + 64 * 1024, "idle \(idle) KiB, after \(after) KiB")
        print("offswitchd resident memory: idle \(idle) KiB, after 32 sandboxes x 20 execs \(after) KiB")
    }

    @Test("Concurrent execs into one sandbox")
    func oneSandbox() async throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let outputs = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<16 {
                group.addTask {
                    try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["sh", "-c", "sleep 0.2; echo \(index)"]]).json["stdout"] as? String ?? ""
                }
            }
            var all: Set<String> = []
            for try await output in group { all.insert(output) }
            return all
        }
        #expect(outputs == Set((0..<16).map { "\($0)\n" }))
    }

    @Test("During a fork bomb and a memory bomb in one sandbox, 100 execs into another all succeed; nothing is left")
    func bombNextDoor() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let pid = try #require(daemon.process?.processIdentifier)
        let bombed = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let quiet = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let bombs = Collected()
        // The fork bomb's shell then becomes its sleep: forking that sleep could fail, and end it.
        let attack = Thread {
            let fork = try? daemon.curl("POST", "/v1/sandboxes/\(bombed)/exec", json: ["argv": ["bash", "-c", ":(){ :|:& };: ; exec sleep 3000"], "timeout": 3600])
            bombs.add("fork bomb: \(fork?.status ?? 0)")
        }
        // The memory bomb is one python that forks its hogs and waits for each: a shell loop ended
        // when the fork bomb left it no process to fork (bash gives up a command after its retries).
        // Each hog marks itself the OOM killer's first choice, so the killer takes it, not a shell.
        let hogs = """
            import os, time
            while True:
                try:
                    pid = os.fork()
                except OSError:
                    time.sleep(0.01)
                    continue
                if pid == 0:
                    open("/proc/self/oom_score_adj", "w").write("1000")
                    a = []
                    while True: a.append(b"x" * (16 << 20))
                os.waitpid(pid, 0)
            """
        let memory = Thread {
            let reply = try? daemon.curl("POST", "/v1/sandboxes/\(bombed)/exec", json: ["argv": ["python3", "-c", hogs], "timeout": 3600])
            bombs.add("memory bomb: \(reply?.status ?? 0) \(reply?.text.prefix(300) ?? "")")
        }
        // The memory bomb first: its exec's own fork failed (EAGAIN) once the fork bomb held every pid.
        memory.start()
        Thread.sleep(forTimeInterval: 1)
        attack.start()
        Thread.sleep(forTimeInterval: 1.5)  // both bombs going
        var failures: [String] = []
        for call in 0..<100 {
            let reply = try daemon.curl("POST", "/v1/sandboxes/\(quiet)/exec", json: ["argv": ["sh", "-c", "echo \(call)"]])
            if reply.status != 200 || reply.json["stdout"] as? String != "\(call)\n" { failures.append("exec \(call): \(reply.status) \(reply.text)") }
        }
        // Both bombs were still going when the last exec answered: they end only with their
        // sandbox (their timeouts are an hour), however long the execs took beside them.
        let stillBombing = bombs.items.isEmpty
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(stillBombing, "a bomb ended before the 100 execs did: \(bombs.items)")
        #expect(residentKiB(pid) < 200 * 1024, "offswitchd grew to \(residentKiB(pid)) KiB")
        for id in [bombed, quiet] { #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204) }
        while bombs.items.count < 2 { usleep(100_000) }
        for id in [bombed, quiet] { #expect(traces(of: id, stateDirectory: daemon.stateDirectory).isEmpty, "\(traces(of: id, stateDirectory: daemon.stateDirectory))") }
    }

}

/// Runs `body(0..<count)` on `count` threads at once and waits for all; thrown errors are recorded.
private func inParallel(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Thread {
            defer { group.leave() }
            do { try body(index) } catch { Issue.record("thread \(index): \(error)") }
        }.start()
    }
    group.wait()
}

private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func add(_ item: String) { lock.withLock { stored.append(item) } }
    var items: [String] { lock.withLock { stored } }}
