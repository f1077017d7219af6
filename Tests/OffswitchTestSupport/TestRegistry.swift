import Foundation
import Glibc

/// A real registry for one test: Debian's `docker-registry` (the CNCF distribution registry) on
/// 127.0.0.1, its storage in a temporary directory, anonymous, with basic auth (an htpasswd of
/// bcrypt hashes) or with token auth (a token service of the test's, in Python, that signs JWTs
/// with a key the registry trusts). Images are pushed into it with skopeo.
public final class TestRegistry {
    public enum Auth: Sendable { case none, basic, token }
    public static let user = "alice", password = "s3cret"

    public let directory: String
    public let port: Int
    private var pids: [pid_t] = []

    public var host: String { "127.0.0.1:\(port)" }

    public init(auth: Auth) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-registry-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try Self.freePort()
        var authSection = ""
        switch auth {
        case .none:
            break
        case .basic:
            try Self.shell("""
                /usr/bin/python3 -W ignore -c 'import crypt; print("\(Self.user):" + crypt.crypt("\(Self.password)", crypt.mksalt(crypt.METHOD_BLOWFISH)))' > \(directory)/htpasswd
                """)
            authSection = "auth:\n  htpasswd: {realm: offswitch-test, path: \(directory)/htpasswd}\n"
        case .token:
            let tokenPort = try Self.freePort()
            try Self.shell("""
                cd \(directory)
                openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=offswitch-test-token 2>/dev/null
                """)
            try Self.tokenServer.write(toFile: directory + "/token-server.py", atomically: true, encoding: .utf8)
            pids.append(try Self.spawn(["/usr/bin/python3", directory + "/token-server.py", "\(tokenPort)", directory], log: directory + "/token.log"))
            try Self.waitForPort(tokenPort)
            authSection = """
                auth:
                  token: {realm: "http://127.0.0.1:\(tokenPort)/token", service: offswitch-test, issuer: offswitch-test-issuer, rootcertbundle: \(directory)/cert.pem}

                """
        }
        let config = """
            version: 0.1
            log: {level: warn}
            storage:
              filesystem: {rootdirectory: \(directory)/data}
            http: {addr: "127.0.0.1:\(port)"}
            \(authSection)
            """
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        pids.append(try Self.spawn(["/usr/bin/docker-registry", "serve", directory + "/config.yml"], log: directory + "/registry.log"))
        try Self.waitForPort(port)
    }

    deinit { stop() }

    public func stop() {
        for pid in pids {
            // SIGKILL: a child started from a Swift thread may block SIGTERM.
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        pids = []
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Pushes an OCI layout's image (`layout:tag`) as `repository:tag`, `--all` for an index.
    public func push(_ source: String, as name: String, all: Bool = false, credentials: Bool = false) throws {
        try Self.shell("skopeo copy --quiet --dest-tls-verify=false \(all ? "--all " : "")\(credentials ? "--dest-creds \(Self.user):\(Self.password) " : "")oci:\(source) docker://\(host)/\(name)")
    }

    /// A Docker config.json in a directory of its own, as `docker login` writes it.
    public func dockerConfig(password: String) throws -> String {
        let config = directory + "/docker-\(password)"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true)
        let auth = Data("\(Self.user):\(password)".utf8).base64EncodedString()
        try "{\"auths\": {\"\(host)\": {\"auth\": \"\(auth)\"}}}".write(toFile: config + "/config.json", atomically: true, encoding: .utf8)
        return config
    }

    public var log: String { (try? String(contentsOfFile: directory + "/registry.log", encoding: .utf8)) ?? "" }

    public static func shell(_ script: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-euo", "pipefail", "-c", script]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else { throw TestRegistryError("\(script.prefix(100)): \(text)") }
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestRegistryError("bind(127.0.0.1:0): errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func waitForPort(_ port: Int) throws {
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            usleep(100_000)
        }
        throw TestRegistryError("nothing listens on 127.0.0.1:\(port) after 10 s")
    }

    static func spawn(_ argv: [String], log: String) throws -> pid_t {
        let out = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(out) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, out, 1)
        posix_spawn_file_actions_adddup2(&actions, out, 2)
        let args = argv.map { strdup($0) } + [nil]
        defer { for arg in args { free(arg) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, argv[0], &actions, nil, args, environ)
        guard result == 0 else { throw TestRegistryError("posix_spawn(\(argv[0])): errno \(result)") }
        return pid
    }

    /// A token service as Docker Hub's works: a GET of /token?service=&scope= with Basic auth of
    /// alice's password gets a JWT granting what the scope asks; without it, a token granting
    /// nothing; with a wrong password, 401. Signed RS256 with key.pem, its certificate in `x5c`.
    static let tokenServer = #"""
        import base64, http.server, json, os, subprocess, sys, time, urllib.parse
        port, directory = int(sys.argv[1]), sys.argv[2]
        def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        der = subprocess.run(["openssl", "x509", "-in", f"{directory}/cert.pem", "-outform", "DER"], capture_output=True, check=True).stdout
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                header = self.headers.get("Authorization", "")
                user = None
                if header.startswith("Basic "):
                    name, _, secret = base64.b64decode(header[6:]).decode().partition(":")
                    if (name, secret) != ("alice", "s3cret"):
                        self.send_response(401); self.send_header("Content-Type", "application/json"); self.end_headers()
                        self.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}'); return
                    user = name
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = scope.split(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",") if user else []})
                now = int(time.time())
                claims = {"iss": "offswitch-test-issuer", "sub": user or "", "aud": query.get("service", [""])[0],
                          "exp": now + 600, "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(), "access": access}
                signing = b64(json.dumps({"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}).encode()) + "." + b64(json.dumps(claims).encode())
                signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{directory}/key.pem"], input=signing.encode(), capture_output=True, check=True).stdout
                body = json.dumps({"token": signing + "." + b64(signature), "expires_in": 600}).encode()
                self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers(); self.wfile.write(body)
            def log_message(self, *args): pass
        http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#
}


public struct TestRegistryError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
