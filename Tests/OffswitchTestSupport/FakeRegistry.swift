import Foundation
import Glibc

/// A registry that answers what a test tells it to, on 127.0.0.1: each path (`/v2/x/y/manifests/1`)
/// gets its status, headers (sent as given, an empty Content-Type included) and body; any other,
/// 404. For the answers a real registry never gives: a hostile one's. In Python, like the token
/// service; the paths it was asked for are in `requests`.
public final class FakeRegistry {
    public struct Answer: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public init(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    public let directory: String
    public let port: Int
    private var pid: pid_t = 0

    public var host: String { "127.0.0.1:\(port)" }

    /// `routes` may name the port as `PORT` in a header's value (a redirect to itself).
    public init(_ routes: [String: Answer]) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-fake-registry-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try TestRegistry.freePort()
        var table: [String: Any] = [:]
        for (path, answer) in routes {
            table[path] = ["status": answer.status, "headers": answer.headers.map { [$0.0, $0.1.replacingOccurrences(of: "PORT", with: "\(port)")] },
                           "body": Data(answer.body).base64EncodedString()]
        }
        try JSONSerialization.data(withJSONObject: table).write(to: URL(fileURLWithPath: directory + "/routes.json"))
        try Self.server.write(toFile: directory + "/server.py", atomically: true, encoding: .utf8)
        pid = try TestRegistry.spawn(["/usr/bin/python3", directory + "/server.py", "\(port)", directory], log: directory + "/server.log")
        try TestRegistry.waitForPort(port)
    }

    deinit { stop() }

    public func stop() {
        if pid > 0 {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            pid = 0
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var requests: [String] {
        ((try? String(contentsOfFile: directory + "/requests.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    static let server = #"""
        import base64, http.server, json, socketserver, sys
        port, directory = int(sys.argv[1]), sys.argv[2]
        routes = json.load(open(directory + "/routes.json"))
        log = open(directory + "/requests.log", "a")

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def do_GET(self):
                log.write(self.path + "\n"); log.flush()
                answer = routes.get(self.path.split("?")[0], {"status": 404, "headers": [], "body": ""})
                body = base64.b64decode(answer["body"])
                head = "HTTP/1.1 %d Fake\r\n" % answer["status"]
                head += "".join("%s:%s%s\r\n" % (name, " " if value else "", value) for name, value in answer["headers"])
                head += "Content-Length: %d\r\n\r\n" % len(body)
                self.wfile.write(head.encode("latin-1") + body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
        Server(("127.0.0.1", port), Handler).serve_forever()
        """#
}
