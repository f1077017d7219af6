import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// A client of the daemon's socket names sandboxes, bundled scenarios, agents and profiles, never a
/// host path: what the daemon (root) can read is not what its clients can.
@Suite("offswitchd reads no host path a client names", needsRoot)
struct HostPathTests {
    @Test("dir: roots only from --allow-rootfs: dir:/ and others are refused naming the field and path; an allowed one works")
    func rootfsAllowlist() throws {
        let daemon = try DaemonHarness()
        let allowed = daemon.directory + "/root", neighbour = daemon.directory + "/other"
        for directory in [allowed + "/etc", allowed + "/tmp", neighbour + "/etc"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try "from-the-allowed-root\n".write(toFile: allowed + "/etc/marker", atomically: true, encoding: .utf8)
        // A symlink to the allowed directory names it too: paths are compared resolved.
        try FileManager.default.createSymbolicLink(atPath: daemon.directory + "/link", withDestinationPath: allowed)
        try daemon.start(extra: ["--allow-rootfs", allowed])

        for refused in ["/", "/etc", neighbour, allowed + "/etc", "/nonexistent/root"] {
            let reply = try daemon.curl("POST", "/v1/sandboxes", json: ["rootfs": "dir:" + refused])
            #expect(reply.status == 403 && reply.errorCode == "rootfs_not_allowed", "\(refused): \(reply.text)")
            let message = (reply.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.hasPrefix("rootfs: dir:\(refused) ") && message.contains(allowed), "\(message)")
        }
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)

        let created = try daemon.curl("POST", "/v1/sandboxes", json: ["rootfs": "dir:" + daemon.directory + "/link"])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        #expect(created.json["rootfs"] as? String == "dir:" + allowed, "the sandbox is built from the resolved directory")
        let marker = try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=/etc/marker&user=root")
        #expect(marker.status == 200 && marker.text == "from-the-allowed-root\n", "\(marker.text)")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204)
    }

    @Test("Without --allow-rootfs no dir: root is accepted; the host's /etc/shadow stays out of reach")
    func noDirectoryRoots() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let reply = try daemon.curl("POST", "/v1/sandboxes", json: ["rootfs": "dir:/"])
        #expect(reply.status == 403 && reply.errorCode == "rootfs_not_allowed", "\(reply.text)")
        #expect(reply.text.contains("none is allowed"), "\(reply.text)")
        // The CLI through the daemon gets the same answer, and says how to go on.
        let cli = try CLIClientTests.offswitch(["sandbox", "run", "--rootfs", "dir:/", "--", "cat", "/etc/shadow"], socket: daemon.socket)
        #expect(cli.status != 0 && cli.stdout.isEmpty && cli.stderr.contains("--allow-rootfs"), "\(cli.stderr)")
    }

    @Test("A trial's profile is a bundled profile's name: a .yaml file in the daemon's directory is not read", arguments: ["/v1/trials", "/v1/sandboxes"])
    func trialProfileNames(route: String) throws {
        let daemon = try DaemonHarness()
        // A profile that would load, where the daemon runs: a name ending in .yaml would be read as a file there.
        let bundled = try String(contentsOfFile: try Self.profilesDirectory() + "/docker.yaml", encoding: .utf8)
        try bundled.write(toFile: daemon.directory + "/planted.yaml", atomically: true, encoding: .utf8)
        try daemon.start(workingDirectory: daemon.directory)
        for name in ["planted.yaml", "planted.yml", "planted"] {
            let body: [String: Any] = route == "/v1/trials" ? ["agent": "compliant", "profile": name] : ["scenario": "palisade-math", "profile": name]
            let reply = try daemon.curl("POST", route, json: body)
            #expect(reply.status == 400 && reply.errorCode == "invalid_profile", "\(name): \(reply.text)")
        }
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)
    }

    static func profilesDirectory() throws -> String {
        var url = URL(fileURLWithPath: productsDirectory)
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("sandbox-profiles/docker.yaml").path) {
            url.deleteLastPathComponent()
        }
        return url.appendingPathComponent("sandbox-profiles").path
    }
}
