import Foundation
import Glibc
import OffswitchContainment
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// The escape battery (scripts/escape-suite/, docs/security.md) in real sandboxes: every attempt
/// must be contained (judged from the host) and visible in the evidence, under docker and hardened.
@Suite("Escape battery", needsRoot)
struct EscapeBatteryTests {
    @Test("Every attempt of the battery is contained and visible in the evidence", arguments: ["docker", "hardened"])
    func battery(profile: String) throws {
        let attempts = try EscapeAttempt.loadSuite(try EscapeBattery.suiteDirectory())
        #expect(attempts.count >= 40, "only \(attempts.count) attempts")
        #expect(Set(attempts.map(\.category)) == Set(EscapeAttempt.categories))
        let loaded = try ProfileCatalog.load(profile)
        var failures: [String] = []
        for attempt in attempts {
            let result = EscapeBattery.run(attempt, profile: loaded)
            if let error = result.error { failures.append("\(attempt.name): \(error)"); continue }
            if !result.contained || !result.visible {
                let checks = result.checks.filter { !$0.passed }.map { "\($0.check): \($0.detail)" }
                let evidence = attempt.evidence.map { "\($0)=\(result.evidence[$0] ?? 0)" }.joined(separator: " ")
                failures.append("\(attempt.name): contained \(result.contained), visible \(result.visible); \(checks.joined(separator: "; ")); evidence \(evidence); output: \(result.output.prefix(300))")
            }
        }
        #expect(failures.isEmpty, "under \(profile):\n\(failures.joined(separator: "\n"))")
    }

