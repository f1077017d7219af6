import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("File watcher: fanotify on the sandbox's filesystems", needsRoot)
struct FileWatcherTests {
    static func fileEvents(_ script: String, user: SandboxUser = .agent,
                           backlogLimit: Int64 = FileWatcher.defaultBacklogLimit) throws -> [[String: Any]] {
        let log = NSTemporaryDirectory() + "offswitch-files-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log, fileBacklogLimit: backlogLimit)
        let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script], user: user, timeoutSeconds: 120))
        #expect(run.exitCode == 0, "\(run.err)")
        try sandbox.destroy()
        return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { ["file", "watching", "watch_failed", "file_events_lost"].contains($0["kind"] as? String) }
    }

    @Test("Create, write, rename (old and new name), chmod, delete: paths as the agent sees them, with the writer")
    func operations() throws {
        // The shell lingers so that the watcher finds its writer alive even on a loaded machine.
        let events = try Self.fileEvents("cd; echo hi > a; mv a b; chmod 600 b; mkdir d; rm b; rmdir d; echo t > /tmp/t; echo s > /dev/shm/s; sleep 1")
        #expect(events.first?["kind"] as? String == "watching")
        #expect(events.first?["filesystems"] as? [String] == ["/", "/usr", "/tmp", "/dev/shm"])
        func find(_ operation: String, _ path: String) -> [String: Any]? {
            events.first { ($0["operations"] as? [String] ?? []).contains(operation) && $0["path"] as? String == path }
        }
        let created = try #require(find("create", "/home/user/a"), "\(events)")
        #expect(created["comm"] as? String == "bash" && (created["pid"] as? Int ?? 0) > 1 && created["uid"] as? Int == 1000)
        #expect(find("close_write", "/home/user/a") != nil)
        let renamed = try #require(find("rename", "/home/user/b"))
        #expect(renamed["old_path"] as? String == "/home/user/a")
        #expect(find("attrib", "/home/user/b") != nil)
        #expect(find("create", "/home/user/d")?["directory"] as? Bool == true)
        #expect(find("delete", "/home/user/b") != nil)
        #expect(find("delete", "/home/user/d")?["directory"] as? Bool == true)
        #expect(find("create", "/tmp/t") != nil)
        #expect(find("create", "/dev/shm/s") != nil)
    }

    @Test("10,000 file creations in a loop: 10,000 create events, or a loss event", .timeLimit(.minutes(5)))
    func manyCreations() throws {
        let events = try Self.fileEvents("mkdir -p /tmp/many && cd /tmp/many && for ((i = 0; i < 10000; i++)); do : > f$i; done")
        let lost = events.filter { $0["kind"] as? String == "file_events_lost" }
        let created = Set(events.compactMap { event -> String? in
            guard (event["operations"] as? [String] ?? []).contains("create"), let path = event["path"] as? String,
                  path.hasPrefix("/tmp/many/f") else { return nil }
            return path
        })
        #expect(created.count == 10_000 || !lost.isEmpty, "\(created.count) creations seen, no loss event")
        #expect(lost.isEmpty, "the queue is unlimited: nothing should be lost")
    }

    @Test("A backlog over the limit is counted, not resolved: logged creates plus counted ones are all 10,000",
          .timeLimit(.minutes(5)))
    func shedBacklog() throws {
        // 256 bytes is two or three events: every pause of the watcher leaves more than that.
        let events = try Self.fileEvents("mkdir -p /tmp/many && cd /tmp/many && for ((i = 0; i < 10000; i++)); do : > f$i; done",
                                         backlogLimit: 256)
        let lost = events.filter { $0["kind"] as? String == "file_events_lost" }
        #expect(!lost.isEmpty, "a 256-byte limit was never reached")
        let created = Set(events.compactMap { event -> String? in
            guard event["kind"] as? String == "file", (event["operations"] as? [String] ?? []).contains("create"),
                  let path = event["path"] as? String, path.hasPrefix("/tmp/many/f") else { return nil }
            return path
        })
        let counted = lost.reduce(0) { $0 + ((($1["operations"] as? [String: Any])?["create"] as? Int) ?? 0) }
        // mkdir's own create is among the counted ones when it was dropped.
        let mkdirLogged = events.contains { $0["path"] as? String == "/tmp/many" && ($0["operations"] as? [String] ?? []).contains("create") }
        #expect(created.count + counted == 10_000 + (mkdirLogged ? 0 : 1), "\(created.count) logged + \(counted) counted")
        for event in lost {
            #expect(event["reason"] as? String == "backlog" && (event["count"] as? Int ?? 0) > 0)
            #expect((event["backlog_bytes"] as? Int ?? 0) > 256 && event["limit_bytes"] as? Int == 256)
        }
        // The documented example has exactly the fields of a real one.
        let text = try String(contentsOfFile: DocsTests.docsDirectory() + "/events.md", encoding: .utf8)
        let section = try #require(text.components(separatedBy: "### `file_events_lost`").dropFirst().first)
        let line = String(try #require(section.components(separatedBy: "```json\n").dropFirst().first).prefix { $0 != "\n" })
        let example = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let real = try #require(lost.first)
        #expect(Set(example.keys) == Set(real.keys))
        #expect(Set((example["operations"] as? [String: Any] ?? [:]).keys) == Set((real["operations"] as? [String: Any] ?? [:]).keys))
    }
}
