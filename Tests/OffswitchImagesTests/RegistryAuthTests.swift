import Foundation
import OffswitchCore
@testable import OffswitchImages
import Testing

/// What a pull decides before it connects: the challenges it answers, the credentials Docker's
/// config.json holds for a registry, and where plain HTTP and credentials may go. No root, no
/// network.
@Suite("Registry authentication, without a registry")
struct RegistryAuthTests {
    @Test("WWW-Authenticate: Docker Hub's Bearer challenge, Basic, several in one header, quoted commas and escapes")
    func challenges() {
        let hub = AuthChallenge.parse(#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull""#)
        #expect(hub == [AuthChallenge(scheme: "bearer", parameters: [
            "realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/debian:pull",
        ])])
        #expect(AuthChallenge.parse(#"Basic realm="offswitch-test""#) == [AuthChallenge(scheme: "basic", parameters: ["realm": "offswitch-test"])])
        let two = AuthChallenge.parse(#"Basic realm="a, b", Bearer realm="https://x/t", service=x"#)
        #expect(two.map(\.scheme) == ["basic", "bearer"])
        #expect(two[0].parameters["realm"] == "a, b" && two[1].parameters["service"] == "x")
        #expect(AuthChallenge.parse(#"Bearer realm="say \"hi\"""#)[0].parameters["realm"] == #"say "hi""#)
        #expect(AuthChallenge.parse("").isEmpty)
        #expect(AuthChallenge.parse("Basic")[0] == AuthChallenge(scheme: "basic", parameters: [:]))
    }

    @Test("config.json: auths keyed as docker login writes them (Docker Hub's historical URL, a scheme and path, host:port), user:password in base64 or apart")
    func auths() throws {
        let hub = Data("hubuser:hubpass".utf8).base64EncodedString()
        let local = Data("alice:pa:ss".utf8).base64EncodedString()
        let config = try DockerConfig.parse(Array("""
            {"auths": {
              "https://index.docker.io/v1/": {"auth": "\(hub)"},
              "http://localhost:5000/v2/": {"auth": "\(local)"},
              "ghcr.io": {"username": "bob", "password": "token"},
              "empty.example": {}
            }, "HttpHeaders": {"User-Agent": "x"}}
            """.utf8), path: "/home/u/.docker/config.json")
        #expect(try config.credentials(for: "docker.io") == RegistryCredentials(username: "hubuser", password: "hubpass", source: "/home/u/.docker/config.json (auths)"))
        // A password may hold colons: only the first separates.
        #expect(try config.credentials(for: "localhost:5000")?.password == "pa:ss")
        #expect(try config.credentials(for: "GHCR.io")?.username == "bob")
        #expect(try config.credentials(for: "quay.io") == nil)
        #expect(try config.credentials(for: "empty.example") == nil)
        #expect(DockerConfig.registryKey("registry-1.docker.io") == "docker.io")
    }

    @Test("config.json: credHelpers before auths, then credsStore; a helper is asked with Docker Hub's historical address")
    func helpers() throws {
        let config = try DockerConfig.parse(Array("""
            {"auths": {"gcr.io": {"auth": "\(Data("a:b".utf8).base64EncodedString())"}, "docker.io": {}},
             "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "secretservice"}
            """.utf8), path: "c.json")
        var asked: [String] = []
        let helper: (String, String) throws(OffswitchError) -> RegistryCredentials? = { name, server in
            asked.append("\(name) \(server)")
            return RegistryCredentials(username: name, password: "x", source: "docker-credential-" + name)
        }
        #expect(try config.credentials(for: "gcr.io", helper: helper)?.username == "gcloud")
        #expect(try config.credentials(for: "docker.io", helper: helper)?.username == "secretservice")
        #expect(asked == ["gcloud gcr.io", "secretservice https://index.docker.io/v1/"])
        // A helper that is not installed is an error naming it, not an anonymous pull.
        do {
            _ = try DockerConfig.runHelper("offswitch-absent-\(UInt32.random(in: 0...UInt32.max))", "gcr.io")
            Issue.record("a missing credential helper gave credentials")
        } catch {
            #expect(error.code == .notFound && error.message.contains("docker-credential-offswitch-absent"), "\(error)")
        }
        #expect(throws: OffswitchError.self) { try DockerConfig.runHelper("../bin/sh", "x") }
    }

    @Test("A config.json that is not JSON, and an auth that is not base64 of user:password, are errors naming the file")
    func badConfig() throws {
        do {
            _ = try DockerConfig.parse(Array("{auths".utf8), path: "/tmp/bad.json")
            Issue.record("bad JSON parsed")
        } catch {
            #expect(error.message.hasPrefix("/tmp/bad.json"), "\(error)")
        }
        let config = try DockerConfig.parse(Array(#"{"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}"#.utf8), path: "/tmp/c.json")
        do {
            _ = try config.credentials(for: "r.example")
            Issue.record("an auth without a colon was used")
        } catch {
            #expect(error.message.contains("/tmp/c.json") && error.message.contains("r.example"), "\(error)")
        }
        // No file where Docker keeps one: an anonymous pull, not an error.
        let none = try DockerConfig.load(environment: ["HOME": "/nonexistent-\(UUID().uuidString)"])
        #expect(none.path == nil)
        #expect(try none.credentials(for: "docker.io") == nil)
        // A file given by name must exist.
        #expect(throws: OffswitchError.self) { try DockerConfig.load(path: "/nonexistent/config.json") }
        // A FIFO (which would hang the read) or a device is refused, by name.
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-config-fifo-\(UUID().uuidString.prefix(8))").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        for path in [fifo, "/dev/zero"] {
            do {
                _ = try DockerConfig.load(path: path)
                Issue.record("\(path) was read as a config.json")
            } catch {
                #expect(error.message.contains("\(path) is not a regular file"), "\(error)")
            }
        }
    }

    @Test("Plain HTTP only to loopback; credentials only to the registry's own origin")
    func loopbackAndOrigins() throws {
        for host in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.9.8.7", "[::1]:5000"] {
            #expect(RegistryClient.isLoopback(host: host), "\(host)")
        }
        // User-info: curl connects to what follows the '@'.
        for host in ["127.0.0.1.example", "localhost.example:5000", "10.0.0.1", "[::2]", "128.0.0.1", "1270.0.0.1",
                     "127.0.0.1:1@203.0.113.1", "localhost:x@evil.example", "[::1]@evil.example", "[::1]:1@evil.example", "[::1]evil.example"] {
            #expect(!RegistryClient.isLoopback(host: host), "\(host)")
        }
        #expect(throws: OffswitchError.self) {
            try RegistryClient(reference: ImageReference(parsing: "registry.example/app:1"), plainHTTP: true, credentials: nil)
        }
        let hub = try RegistryClient(reference: ImageReference(parsing: "debian:12"), plainHTTP: false, credentials: nil)
        #expect(hub.endpoint == "https://registry-1.docker.io")
        #expect(RegistryClient.origin(of: "https://Registry.example:443/v2/x?y") == "https://registry.example:443")
        #expect(RegistryClient.origin(of: "https://s3.example/bucket") != RegistryClient.origin(of: hub.endpoint))
        #expect(RegistryClient.escaped("repository:a/b:pull") == "repository%3Aa%2Fb%3Apull")
        #expect(RegistryClient.registryMessage(Array(#"{"errors":[{"code":"DENIED","message":"no"}]}"#.utf8)) == "DENIED: no")
        #expect(RegistryClient.registryMessage(Array("<html>".utf8)) == nil)
        #expect(RegistryClient.shown("a\u{1B}[2Jb\r\u{9B}c") == "a\\u{1B}[2Jb\\u{D}\\u{9B}c")
        #expect(RegistryClient.shown(String(repeating: "x", count: 500)).count == 200)
    }
}
