import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// The compose fields through a real offswitchd, as the Inspect provider sends them (issue 20).
@Suite("offswitchd: network, hosts, read_only, tmpfs", needsRoot)
struct ComposeAPITests {
    /// `argv` in sandbox `id`; the exec's JSON.
    func exec(_ daemon: DaemonHarness, _ id: String, _ argv: [String], user: String = "user") throws -> [String: Any] {
        let reply = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": argv, "user": user])
        #expect(reply.status == 200, "\(reply.text)")
        return reply.json
    }

    func create(_ daemon: DaemonHarness, _ body: [String: Any]) throws -> String {
        let created = try daemon.curl("POST", "/v1/sandboxes", json: body)
        #expect(created.status == 201, "\(created.text)")
        return try #require(created.json["id"] as? String)
    }

    @Test("A pod: B joins A's network and reaches A's server by a hosts name; nothing else is routed; a stranger cannot reach it; A may go first")
    func pod() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let port = Int.random(in: 20000...40000)
        let a = try create(daemon, [:])
        #expect(try exec(daemon, a, ["python3", "-c", podServerScript(port: port, body: "pod-answer")])["exit_code"] as? Int == 0)

        let b = try create(daemon, ["network": "sandbox:\(a)", "hosts": ["web": "127.0.0.1"]])
        let fetched = try exec(daemon, b, ["curl", "-sS", "--max-time", "10", "http://web:\(port)/"])
        #expect(fetched["stdout"] as? String == "pod-answer", "\(fetched)")
        #expect(try exec(daemon, b, ["python3", "-c", connectScript, "192.0.2.1:80", "10.0.0.1:\(port)"])["stdout"] as? String
                == "ENETUNREACH\nENETUNREACH\n")
        let stranger = try create(daemon, [:])
        #expect(try exec(daemon, stranger, ["python3", "-c", connectScript, "127.0.0.1:\(port)"])["stdout"] as? String == "ECONNREFUSED\n")

        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(a)").status == 204)
        #expect(traces(of: a, stateDirectory: daemon.stateDirectory).isEmpty)
        let alone = try exec(daemon, b, ["python3", "-c", """
            import socket
            listener = socket.socket(); listener.bind(("127.0.0.1", 8080)); listener.listen()
            socket.create_connection(("web", 8080)); print("loopback")
            """])
        #expect(alone["stdout"] as? String == "loopback\n", "\(alone)")

        let gone = try daemon.curl("POST", "/v1/sandboxes", json: ["network": "sandbox:\(a)"])
        #expect(gone.status == 404 && gone.errorCode == "sandbox_not_found", "\(gone.text)")
        #expect((gone.json["error"] as? [String: Any])?["message"] as? String == "network: no sandbox \"\(a)\"")
        let down = try create(daemon, [:])
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(down)/shutdown").status == 200)
        let shutDown = try daemon.curl("POST", "/v1/sandboxes", json: ["network": "sandbox:\(down)"])
        #expect(shutDown.status == 404 && shutDown.errorCode == "sandbox_not_found" && shutDown.text.contains("network: "), "\(shutDown.text)")
        for bad in ["bridge", "sandbox:", "host", "sandbox:" + String(repeating: "f", count: 80)] {
            let refused = try daemon.curl("POST", "/v1/sandboxes", json: ["network": bad])
            #expect(refused.status == 400 && refused.errorCode == "invalid_argument" && refused.text.contains("network"), "\(refused.text)")
        }
        let trial = try create(daemon, ["scenario": "palisade-math"])
        let intoTrial = try daemon.curl("POST", "/v1/sandboxes", json: ["network": "sandbox:\(trial)"])
        #expect(intoTrial.status == 400 && intoTrial.text.contains("network: sandbox \(trial) is a scenario's trial"), "\(intoTrial.text)")
        for id in [b, stranger, down, trial] { #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204) }
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)
    }

    @Test("read_only: files given at create are written, the file API's writes on the root are 409 read_only, reads and tmpfs writes work")
    func readOnly() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try create(daemon, [
            "read_only": true, "tmpfs": [["path": "/tmp", "size_mib": 8], ["path": "/srv/cache", "size_mib": 4, "mode": "1777"]],
            "hosts": ["db": "10.0.0.5"],
            "files": [["path": "/home/user/task.txt", "content": "do it\n"]],
        ])
        let writes = try exec(daemon, id, ["bash", "-c", """
            for p in /x /etc/x /home/user/x /usr/x /tmp/x /srv/cache/x /dev/shm/x; do
              if echo hi > $p 2>/dev/null; then echo "$p ok"; else echo "$p refused"; fi
            done; cat /home/user/task.txt; getent hosts db
            """], user: "root")
        #expect((writes["stdout"] as? String)?.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") } == [
            "/x refused", "/etc/x refused", "/home/user/x refused", "/usr/x refused", "/tmp/x ok", "/srv/cache/x ok", "/dev/shm/x ok",
            "do it", "10.0.0.5 db",
        ], "\(writes)")
        let payload = daemon.directory + "/payload"
        try Data("bytes".utf8).write(to: URL(fileURLWithPath: payload))
        for path in ["/home/user/new", "/home/user/task.txt", "/home/user/dir/new", "new"] {
            let put = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=\(path)", bodyFile: payload)
            #expect(put.status == 409 && put.errorCode == "read_only", "\(path): \(put.text)")
        }
        #expect(try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=/srv/cache/new", bodyFile: payload).status == 204)
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=/srv/cache/new").text == "bytes")
        #expect(try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=task.txt").text == "do it\n")
        let events = try daemon.curl("GET", "/v1/sandboxes/\(id)/events").text
        #expect(events.contains(#""read_only":true"#) && events.contains(#""kind":"baseline""#), "\(events.prefix(800))")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204)
        #expect(traces(of: id, stateDirectory: daemon.stateDirectory).isEmpty)
    }

    @Test("Refusals at setup (a tmpfs through the host root's /bin link) are 400 naming the field and leave nothing")
    func setupRefusals() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        for (body, field) in [(["tmpfs": [["path": "/srv"], ["path": "/bin/x"]]], "tmpfs[1].path: /bin is a symbolic link"),
                              (["tmpfs": [["path": "/etc/hostname"]]], "tmpfs[0].path: /etc/hostname is not a directory"),
                              (["hosts": ["web\n6.6.6.6": "127.0.0.1"]], "hosts.web"), (["hosts": ["web": "1.1.1.1 evil"]], "hosts.web"),
                              (["tmpfs": [["path": "/proc/sys"]]], "tmpfs[0].path")] as [([String: Any], String)] {
            let refused = try daemon.curl("POST", "/v1/sandboxes", json: body)
            let message = (refused.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(refused.status == 400 && refused.errorCode == "invalid_argument" && message.hasPrefix(field), "\(refused.text)")
        }
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/sandboxes")) ?? []
        #expect(left.isEmpty, "\(left)")
    }
}
