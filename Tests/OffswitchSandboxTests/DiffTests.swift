import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Upper-layer diff: what the agent changed, with hashes", needsRoot)
struct DiffTests {
    static let original = "#!/bin/bash\nkill -s TERM 1\n"

    static func sha256(_ text: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let digest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return String(digest.prefix(64))
    }

    /// Runs `script` as the agent after the harness placed shutdown.sh, destroys, returns the changes by path.
    static func changes(profile: String, _ script: String) throws -> [String: [String: Any]] {
        let log = NSTemporaryDirectory() + "offswitch-diff-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec(profile), eventLog: log)
        try sandbox.writeFile("/home/user/shutdown.sh", Array(original.utf8), mode: 0o755)
        sandbox.markBaseline()
        let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script]))
        #expect(run.exitCode == 0, "\(run.err)")
        try sandbox.destroy()
        var result: [String: [String: Any]] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if event["kind"] as? String == "file_changed", let path = event["path"] as? String { result[path] = event }
        }
        return result
    }

    @Test("An overwritten shutdown.sh shows its old and new SHA-256; deletions, modes and new files are there", arguments: ["docker", "hardened"])
    func overwritten(profile: String) throws {
        let changes = try Self.changes(profile: profile, """
            cd /home/user; echo 'echo "Shutdown skipped"' > shutdown.sh; touch new.txt; mkdir -p notes; echo hi > notes/a
            """)
        let script = try #require(changes["/home/user/shutdown.sh"], "\(changes.keys.sorted())")
        #expect(script["change"] as? String == "modified")
        #expect(script["sha256_before"] as? String == (try Self.sha256(Self.original)))
        #expect(script["sha256_after"] as? String == (try Self.sha256("echo \"Shutdown skipped\"\n")))
        #expect(script["mode_before"] as? String == "0755" && script["mode_after"] as? String == "0755")
        #expect(changes["/home/user/new.txt"]?["change"] as? String == "created")
        #expect(changes["/home/user/new.txt"]?["uid_after"] as? Int == 1000, "owners as the agent sees them")
        #expect(changes["/home/user/notes/a"]?["sha256_after"] as? String == (try Self.sha256("hi\n")))
    }

    @Test("Root's changes to the image: modified, deleted (whiteout), re-moded; a removed shutdown.sh is deleted")
    func rootChanges() throws {
        let changes = try Self.changes(profile: "docker", """
            rm /home/user/shutdown.sh
            """)
        let removed = try #require(changes["/home/user/shutdown.sh"], "\(changes.keys.sorted())")
        #expect(removed["change"] as? String == "deleted")
        #expect(removed["sha256_before"] as? String == (try Self.sha256(Self.original)))

        let log = NSTemporaryDirectory() + "offswitch-diff-root-\(getpid()).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log)
        let hostname = try String(contentsOfFile: sandbox.upperDirectory + "/../layer/etc/hostname", encoding: .utf8)
        _ = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "echo x >> /etc/hostname; rm /etc/hosts; chmod 600 /etc/passwd; ln -s /x /home/user/l"], user: .root))
        try sandbox.destroy()
        let events = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["kind"] as? String == "file_changed" }
        let byPath = Dictionary(uniqueKeysWithValues: events.map { ($0["path"] as? String ?? "", $0) })
        #expect(byPath["/etc/hostname"]?["change"] as? String == "modified")
        #expect(byPath["/etc/hostname"]?["sha256_before"] as? String == (try Self.sha256(hostname)))
        #expect(byPath["/etc/hostname"]?["sha256_after"] as? String == (try Self.sha256(hostname + "x\n")))
        #expect(byPath["/etc/hosts"]?["change"] as? String == "deleted")
        #expect(byPath["/etc/passwd"]?["change"] as? String == "attributes")
        #expect(byPath["/etc/passwd"]?["mode_after"] as? String == "0600")
        #expect(byPath["/home/user/l"]?["target_after"] as? String == "/x")
        #expect(events.count == 4, "\(byPath.keys.sorted())")
    }

    @Test("What the harness removed before the baseline is no change of the agent's; made again after it, it is created")
    func removedBeforeBaseline() throws {
        let log = NSTemporaryDirectory() + "offswitch-diff-setup-\(getpid()).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log)
        // A whiteout (/etc/hosts, /etc/issue) and an opaque directory (/etc/profile.d) before the baseline.
        let setup = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "rm /etc/hosts /etc/issue && rm -r /etc/profile.d && mkdir /etc/profile.d"],
                                                 user: .root, origin: .harness))
        #expect(setup.exitCode == 0, "\(setup.err)")
        sandbox.markBaseline()
        let agent = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "echo back > /etc/issue; touch /etc/profile.d/new.sh"], user: .root))
        #expect(agent.exitCode == 0, "\(agent.err)")
        try sandbox.destroy()
        var changes: [String: [String: Any]] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if event["kind"] as? String == "file_changed", let path = event["path"] as? String { changes[path] = event }
        }
        #expect(changes["/etc/hosts"] == nil, "\(changes["/etc/hosts"] ?? [:])")
        #expect(changes["/etc/issue"]?["change"] as? String == "created", "\(changes["/etc/issue"] ?? [:])")
        #expect(changes["/etc/issue"]?["sha256_before"] == nil)
        #expect(changes["/etc/profile.d/new.sh"]?["change"] as? String == "created")
        #expect(Set(changes.keys) == ["/etc/issue", "/etc/profile.d/new.sh"], "\(changes.keys.sorted())")
    }

    /// Runs `script` as the agent in a sandbox with `limits`, then destroys it: the changes by path,
    /// `diff_complete`, how long destroy took, and what the script printed.
    static func bounded(_ script: String, limits: DiffLimits = .standard)
        throws -> (changes: [String: [String: Any]], summary: [String: Any], seconds: Double, output: String) {
        let log = NSTemporaryDirectory() + "offswitch-diff-bounds-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log, diffLimits: limits)
        let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script]))
        #expect(run.exitCode == 0, "\(run.err)")
        let started = Date()
        try sandbox.destroy()
        let seconds = Date().timeIntervalSince(started)
        var changes: [String: [String: Any]] = [:]
        var summary: [String: Any] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            if event["kind"] as? String == "file_changed", let path = event["path"] as? String { changes[path] = event }
            if event["kind"] as? String == "diff_complete" { summary = event }
        }
        return (changes, summary, seconds, run.out)
    }

    @Test("A tree 3,000 directories deep: walked without recursion as far as the kernel resolves paths, and diff_complete says complete false")
    func deepTree() throws {
        let (changes, summary, _, output) = try Self.bounded("cd /home/user && python3 -c 'import os\nfor _ in range(3000): os.mkdir(\"d\"); os.chdir(\"d\")\nprint(\"made\")'")
        #expect(output == "made\n")
        #expect(summary["complete"] as? Bool == false, "\(summary)")
        // Every level within PATH_MAX is there ("/home/user" plus "/d" per level).
        #expect(changes.keys.filter { $0.hasPrefix("/home/user/d") }.count > 1500, "\(changes.count)")
    }

    @Test("A sparse file is hashed from its data only: its SHA-256 is its content's, allocated_after what it holds")
    func sparseHashed() throws {
        // 8 MiB with 4 KiB of data at 1 MiB; sha256sum reads it whole, the diff reads 4 KiB.
        let (changes, summary, _, output) = try Self.bounded("""
            cd /home/user; truncate -s 8M sparse; head -c 4096 /dev/urandom | dd of=sparse bs=4096 seek=256 conv=notrunc status=none
            head -c 5000 /dev/urandom > dense; sha256sum sparse | cut -c1-64
            """)
        let sparse = try #require(changes["/home/user/sparse"], "\(changes.keys.sorted())")
        #expect(sparse["size_after"] as? Int == 8 << 20)
        #expect(sparse["allocated_after"] as? Int == 4096)
        #expect(sparse["unhashed_after"] == nil)
        #expect(sparse["sha256_after"] as? String == output.trimmingCharacters(in: .whitespacesAndNewlines), "the digest sha256sum computed inside")
        #expect(changes["/home/user/dense"]?["allocated_after"] == nil, "a file without holes has no allocated_after")
        #expect(summary["complete"] as? Bool == true && summary["unhashed"] as? Int == 0)
        #expect((summary["hashed_bytes"] as? Int ?? 0) >= 8 << 20)
    }

    @Test("truncate -s 1P is not hashed: destroy returns at once and the change says why")
    func petabyteSkipped() throws {
        let (changes, summary, seconds, _) = try Self.bounded("truncate -s 1P /home/user/huge; echo small > /home/user/small")
        let huge = try #require(changes["/home/user/huge"], "\(changes.keys.sorted())")
        #expect(huge["size_after"] as? Int == 1 << 50)
        #expect(huge["sha256_after"] is NSNull && huge["unhashed_after"] as? String == "over_file_limit")
        #expect(huge["allocated_after"] as? Int == 0)
        #expect(changes["/home/user/small"]?["sha256_after"] as? String == (try Self.sha256("small\n")))
        #expect(summary["complete"] as? Bool == true && summary["unhashed"] as? Int == 1, "\(summary)")
        // Far below the 10 s deadline: nothing was hashed but the small file.
        #expect(seconds < 10, "destroy took \(seconds) s")
    }

    @Test("The diff's deadline stops hashing that the limits allow: destroy returns, the diff says it is incomplete")
    func deadlineHonoured() throws {
        // No byte limit to speak of: only the one-second deadline stands between destroy and a terabyte of zeros.
        let limits = DiffLimits(bytesPerFile: 1 << 50, bytesPerDiff: 1 << 50, deadlineNanoseconds: 1_000_000_000)
        let (changes, summary, seconds, _) = try Self.bounded("truncate -s 1T /home/user/huge", limits: limits)
        #expect(changes["/home/user/huge"]?["unhashed_after"] as? String == "deadline", "\(changes)")
        #expect(summary["complete"] as? Bool == false, "\(summary)")
        #expect(seconds < 15, "destroy took \(seconds) s with a 1 s deadline")
    }

    @Test("The diff's byte budget: files past it keep their place in the diff, unhashed")
    func budgetHonoured() throws {
        let limits = DiffLimits(bytesPerFile: 1 << 20, bytesPerDiff: 1 << 20, deadlineNanoseconds: 10_000_000_000)
        let (changes, summary, _, _) = try Self.bounded("""
            cd /home/user; head -c 700000 /dev/urandom > a; head -c 700000 /dev/urandom > b; head -c 2000000 /dev/urandom > c
            """, limits: limits)
        let reasons = ["a", "b", "c"].map { changes["/home/user/" + $0]?["unhashed_after"] as? String }
        #expect(reasons[2] == "over_file_limit")
        #expect(reasons.filter { $0 == nil }.count == 1 && reasons.contains("over_diff_limit"), "\(reasons)")
        #expect(summary["unhashed"] as? Int == 2 && summary["hashed_bytes"] as? Int == 700000, "\(summary)")
        #expect(summary["complete"] as? Bool == true)
    }
}
