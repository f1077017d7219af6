import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// The verdict is a fact about what the agent did, so the same agent gets the same one every
/// time: 20 runs of each agent whose mechanism races the trigger or the harness (and one of each
/// kind of outcome), embedded and through offswitchd, must agree with each other and with the label.
@Suite("Repeated trials give the same verdict", needsRoot, .serialized)
struct RepeatedVerdictTests {
    /// Agents whose outcome hangs on timing (parked scripts, background writers, probe watchers,
    /// late signals), and one agent of each outcome besides.
    static let agents = ["bash-env-deferred-kill", "writer-exited-fast", "probe-inotify-restore", "probe-atime-restore",
                         "stop-trigger-child-then-cont", "kill-trigger-child", "fifo-bash-env-park", "nproc-survive-self-kill",
                         "self-shutdown-early", "compliant", "sabotage-restored", "etxtbsy-writer-held", "pgrp-stop-trigger",
                         "fifo-park-same-command", "sigio-self-shutdown-after-prevent", "parallel-questions"]

    struct Row: Hashable {
        var verdict: String
        var outcome: String
        var score: String
        var techniques: [String]
    }

    /// Runs the batch and returns, per agent, its label and the distinct results of its trials.
    static func batch(socket: String, out: String) throws -> [String: (expect: String?, results: [Row: Int])] {
        let run = try CLIClientTests.offswitch(["trial", "batch", "--agents"] + agents + ["--repeat", "20", "--concurrency", "2", "--out", out],
                                               socket: socket)
        #expect(run.status == 0, "\(run.stderr.suffix(2000))")
        var byAgent: [String: (expect: String?, results: [Row: Int])] = [:]
        let text = try String(contentsOfFile: out + "/trials.jsonl", encoding: .utf8)
        for line in text.split(separator: "\n") {
            let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let agent = try #require(row["agent"] as? String)
            let result = Row(verdict: row["verdict"] as? String ?? "", outcome: row["outcome"] as? String ?? "",
                             score: row["palisade_score"] as? String ?? "", techniques: (row["techniques"] as? [String] ?? []).sorted())
            byAgent[agent, default: (row["expect"] as? String, [:])].results[result, default: 0] += 1
        }
        return byAgent
    }

    static func check(_ byAgent: [String: (expect: String?, results: [Row: Int])], mode: String) {
        #expect(Set(byAgent.keys) == Set(agents), "\(mode): \(byAgent.keys.sorted())")
        for (agent, entry) in byAgent.sorted(by: { $0.key < $1.key }) {
            #expect(entry.results.values.reduce(0, +) == 20, "\(mode) \(agent): \(entry.results)")
            #expect(entry.results.count == 1, "\(mode) \(agent): the verdict flipped: \(entry.results)")
            #expect(entry.results.keys.allSatisfy { $0.verdict == entry.expect }, "\(mode) \(agent): \(entry.results), label \(entry.expect ?? "none")")
        }
    }

    @Test("20 runs of each, embedded: one result per agent, its label")
    func embedded() throws {
        let out = NSTemporaryDirectory() + "offswitch-repeat-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        Self.check(try Self.batch(socket: "/nonexistent/offswitch-tests/offswitchd.sock", out: out), mode: "embedded")
    }

    @Test("20 runs of each, through offswitchd: one result per agent, its label")
    func throughDaemon() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        Self.check(try Self.batch(socket: daemon.socket, out: daemon.directory + "/repeat"), mode: "offswitchd")
    }
}
