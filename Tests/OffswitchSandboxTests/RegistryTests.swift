import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchSandbox
import OffswitchTestSupport
import Synchronization
import Testing

@Suite("Pulling images from a registry on loopback", needsRoot, .serialized)
struct RegistryTests {
    /// The error a pull that must fail failed with; nil (and an issue recorded) if it succeeded.
    private func refusal(of name: String, in store: ImageStore, options: ImageStore.PullOptions, _ unexpected: String) -> OffswitchError? {
        do {
            _ = try store.pull(name, options: options)
            Issue.record(Comment(rawValue: unexpected))
            return nil
        } catch {
            return error
        }
    }

    private func store() -> ImageStore {
        ImageStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-pull-\(UUID().uuidString.prefix(8))").path)
    }

    @Test("An anonymous pull over plain HTTP: the sandbox sees the image; a second pull downloads nothing; by digest works; nothing is left in tmp")
    func anonymousPull() throws {
        let registry = try TestRegistry(auth: .none)
        defer { registry.stop() }
        let image = try TestImage.build()
        defer { image.remove() }
        try registry.push(image.layout + ":test", as: "offswitch/test:1")
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        var lines: [String] = []
        let first = try store.pull("\(registry.host)/offswitch/test:1", options: .init(plainHTTP: true), progress: { lines.append($0) })
        #expect(first.unpacked == [true, true])
        #expect(first.record.references == ["\(registry.host)/offswitch/test:1"])
        #expect(first.record.source == "registry \(registry.host)")
        #expect(lines.contains { $0.contains("downloading") }, "\(lines)")

        var paths = StatePaths(base: store.root + "-state")
        paths.imageStore = store
        defer { try? FileManager.default.removeItem(atPath: paths.base) }
        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("\(registry.host)/offswitch/test:1")
        let sandbox = try Sandbox.create(spec, paths: paths)
        defer { try? sandbox.destroy() }
        let seen = try sandbox.exec(ExecRequest(argv: ["/bin/sh", "-c", "cat /etc/os-release; test -e /data/gone || echo gone; ls /opaque; pwd; echo $GREETING"], user: .root))
        #expect(seen.out == "ID=offswitch-test\nPRETTY_NAME=\"Offswitch test image\"\ngone\nupper-file\n/data\nhello\n", "\(seen.out)\(seen.err)")
        try sandbox.destroy()

        let again = try store.pull("\(registry.host)/offswitch/test:1", options: .init(plainHTTP: true))
        #expect(again.unpacked == [false, false])
        let manifest = try #require(first.record.manifest)
        let byDigest = try store.pull("\(registry.host)/offswitch/test@\(manifest)", options: .init(plainHTTP: true))
        #expect(byDigest.record.id == first.record.id && byDigest.unpacked == [false, false])
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.root + "/tmp").isEmpty)

        // A registry on loopback is reached over HTTPS unless plain HTTP is asked for; plain HTTP
        // is never allowed elsewhere.
        if let error = refusal(of: "\(registry.host)/offswitch/test:1", in: store, options: .init(), "HTTPS to a plain HTTP registry succeeded") {
            #expect(error.code == .registryFailed && error.message.contains("--plain-http"), "\(error)")
        }
        if let error = refusal(of: "registry.example/offswitch/test:1", in: store, options: .init(plainHTTP: true), "plain HTTP to a registry off loopback was allowed") {
            #expect(error.message.contains("only for a registry on loopback"), "\(error)")
        }
        if let error = refusal(of: "\(registry.host)/offswitch/absent:1", in: store, options: .init(plainHTTP: true), "a missing image was pulled") {
            #expect(error.code == .notFound && error.message.contains("MANIFEST_UNKNOWN") || error.message.contains("NAME_UNKNOWN"), "\(error)")
        }
    }

    @Test("Two pulls of one image at once: both succeed, and each layer is downloaded and unpacked once (the registry's own log counts the blob requests)")
    func concurrentPulls() throws {
        let registry = try TestRegistry(auth: .none)
        defer { registry.stop() }
        let image = try TestImage.build()
        defer { image.remove() }
        try registry.push(image.layout + ":test", as: "offswitch/test:1")
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let before = registry.log.components(separatedBy: "\n").count
        let results = Mutex<[[Bool]]>([])
        let failures = Mutex<[String]>([])
        let name = "\(registry.host)/offswitch/test:1"
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            do {
                let pulled = try store.pull(name, options: .init(plainHTTP: true))
                results.withLock { $0.append(pulled.unpacked) }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        let unpacked = results.withLock { $0 }
        #expect(unpacked.count == 2)
        if unpacked.count == 2 {
            // Per layer, exactly one of the two pulls did the work.
            #expect(zip(unpacked[0], unpacked[1]).allSatisfy { $0 != $1 }, "\(unpacked)")
        }
        let requests = registry.log.components(separatedBy: "\n").dropFirst(before - 1).filter { $0.contains("\"GET /v2/offswitch/test/blobs/") }
        // The configuration by each pull (it is small and read before any lock), each layer once.
        #expect(requests.count == 4, "\(requests.joined(separator: "\n"))")
    }

    @Test("A multi-platform image index is resolved to this host's platform (linux/amd64 beside linux/arm64)")
    func multiPlatformIndex() throws {
        let registry = try TestRegistry(auth: .none)
        defer { registry.stop() }
        let image = try TestImage.build()
        defer { image.remove() }
        // An index of two manifests: the test image for this host, and one claiming arm64 whose
        // configuration says so (sharing the layers).
        try TestRegistry.shell("""
            cd \(image.layout)
            /usr/bin/python3 - <<'PY'
            import hashlib, json, os
            def blob(data):
                digest = hashlib.sha256(data).hexdigest()
                open(f"blobs/sha256/{digest}", "wb").write(data)
                return "sha256:" + digest
            index = json.load(open("index.json"))
            native = index["manifests"][0]
            manifest = json.load(open("blobs/sha256/" + native["digest"][7:]))
            config = json.load(open("blobs/sha256/" + manifest["config"]["digest"][7:]))
            config["architecture"] = "arm64"; config["variant"] = "v8"
            other_config = json.dumps(config).encode()
            manifest["config"] = {"mediaType": manifest["config"]["mediaType"], "digest": blob(other_config), "size": len(other_config)}
            other = json.dumps(manifest).encode()
            entries = [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(other), "size": len(other),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": native["mediaType"], "digest": native["digest"], "size": native["size"],
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
            nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
            index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": blob(nested), "size": len(nested),
                                       "annotations": {"org.opencontainers.image.ref.name": "multi"}})
            json.dump(index, open("index.json", "w"))
            open("../native-digest", "w").write(native["digest"])
            PY
            """)
        try registry.push(image.layout + ":multi", as: "offswitch/multi:1", all: true)
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        var lines: [String] = []
        let pulled = try store.pull("\(registry.host)/offswitch/multi:1", options: .init(plainHTTP: true), progress: { lines.append($0) })
        #expect(pulled.record.platform == OCI.Platform.host.description)
        let native = try String(contentsOfFile: image.directory + "/native-digest", encoding: .utf8)
        #expect(pulled.record.manifest == native, "\(lines)")
        #expect(lines.contains { $0.contains("image index") && $0.contains("2 manifests") }, "\(lines)")
    }

    /// A registry with `auth` holding the test image as offswitch/private:1, pushed with the
    /// account, and a fresh store; `body` gets the store and the image's name.
    private func withPrivateImage(_ auth: TestRegistry.Auth, _ body: (TestRegistry, ImageStore, String) throws -> Void) throws {
        let registry = try TestRegistry(auth: auth)
        defer { registry.stop() }
        let image = try TestImage.build()
        defer { image.remove() }
        try registry.push(image.layout + ":test", as: "offswitch/private:1", credentials: true)
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        try body(registry, store, "\(registry.host)/offswitch/private:1")
    }

    /// The pull is refused with registry_unauthorized, and `says` holds of its message.
    private func expectRefused(_ store: ImageStore, _ name: String, _ credentials: RegistryCredentials?, _ says: (String) -> Bool) {
        if let error = refusal(of: name, in: store, options: .init(plainHTTP: true, credentials: credentials), "a pull as \(credentials?.username ?? "nobody") with \(credentials?.password ?? "no password") succeeded") {
            #expect(error.code == .registryUnauthorized && says(error.message), "\(error)")
            // The password is nowhere in the message (its file's name aside: tests name it so).
            #expect(credentials.map { !error.message.replacingOccurrences(of: $0.source, with: "").contains($0.password) } ?? true, "the password is in \(error)")
        }
    }

    @Test("Basic auth: no credentials and a wrong password are clear errors naming the account and its file; Docker's config.json with the right one pulls")
    func basicAuth() throws {
        try withPrivateImage(.basic) { registry, store, name in
            expectRefused(store, name, nil) { $0.contains("asks for a user name and password") }
            let wrong = try DockerConfig.load(environment: ["DOCKER_CONFIG": try registry.dockerConfig(password: "wrong")]).credentials(for: registry.host)
            #expect(wrong?.username == TestRegistry.user)
            expectRefused(store, name, wrong) { $0.contains("user alice's credentials from") && $0.contains("docker-wrong/config.json") && $0.contains("refused") }
            #expect(store.list().isEmpty)
            let right = try DockerConfig.load(environment: ["DOCKER_CONFIG": try registry.dockerConfig(password: TestRegistry.password)]).credentials(for: registry.host)
            #expect(try store.pull(name, options: .init(plainHTTP: true, credentials: right)).unpacked == [true, true])
        }
    }

    @Test("Token auth (a Bearer challenge): the token is asked for with the account's password; a wrong one is refused by the token service, by name")
    func tokenAuth() throws {
        try withPrivateImage(.token) { registry, store, name in
            expectRefused(store, name, nil) { $0.contains("no credentials") }
            expectRefused(store, name, RegistryCredentials(username: "alice", password: "wrong", source: "the test")) {
                $0.contains("token service") && $0.contains("alice") && $0.contains("incorrect username or password")
            }
            let pulled = try store.pull(name, options: .init(plainHTTP: true, credentials: RegistryCredentials(username: "alice", password: "s3cret", source: "the test")))
            #expect(pulled.unpacked == [true, true], "\(registry.log)")
        }
    }

    @Test("A registry serving a blob whose content is not its digest: refused naming the layer, and the store holds no image, no layer, no work file")
    func corruptBlob() throws {
        let registry = try TestRegistry(auth: .none)
        defer { registry.stop() }
        let image = try TestImage.build()
        defer { image.remove() }
        try registry.push(image.layout + ":test", as: "offswitch/test:1")
        // The registry's own storage: the top layer's data replaced by the bottom one's.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image.layout + "/index.json"))) as! [String: Any]
        let digest = ((manifest["manifests"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        let layers = (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: image.layout + "/blobs/sha256/" + digest))) as! [String: Any])["layers"] as! [[String: Any]]
        let top = String((layers[1]["digest"] as! String).dropFirst(7))
        let blobs = registry.directory + "/data/docker/registry/v2/blobs/sha256"
        try FileManager.default.removeItem(atPath: "\(blobs)/\(top.prefix(2))/\(top)/data")
        try FileManager.default.copyItem(atPath: image.layout + "/blobs/sha256/" + String((layers[0]["digest"] as! String).dropFirst(7)), toPath: "\(blobs)/\(top.prefix(2))/\(top)/data")
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        if let error = refusal(of: "\(registry.host)/offswitch/test:1", in: store, options: .init(plainHTTP: true), "a layer of the wrong content was pulled") {
            #expect(error.message.contains("sha256:" + top) || error.message.contains("over its limit"), "\(error)")
        }
        #expect(store.list().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.root + "/tmp").isEmpty)
        // The bottom layer, sound, may stay for the next pull; no other layer is there.
        let kept = try FileManager.default.contentsOfDirectory(atPath: store.root + "/layers/sha256").filter { !$0.hasSuffix(".json") }
        #expect(kept.count <= 1, "\(kept)")
    }

    // MARK: a hostile registry's answers (FakeRegistry)

    private static let zeros = "sha256:" + String(repeating: "0", count: 64)
    private static let manifest = Array(#"{"schemaVersion":2,"config":{"digest":"\#(zeros)","size":2},"layers":[]}"#.utf8)

    @Test("A manifest whose Content-Type is empty or a bare ';' is typed by its content, not a crash")
    func emptyContentType() throws {
        for type in ["", ";", " ; charset=x"] {
            let registry = try FakeRegistry(["/v2/x/y/manifests/1": .init(headers: [("Content-Type", type)], body: Self.manifest)])
            defer { registry.stop() }
            let store = store()
            defer { try? FileManager.default.removeItem(atPath: store.root) }
            if let error = refusal(of: "\(registry.host)/x/y:1", in: store, options: .init(plainHTTP: true), "a pull of a configuration the registry lacks succeeded") {
                // Past the manifest: its configuration is asked for, and is not there.
                #expect(error.code == .notFound && error.message.contains("blob \(Self.zeros)"), "\(type): \(error)")
            }
        }
    }

    @Test("A redirect or a token realm to http://127.0.0.1:1@elsewhere is not plain HTTP to loopback: refused before any connection")
    func userInfoIsNotLoopback() throws {
        let elsewhere = "http://127.0.0.1:PORT@203.0.113.1:9"
        for answer in [FakeRegistry.Answer(status: 302, headers: [("Location", elsewhere + "/v2/x/y/manifests/2")]),
                       FakeRegistry.Answer(status: 401, headers: [("WWW-Authenticate", #"Bearer realm="\#(elsewhere)/token",service="x""#)])] {
            let registry = try FakeRegistry(["/v2/x/y/manifests/1": answer])
            defer { registry.stop() }
            let store = store()
            defer { try? FileManager.default.removeItem(atPath: store.root) }
            let credentials = RegistryCredentials(username: "alice", password: "s3cret", source: "the test")
            if let error = refusal(of: "\(registry.host)/x/y:1", in: store, options: .init(plainHTTP: true, credentials: credentials), "a pull went to \(elsewhere)") {
                #expect(error.message.contains("not HTTPS") && error.message.contains("203.0.113.1"), "\(error)")
                #expect(!error.message.contains("s3cret"), "\(error)")
            }
        }
    }

    @Test("An index naming its manifest by a digest that is not sha256 is refused: that manifest could not be checked")
    func indexChildNotSha256() throws {
        let host = OCI.Platform.host
        let child = "sha512:" + String(repeating: "0", count: 128)
        let index = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(child)","size":\#(Self.manifest.count),"platform":{"os":"\#(host.os)","architecture":"\#(host.architecture)"}}]}"#.utf8)
        let registry = try FakeRegistry([
            "/v2/x/y/manifests/1": .init(headers: [("Content-Type", "application/vnd.oci.image.index.v1+json")], body: index),
            "/v2/x/y/manifests/\(child)": .init(headers: [("Content-Type", "application/vnd.oci.image.manifest.v1+json")], body: Self.manifest),
        ])
        defer { registry.stop() }
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        if let error = refusal(of: "\(registry.host)/x/y:1", in: store, options: .init(plainHTTP: true), "a manifest named by a sha512 digest was pulled unchecked") {
            #expect(error.message.contains("only sha256"), "\(error)")
        }
        #expect(registry.requests == ["/v2/x/y/manifests/1"])
    }

    @Test("A hostile registry's text is shown, not obeyed: escape sequences and CRs in its error messages are written out; 300 headers cannot push out the digest check; 500 layers are refused before any blob is asked for")
    func hostileText() throws {
        let escape = Array(#"{"errors":[{"code":"DENIED","message":"\u001b[2J\u001b]0;owned\u0007pulled OK\r"}]}"#.utf8)
        var junk = (0..<300).map { ("X-Junk-\($0)", "x") }
        junk.append(("Docker-Content-Digest", "sha256:" + String(repeating: "1", count: 64)))
        let layers = (0..<500).map { _ in #"{"digest":"sha256:\#(String(repeating: "2", count: 64))","size":1}"# }.joined(separator: ",")
        let many = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"\#(Self.zeros)","size":2},"layers":[\#(layers)]}"#.utf8)
        let registry = try FakeRegistry([
            "/v2/x/denied/manifests/1": .init(status: 403, headers: [("Content-Type", "application/json")], body: escape),
            "/v2/x/junk/manifests/1": .init(headers: junk, body: Self.manifest),
            "/v2/x/many/manifests/1": .init(headers: [("Content-Type", "application/vnd.oci.image.manifest.v1+json")], body: many),
        ])
        defer { registry.stop() }
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        if let error = refusal(of: "\(registry.host)/x/denied:1", in: store, options: .init(plainHTTP: true), "a refused pull succeeded") {
            #expect(error.code == .registryUnauthorized, "\(error)")
            #expect(!error.message.unicodeScalars.contains { $0.value < 0x20 }, "\(error.message.debugDescription)")
            #expect(error.message.contains("\\u{1B}[2J") && error.message.contains("\\u{D}"), "\(error.message)")
        }
        if let error = refusal(of: "\(registry.host)/x/junk:1", in: store, options: .init(plainHTTP: true), "a manifest whose Docker-Content-Digest differs, after 300 headers, was used") {
            #expect(error.message.contains("Docker-Content-Digest"), "\(error)")
        }
        if let error = refusal(of: "\(registry.host)/x/many:1", in: store, options: .init(plainHTTP: true), "an image of 500 layers was pulled") {
            #expect(error.message.contains("500 layers"), "\(error)")
        }
        #expect(!registry.requests.contains { $0.contains("/blobs/") }, "\(registry.requests)")
    }
}
