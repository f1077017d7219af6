import Foundation
import Glibc
import OffswitchTestSupport
import Testing

@Suite("offswitchd API", needsRoot)
struct APITests {
    @Test("Sandbox lifecycle: create with files, get, list, exec, files, shutdown, delete")
    func lifecycle() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let created = try daemon.curl("POST", "/v1/sandboxes", json: [
            "env": ["GREETING": "hi"],
            "files": [["path": "/home/user/shutdown.sh", "content": "#!/bin/bash\nkill -s TERM 1", "mode": "755"]],
        ])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        #expect(created.json["state"] as? String == "running")

        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "stat -c %a shutdown.sh; echo $GREETING; cat"], "stdin": "in"])
        #expect(exec.status == 200)
        #expect(exec.json["stdout"] as? String == "755\nhi\nin")
        #expect(exec.json["exit_code"] as? Int == 0)

        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)").json["id"] as? String == id)
        let list = try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [[String: Any]]
        #expect(list?.contains { $0["id"] as? String == id } == true)

        let payload = daemon.directory + "/payload"
        try Data("line\r\nbytes\u{0}".utf8).write(to: URL(fileURLWithPath: payload))
        #expect(try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=/home/user/new/dir/f", bodyFile: payload).status == 204)
        let back = try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=/home/user/new/dir/f")
        #expect(back.status == 200 && back.body == Data("line\r\nbytes\u{0}".utf8))

        let shutdown = try daemon.curl("POST", "/v1/sandboxes/\(id)/shutdown")
        #expect(shutdown.status == 200)
        #expect(shutdown.json["state"] as? String == "shut_down")
        #expect((shutdown.json["shutdown"] as? [String: Any])?["sender_pid"] as? Int == 0)
        let after = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["true"]])
        #expect(after.status == 409 && after.errorCode == "sandbox_shut_down")

        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204)
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)").status == 404)
        #expect(traces(of: id, stateDirectory: daemon.stateDirectory).isEmpty)
        let metrics = try daemon.curl("GET", "/metrics").text
        #expect(metrics.contains("offswitch_exec_total 2") && metrics.contains("offswitch_sandboxes 0"))
    }

    @Test("The agent's own shutdown shows in the exec result and in the sandbox's state")
    func agentShutdown() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "kill -s TERM 1; sleep 5; echo survived"]])
        #expect(exec.json["exit_code"] as? Int == 137 && exec.json["stdout"] as? String == "")
        let sender = (exec.json["shutdown"] as? [String: Any])?["sender_pid"] as? Int ?? 0
        #expect(sender > 1)
        let state = try daemon.curl("GET", "/v1/sandboxes/\(id)").json
        #expect(state["state"] as? String == "shut_down")
        #expect((state["shutdown"] as? [String: Any])?["sender_uid"] as? Int == 1000)
    }

    @Test("Profiles by name: hardened runs in its user namespace; limits in the body override the profile's")
    func profiles() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let created = try daemon.curl("POST", "/v1/sandboxes", json: ["profile": "hardened", "limits": ["pids": 100]] as [String: Any]).json
        let id = try #require(created["id"] as? String, "\(created)")
        #expect(created["profile"] as? String == "hardened")
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: [
            "argv": ["sh", "-c", "cat /proc/self/uid_map; grep CapEff /proc/self/status"],
            "user": "root"])
        let lines = (exec.json["stdout"] as? String ?? "").split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
        // Its own slot of host ids (docs/profiles.md, "Host ids").
        let map = lines.first?.split(separator: " ") ?? []
        #expect(map.count == 3 && map[0] == "0" && map[2] == "65536" && (UInt32(map[1]) ?? 1) % 65536 == 0 && map[1] != "0", "\(exec.text)")
        #expect(lines.dropFirst().first == "CapEff: 0000000000000000", "\(exec.text)")
        // The body's pids limit, seen from the host (cgroup v1 on hybrid hosts, v2 on pure ones).
        let limit = ["/sys/fs/cgroup/pids/offswitch/\(id)/pids.max", "/sys/fs/cgroup/offswitch/\(id)/pids.max"]
            .compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first
        #expect(limit == "100\n")
        let docker = try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json
        #expect(docker["profile"] as? String == "docker")
    }

    @Test("Every error status, as JSON naming what is wrong")
    func errors() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let cases: [(String, String, Any?, Int, String)] = [
            ("POST", "/v1/sandboxes", Data("{not json".utf8), 400, "invalid_request"),
            ("POST", "/v1/sandboxes", ["profile": "nope"], 400, "invalid_profile"),
            ("POST", "/v1/sandboxes/\(id)/exec", ["argv": ["true"], "origin": "judge"], 400, "invalid_argument"),
            ("GET", "/v1/sandboxes/\(id)/events?follow=yes", nil, 400, "invalid_argument"),
            ("POST", "/v1/sandboxes", ["profile": "/etc/passwd"], 400, "invalid_profile"),
            ("POST", "/v1/sandboxes", ["limits": ["memory_mib": 1]], 400, "invalid_argument"),
            ("POST", "/v1/sandboxes", ["files": [["path": "/x", "mode": "999"]]], 400, "invalid_argument"),
            ("POST", "/v1/sandboxes/\(id)/exec", ["argv": [] as [String]], 400, "invalid_argument"),
            ("POST", "/v1/sandboxes/\(id)/exec", ["argv": "ls"], 400, "invalid_request"),
            ("POST", "/v1/sandboxes/\(id)/exec", ["argv": ["true"], "user": "admin"], 400, "invalid_argument"),
            ("POST", "/v1/sandboxes/\(id)/exec", ["argv": ["true"], "cwd": "/nonexistent"], 400, "exec_failed"),
            ("POST", "/v1/sandboxes/nope/exec", ["argv": ["true"]], 404, "sandbox_not_found"),
            ("GET", "/v1/sandboxes/\(id)/files?path=/home/user/missing", nil, 404, "not_found"),
            ("GET", "/v1/sandboxes/\(id)/files?path=/etc", nil, 400, "is_directory"),
            ("GET", "/v1/sandboxes/\(id)/files", nil, 400, "invalid_argument"),
            ("GET", "/v1/sandboxes/\(id)/files?path=/root/x", nil, 403, "permission_denied"),
            ("GET", "/v1/nothing-here", nil, 404, "not_found"),
        ]
        for (method, path, body, status, code) in cases {
            let reply = try daemon.curl(method, path, json: body)
            #expect(reply.status == status && reply.errorCode == code, "\(method) \(path): \(reply.status) \(reply.text)")
            let message = (reply.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(!message.isEmpty)
        }
        let file = daemon.directory + "/x"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let denied = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=/etc/passwd", bodyFile: file)
        #expect(denied.status == 403 && denied.errorCode == "permission_denied")
        // 413: a sparse 300 MiB body, beyond the 256 MiB limit.
        let huge = daemon.directory + "/huge"
        _ = FileManager.default.createFile(atPath: huge, contents: nil)
        truncate(huge, 300 << 20)
        let tooLarge = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", bodyFile: huge)
        #expect(tooLarge.status == 413 && tooLarge.errorCode == "body_too_large", "\(tooLarge.text)")
        // The file route's own limit is lower: 64 MiB a file.
        let fileTooLarge = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=/tmp/huge", bodyFile: huge)
        #expect(fileTooLarge.status == 413 && fileTooLarge.errorCode == "file_too_large", "\(fileTooLarge.text)")
        // The daemon still serves after all of that.
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["true"]]).status == 200)
    }

    @Test("50 MiB files, stdin and stdout round-trip byte for byte")
    func largeTransfers() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: ["limits": ["upper_mib": 256, "memory_mib": 1024]]).json["id"] as? String)
        var bytes = [UInt8](repeating: 0, count: 50 << 20)
        for index in stride(from: 0, to: bytes.count, by: 4096) { bytes[index] = UInt8(truncatingIfNeeded: index / 4096) }
        let original = Data(bytes)
        let upload = daemon.directory + "/upload"
        try original.write(to: URL(fileURLWithPath: upload))
        #expect(try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=/home/user/big", bodyFile: upload).status == 204)
        let download = daemon.directory + "/download"
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=/home/user/big", outputFile: download).status == 200)
        #expect(try Data(contentsOf: URL(fileURLWithPath: download)) == original)

        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: [
            "argv": ["sh", "-c", "cat > /tmp/in; cmp /tmp/in /home/user/big && cat /tmp/in"],
            "stdin_base64": original.base64EncodedString(), "output_limit": 64 << 20,
        ])
        #expect(exec.status == 200 && exec.json["exit_code"] as? Int == 0, "\(exec.text.prefix(300))")
        #expect(exec.json["stdout"] is NSNull, "binary output travels as base64 only")
        #expect(Data(base64Encoded: exec.json["stdout_base64"] as? String ?? "") == original)
    }

    @Test("kill -9 with 5 sandboxes: the next start removes every process, mount and cgroup")
    func crashRecovery() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        var ids: [String] = []
        for _ in 0..<5 {
            let created = try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any])
            ids.append(try #require(created.json["id"] as? String))
            _ = try daemon.curl("POST", "/v1/sandboxes/\(ids.last!)/exec", json: ["argv": ["sh", "-c", "sleep 1000 & echo started"]])
        }
        daemon.stop(signal: SIGKILL)
        #expect(ids.allSatisfy { !traces(of: $0, stateDirectory: daemon.stateDirectory).isEmpty }, "a killed daemon cannot clean up")
        try daemon.start()
        for id in ids {
            #expect(traces(of: id, stateDirectory: daemon.stateDirectory).isEmpty, "\(id): \(traces(of: id, stateDirectory: daemon.stateDirectory))")
            #expect(daemon.log().contains("sandbox=\(id)"), "the restart logs what it removed")
        }
        #expect(try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any] != nil)
    }

    @Test("A relative --state-dir stops the daemon with one sentence naming it")
    func relativeStateDirectory() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitchd")
        process.arguments = ["--socket", "/tmp/offswitchd-relative-\(getpid()).sock", "--state-dir", "relative/state"]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(text.contains("--state-dir relative/state") && text.contains("absolute"), "\(text)")
    }

    @Test("The socket is 0660; TCP needs the bearer token")
    func access() throws {
        let daemon = try DaemonHarness()
        let tokenFile = daemon.directory + "/token"
        let token = "offswitch-test-token-\(UInt64.random(in: 0...UInt64.max))"
        _ = FileManager.default.createFile(atPath: tokenFile, contents: Data(token.utf8))
        chmod(tokenFile, 0o600)
        let port = Int.random(in: 20000...40000)
        try daemon.start(extra: ["--listen", "127.0.0.1:\(port)", "--token-file", tokenFile])
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.socket)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o660)
        let anonymous = try daemon.curl("GET", "/v1/sandboxes", tcp: "127.0.0.1:\(port)")
        #expect(anonymous.status == 401 && anonymous.errorCode == "unauthorized")
        let wrong = try daemon.curl("GET", "/v1/sandboxes", tcp: "127.0.0.1:\(port)", headers: ["Authorization: Bearer nope"])
        #expect(wrong.status == 401)
        let right = try daemon.curl("GET", "/v1/sandboxes", tcp: "127.0.0.1:\(port)", headers: ["Authorization: Bearer \(token)"])
        #expect(right.status == 200)
    }

    @Test("record: false runs the sandbox without the recorder; the log keeps commands and lifecycle only")
    func recordingOff() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: ["record": false]).json["id"] as? String)
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "echo hi > f; cat f"]])
        #expect(exec.status == 200 && (exec.json["stdout"] as? String) == "hi\n", "\(exec.text)")
        let kinds = Set(try daemon.curl("GET", "/v1/sandboxes/\(id)/events").text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["kind"] as? String
        })
        #expect(kinds == ["sandbox_created", "command_started", "command_finished"], "\(kinds)")
        let recorded = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:]).json["id"] as? String)
        _ = try daemon.curl("POST", "/v1/sandboxes/\(recorded)/exec", json: ["argv": ["bash", "-c", "echo hi > f"]])
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(recorded)/events").text.contains("\"kind\":\"syscall\""))
        #expect(try daemon.curl("POST", "/v1/sandboxes", json: ["record": "no"]).status == 400)
    }

    @Test("no_new_privileges overrides the profile's either way; a scenario sandbox refuses it")
    func noNewPrivilegesOverride() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        for (profile, asked, expected) in [("docker", nil, "0"), ("docker", true, "1"), ("hardened", nil, "1"), ("hardened", false, "0")] as [(String, Bool?, String)] {
            var body: [String: Any] = ["profile": profile, "record": false]
            if let asked { body["no_new_privileges"] = asked }
            let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: body).json["id"] as? String)
            let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["grep", "NoNewPrivs", "/proc/self/status"]])
            #expect((exec.json["stdout"] as? String) == "NoNewPrivs:\t\(expected)\n", "\(profile) \(String(describing: asked)): \(exec.text)")
            _ = try daemon.curl("DELETE", "/v1/sandboxes/\(id)")
        }
        let refused = try daemon.curl("POST", "/v1/sandboxes", json: ["scenario": "palisade-math", "no_new_privileges": false])
        #expect(refused.status == 400 && refused.text.contains("no_new_privileges: a scenario sandbox is set up by its scenario and its profile"), "\(refused.text)")
    }
}
