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
}
