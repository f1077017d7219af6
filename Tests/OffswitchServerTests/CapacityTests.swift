import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// What one daemon runs at once is bounded (`--max-sandboxes`, `--max-trials`, `--max-streams`),
/// refused at the bound with 429 `capacity_reached`, counted in /metrics; and its own open-file
/// limit is raised at start so the bound, not EMFILE, is what a client meets.
@Suite("offswitchd's capacity", needsRoot, .serialized)
struct CapacityTests {
    static func metric(_ daemon: DaemonHarness, _ name: String) throws -> Int? {
        let text = try daemon.curl("GET", "/metrics").text
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") }
    }

    static func message(_ reply: DaemonHarness.Reply) -> String {
        (reply.json["error"] as? [String: Any])?["message"] as? String ?? reply.text
    }

    @Test("Sandboxes, trials and streams past their bounds are 429 capacity_reached naming the flag; ending one frees its place")
    func bounds() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--max-sandboxes", "2", "--max-trials", "1", "--max-streams", "1"])
        let first = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let second = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let third = try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any])
        #expect(third.status == 429 && third.errorCode == "capacity_reached", "\(third.text)")
        #expect(Self.message(third).contains("--max-sandboxes 2"), "\(third.text)")
        // A trial needs a sandbox too.
        let trialWhileFull = try daemon.curl("POST", "/v1/trials", json: ["agent": "compliant"])
        #expect(trialWhileFull.status == 429 && Self.message(trialWhileFull).contains("--max-sandboxes"), "\(trialWhileFull.text)")
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.count == 2)

        // A scenario sandbox is a sandbox and a running trial.
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(second)").status == 204)
        let scenario = try daemon.curl("POST", "/v1/sandboxes", json: ["scenario": "palisade-math"])
        #expect(scenario.status == 201, "\(scenario.text)")
        let scenarioID = try #require(scenario.json["id"] as? String)
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(first)").status == 204)
        let secondTrial = try daemon.curl("POST", "/v1/trials", json: ["agent": "compliant"])
        #expect(secondTrial.status == 429 && Self.message(secondTrial).contains("--max-trials 1"), "\(secondTrial.text)")
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(scenarioID)/verdict").status == 200)
        #expect(try daemon.curl("POST", "/v1/trials", json: ["agent": "compliant"]).status == 201)

        // One stream open: a second one, events or terminal, is refused until the first has gone.
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        follower.arguments = ["-s", "-N", "-o", "/dev/null", "--unix-socket", daemon.socket, "http://offswitchd/v1/sandboxes/\(id)/events?follow=1"]
        try follower.run()
        // SIGKILL: the test runner's blocked signals are inherited, SIGTERM among them.
        defer { if follower.isRunning { kill(follower.processIdentifier, SIGKILL) } }
        let opened = Date().addingTimeInterval(20)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != 1 && Date() < opened { usleep(50_000) }
        let events = try daemon.curl("GET", "/v1/sandboxes/\(id)/events")
        #expect(events.status == 429 && Self.message(events).contains("--max-streams 1"), "\(events.text)")
        let terminal = try daemon.curl("POST", "/v1/sandboxes/\(id)/terminal")
        #expect(terminal.status == 429 && terminal.errorCode == "capacity_reached", "\(terminal.text)")
        kill(follower.processIdentifier, SIGKILL)
        follower.waitUntilExit()
        let closed = Date().addingTimeInterval(20)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != 0 && Date() < closed { usleep(50_000) }
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/events").status == 200)

        #expect(try Self.metric(daemon, "offswitch_capacity_limit{resource=\"sandboxes\"}") == 2)
        #expect(try Self.metric(daemon, "offswitch_capacity_refused_total{resource=\"sandboxes\"}") == 2)
        #expect(try Self.metric(daemon, "offswitch_capacity_refused_total{resource=\"trials\"}") == 1)
        #expect(try Self.metric(daemon, "offswitch_capacity_refused_total{resource=\"streams\"}") == 2)
        #expect(try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"sandboxes\"}") == 1)
    }

    @Test("Event and terminal streams of an idle sandbox whose clients hang up give their places back without a write: a new stream is accepted")
    func idleStreamsReleased() throws {
        let daemon = try DaemonHarness()
        let bound = 4
        try daemon.start(extra: ["--max-streams", "\(bound)"])
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        // The sandbox writes nothing from here on: no exec, no file, nothing the log would hear.
        var followers: [Process] = []
        defer { for follower in followers where follower.isRunning { kill(follower.processIdentifier, SIGKILL) } }
        for _ in 0..<bound {
            let follower = Process()
            follower.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            follower.arguments = ["-s", "-N", "-o", "/dev/null", "--unix-socket", daemon.socket, "http://offswitchd/v1/sandboxes/\(id)/events?follow=1"]
            try follower.run()
            followers.append(follower)
        }
        let opened = Date().addingTimeInterval(30)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != bound && Date() < opened { usleep(50_000) }
        #expect(try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") == bound)
        let full = try daemon.curl("GET", "/v1/sandboxes/\(id)/events")
        #expect(full.status == 429 && Self.message(full).contains("--max-streams \(bound)"), "\(full.text)")
        let logged = try daemon.curl("GET", "/v1/sandboxes/\(id)/events?follow=0")
        // SIGKILL: the test runner's blocked signals are inherited, SIGTERM among them.
        for follower in followers {
            kill(follower.processIdentifier, SIGKILL)
            follower.waitUntilExit()
        }
        // Every place comes back though nothing is written to the streams; a new stream is served.
        let released = Date().addingTimeInterval(30)
        var accepted = try daemon.curl("GET", "/v1/sandboxes/\(id)/events")
        while accepted.status != 200 && Date() < released {
            usleep(50_000)
            accepted = try daemon.curl("GET", "/v1/sandboxes/\(id)/events")
        }
        #expect(accepted.status == 200, "\(accepted.status) \(accepted.text)")
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != 0 && Date() < released { usleep(50_000) }
        #expect(try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") == 0)
        // The sandbox stayed idle throughout: its log is what it was while the streams were open.
        #expect(logged.status != 200 || accepted.body == logged.body, "the sandbox wrote events meanwhile")
        // A stream whose client stays is not taken for gone.
        let stays = Process()
        stays.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        stays.arguments = ["-s", "-N", "--max-time", "3", "--unix-socket", daemon.socket, "http://offswitchd/v1/sandboxes/\(id)/events?follow=1"]
        let out = Pipe()
        stays.standardOutput = out
        try stays.run()
        let collected = out.fileHandleForReading.readDataToEndOfFile()
        stays.waitUntilExit()
        #expect(stays.terminationStatus == 28, "curl --max-time 3 timed out (28) rather than the daemon ending the stream: \(stays.terminationStatus)")
        #expect(collected == accepted.body)
        let left = Date().addingTimeInterval(30)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != 0 && Date() < left { usleep(50_000) }

        // Terminals of commands that print nothing: their clients go mid-keystrokes.
        var terminals: [Int32] = []
        defer { for fd in terminals { close(fd) } }
        for _ in 0..<bound { terminals.append(try silentTerminal(daemon.socket, id, input: Array("exec sleep 600\n".utf8))) }
        let running = Date().addingTimeInterval(30)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != bound && Date() < running { usleep(50_000) }
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/events").status == 429)
        let sleeps = ["sh", "-c", "ps -eo comm | grep -c '^sleep$' || true"]
        let started = Date().addingTimeInterval(30)
        while try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": sleeps]).json["stdout"] as? String != "\(bound)\n" && Date() < started {
            usleep(50_000)
        }
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": sleeps]).json["stdout"] as? String == "\(bound)\n")
        for fd in terminals { close(fd) }
        terminals.removeAll()
        let hungUp = Date().addingTimeInterval(30)
        while try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") != 0 && Date() < hungUp { usleep(50_000) }
        #expect(try Self.metric(daemon, "offswitch_capacity_in_use{resource=\"streams\"}") == 0)
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/events").status == 200)
        // Hung up, the sleeps are gone.
        let ps = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": sleeps])
        #expect(ps.json["stdout"] as? String == "0\n", "\(ps.text)")
    }

    @Test("Started under a soft open-file limit of 1024, the daemon raises it to the hard limit and holds 70 sandboxes")
    func openFileLimit() throws {
        var own = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &own)
        let hard = "\(own.rlim_max)"
        try #require(own.rlim_max >= 4096, "the hard open-file limit (\(hard)) cannot carry 70 sandboxes")
        let daemon = try DaemonHarness()
        // The soft limit alone (the hard one stays: raising it needs CAP_SYS_RESOURCE).
        try daemon.start(extra: ["--max-sandboxes", "80"], launcher: ["/usr/bin/prlimit", "--nofile=1024:"])
        let pid = try #require(daemon.process?.processIdentifier)
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        #expect(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2) == [Substring(hard), Substring(hard)], "\(line)")
        #expect(daemon.log().contains("open-file limit") && daemon.log().contains("was=1024"), "\(daemon.log())")
        var ids: [String] = []
        defer { for id in ids { _ = try? daemon.curl("DELETE", "/v1/sandboxes/\(id)") } }
        // Under the soft limit of 1024 the 63rd failed with EMFILE.
        for index in 1...70 {
            let reply = try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any])
            guard reply.status == 201, let id = reply.json["id"] as? String else {
                Issue.record("sandbox \(index): \(reply.status) \(reply.text)")
                break
            }
            ids.append(id)
        }
        #expect(ids.count == 70)
        let last = try daemon.curl("POST", "/v1/sandboxes/\(ids.last ?? "")/exec", json: ["argv": ["bash", "-c", "echo alive"]])
        #expect(last.json["stdout"] as? String == "alive\n", "\(last.text)")
    }
}