    @Test("A broken attempt file is refused with the file, the field and the reason")
    func brokenAttempt() throws {
        let directory = NSTemporaryDirectory() + "offswitch-suite-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
            name: broken
            category: plumbing
            description: x
            script: "true"
            contained_if: [sometimes, {limit_hit: disk}, {path_absent: relative}]
            evidence: []
            """.write(toFile: directory + "/01-broken.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try EscapeAttempt.loadSuite(directory)
            Issue.record("a broken attempt was accepted")
        } catch {
            let text = error.description
            for expected in ["01-broken.yaml: category", "contained_if[0]: unknown check \"sometimes\"", "contained_if[1].limit_hit: expected pids, memory or cpu",
                             "contained_if[2].path_absent: expected an absolute path", "evidence: list the syscalls"] {
                #expect(text.contains(expected), "missing \(expected) in: \(text)")
            }
        }
    }

    @Test("setuid-binaries expects root inside without no_new_privs and the caller under it; a bad owner_inside is refused")
    func checksByProfile() throws {
        let attempts = try EscapeAttempt.loadSuite(try EscapeBattery.suiteDirectory())
        let attempt = try #require(attempts.first { $0.name == "setuid-binaries" })
        let docker = try ProfileCatalog.load("docker"), hardened = try ProfileCatalog.load("hardened")
        #expect(attempt.checks(for: docker).contains(.ownerInside(path: "/tmp/setuid-{marker}", user: .root)))
        #expect(attempt.checks(for: hardened).contains(.ownerInside(path: "/tmp/setuid-{marker}", user: .agent)))
        #expect(!attempt.checks(for: hardened).contains(.ownerInside(path: "/tmp/setuid-{marker}", user: .root)))
        #expect(!attempt.prepare.isEmpty)
        let directory = NSTemporaryDirectory() + "offswitch-suite-owner-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try """
            name: owner
            category: privilege
            description: x
            script: "true"
            contained_if: [init_alive]
            contained_if_new_privileges: [{owner_inside: {path: /tmp/x, user: admin}}]
            evidence: [execve]
            """.write(toFile: directory + "/01-owner.yaml", atomically: true, encoding: .utf8)
        #expect(throws: OffswitchError.self) { try EscapeAttempt.loadSuite(directory) }
        do { _ = try EscapeAttempt.loadSuite(directory) } catch {
            #expect(error.description.contains("contained_if_new_privileges[0].owner_inside.user: expected user or root, found \"admin\""), "\(error)")
        }
    }

    @Test("docs/security.md's --json example has the fields of a real result")
    func documentedResult() throws {
        let attempts = try EscapeAttempt.loadSuite(try EscapeBattery.suiteDirectory())
        let attempt = try #require(attempts.first { $0.name == "kill-init" })
        let real = EscapeBattery.run(attempt, profile: try ProfileCatalog.load("docker")).json
        let docs = try String(contentsOfFile: try EscapeBattery.suiteDirectory() + "/../../docs/security.md", encoding: .utf8)
        let example = try #require(docs.components(separatedBy: "```json\n").dropFirst().first?.split(separator: "\n").first)
        let documented = try #require(try JSONSerialization.jsonObject(with: Data(example.utf8)) as? [String: Any])
        let actual = try #require(try JSONSerialization.jsonObject(with: Data(real.serialized.utf8)) as? [String: Any])
        #expect(Set(documented.keys) == Set(actual.keys))
        let check = try #require((actual["checks"] as? [[String: Any]])?.first)
        #expect(Set(check.keys) == ["check", "passed", "detail"])
        #expect(actual["contained"] as? Bool == true && actual["visible"] as? Bool == true)
    }

    @Test("--measure: an attempt's cost names a neighbour's latencies, the host's CPU and memory, and the storage filled")
    func measuredCost() throws {
        let attempts = try EscapeAttempt.loadSuite(try EscapeBattery.suiteDirectory())
        let attempt = try #require(attempts.first { $0.name == "fill-tmp" })
        let profile = try ProfileCatalog.load("docker")
        let neighbour = try Neighbour(profile: profile)
        #expect(neighbour.idleMilliseconds > 0)
        let result = EscapeBattery.run(attempt, profile: profile, neighbour: neighbour)
        let cost = try #require(result.cost)
        #expect(cost.neighbourExecs > 0 && cost.neighbourMedianMilliseconds > 0 && cost.neighbourMaxMilliseconds >= cost.neighbourMedianMilliseconds)
        #expect(cost.hostCPUMilliseconds > 0 && cost.hostRSSPeakBytes > 1 << 20 && cost.logBytes > 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.json.serialized.utf8)) as? [String: Any])
        let fields = try #require(json["cost"] as? [String: Any])
        #expect(Set(fields.keys) == ["neighbour_idle_ms", "neighbour_median_ms", "neighbour_max_ms", "neighbour_execs", "neighbour_ratio",
                                     "host_cpu_ms", "host_rss_peak_bytes", "log_bytes", "upper_bytes"])
        #expect(result.text(index: 0, total: 1).contains("cost: neighbour "))
    }
}

/// `limit_hit: cpu` on recorded cgroup files, without root: throttled passes, a quota never
/// reached passes only when the group's CPU time stayed within it, no quota fails.
@Suite("The CPU quota check")
struct CPUQuotaCheckTests {
    private func group(_ files: [String: String]) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cpu-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8) }
        return directory
    }

    @Test("Throttled, within the quota, over it, and no quota")
    func cases() throws {
        let v1 = try group(["cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n", "cpu.stat": "nr_periods 30\nnr_throttled 0\n"])
        let v2 = try group(["cpu.stat": "usage_usec 1000\nnr_throttled 0\n"])
        defer { for d in [v1, v2] { try? FileManager.default.removeItem(atPath: d) } }
        // Started 1 s ago with 1000 us used: 0.2 s more is within 0.5 CPUs, 2 s more is not.
        let start = "1000 \(monotonicNanoseconds() - 1_000_000_000)"
        try "usage_usec 201000\nnr_throttled 0\n".write(toFile: v2 + "/cpu.stat", atomically: true, encoding: .utf8)
        let within = CPUQuotaUse.held(since: start, directories: [v1, v2])
        #expect(within.0, "\(within.1)")
        try "usage_usec 2001000\nnr_throttled 0\n".write(toFile: v2 + "/cpu.stat", atomically: true, encoding: .utf8)
        let over = CPUQuotaUse.held(since: start, directories: [v1, v2])
        #expect(!over.0, "\(over.1)")
        try "nr_periods 30\nnr_throttled 4\n".write(toFile: v1 + "/cpu.stat", atomically: true, encoding: .utf8)
        let throttled = CPUQuotaUse.held(since: start, directories: [v1, v2])
        #expect(throttled.0 && throttled.1.contains("throttled 4 times at its quota of 0.50 CPUs"), "\(throttled.1)")
        let none = CPUQuotaUse.held(since: start, directories: [v2])
        #expect(!none.0 && none.1.hasPrefix("no CPU quota"), "\(none.1)")
    }
}
