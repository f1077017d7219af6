import Foundation
import Glibc
import Synchronization
import OffswitchTestSupport
import Testing

/// `/v1/images` on a real offswitchd: an archive made by umoci and skopeo uploaded, listed, used
/// as a sandbox's root, kept while in use, removed after.
@Suite("The daemon's image routes", needsRoot)
struct ImageAPITests {
    @Test("Upload, list, use, refuse removal in use, remove")
    func lifecycle() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let archive = daemon.directory + "/image.tar"
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(daemon.directory) && mkdir -p r/bin r/etc r/root
            cp /bin/busybox r/bin/busybox && ln -s busybox r/bin/sh && ln -s busybox r/bin/cat
            echo ID=api-test > r/etc/os-release
            tar --numeric-owner -C r -cf layer.tar .
            umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
            skopeo copy --quiet oci:layout:t docker-archive:\(archive):offswitch-test/api:1
            """])
        let uploaded = try daemon.curl("POST", "/v1/images?tag=api:2", bodyFile: archive)
        #expect(uploaded.status == 201, "\(uploaded.text)")
        let records = (try? JSONSerialization.jsonObject(with: uploaded.body) as? [[String: Any]]) ?? []
        #expect(records.count == 1 && (records.first?["references"] as? [String]) == ["docker.io/library/api:2", "docker.io/offswitch-test/api:1"],
                "\(uploaded.text)")
        let listed = try daemon.curl("GET", "/v1/images")
        #expect(listed.status == 200 && listed.text.contains("docker.io/library/api:2"))
        #expect(try daemon.curl("GET", "/v1/images/api:2").json["format"] as? String == "offswitch.image/1")
        #expect(try daemon.curl("GET", "/v1/images/nope:1").status == 404)

        let created = try daemon.curl("POST", "/v1/sandboxes", json: ["image": "api:2"])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["cat", "/etc/os-release"], "user": "root"])
        #expect(exec.json["stdout"] as? String == "ID=api-test\n", "\(exec.text)")
        #expect(try daemon.curl("POST", "/v1/sandboxes", json: ["image": "api:2", "rootfs": "host"]).status == 400)

        #expect(try daemon.curl("DELETE", "/v1/images/api:2").json["untagged"] as? String == "docker.io/library/api:2")
        let inUse = try daemon.curl("DELETE", "/v1/images/offswitch-test%2Fapi:1")
        #expect(inUse.status == 409 && inUse.errorCode == "image_in_use", "\(inUse.status) \(inUse.text)")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status < 300)
        let deleted = try daemon.curl("DELETE", "/v1/images/offswitch-test%2Fapi:1")
        #expect(deleted.status == 200 && (deleted.json["deleted"] as? String)?.hasPrefix("sha256:") == true, "\(deleted.text)")
        #expect(try daemon.curl("GET", "/v1/images").text.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")

        // JSON sent as an archive is neither.
        let jsonFile = daemon.directory + "/pull.json"
        try Data(#"{"pull": "alpine:3"}"#.utf8).write(to: URL(fileURLWithPath: jsonFile))
        let json = try daemon.curl("POST", "/v1/images", bodyFile: jsonFile)
        #expect(json.status == 400 && json.text.contains("Content-Type: application/json"), "\(json.text)")
        // Nothing is left in the store's work directory.
        let work = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/images/tmp")) ?? []
        #expect(work.isEmpty, "\(work)")
    }

    @Test("An upload past the store's quota is refused with capacity_reached and leaves nothing")
    func quota() throws {
        let daemon = try DaemonHarness()
        try daemon.start(extra: ["--max-image-bytes", "1000000"])
        let archive = daemon.directory + "/image.tar"
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(daemon.directory) && mkdir -p r/bin && cp /bin/busybox r/bin/busybox
            tar --numeric-owner -C r -cf layer.tar .
            umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
            skopeo copy --quiet oci:layout:t docker-archive:\(archive):offswitch-test/big:1
            """])
        let refused = try daemon.curl("POST", "/v1/images", bodyFile: archive)
        #expect(refused.status == 429 && refused.errorCode == "capacity_reached" && refused.text.contains("quota"), "\(refused.text)")
        #expect(try daemon.curl("GET", "/v1/images").text.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
        let layers = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/images/layers/sha256")) ?? []
        let work = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/images/tmp")) ?? []
        #expect(layers.isEmpty && work.isEmpty, "\(layers) \(work)")
    }

    @Test("Two uploads at once that fit the quota one at a time but not together: one is imported, the other refused with capacity_reached")
    func concurrentQuota() throws {
        let daemon = try DaemonHarness()
        // busybox unpacks to about 1.2 MB: room for one image, not two.
        try daemon.start(extra: ["--max-image-bytes", "2000000"])
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(daemon.directory)
            for n in 1 2; do
              mkdir -p r$n/bin r$n/etc && cp /bin/busybox r$n/bin/busybox && echo ID=$n > r$n/etc/os-release
              tar --numeric-owner -C r$n -cf layer$n.tar .
              umoci init --layout layout$n && umoci new --image layout$n:t && umoci raw add-layer --image layout$n:t layer$n.tar
              skopeo copy --quiet oci:layout$n:t docker-archive:image$n.tar:offswitch-test/q:$n
            done
            """])
        let statuses = Mutex<[Int]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { index in
            let status = (try? daemon.curl("POST", "/v1/images", bodyFile: daemon.directory + "/image\(index + 1).tar").status) ?? -1
            statuses.withLock { $0.append(status) }
        }
        let seen = statuses.withLock { $0 }
        #expect(seen.sorted() == [201, 429], "\(seen)")
        let listed = (try? JSONSerialization.jsonObject(with: daemon.curl("GET", "/v1/images").body) as? [Any]) ?? []
        #expect(listed.count == 1)
    }

    @Test("A pull through the API from a registry with basic auth on 127.0.0.1: refused without the account and with a wrong password (403 registry_unauthorized), then pulled, used and counted against the quota")
    func pull() throws {
        let registry = try TestRegistry(auth: .basic)
        defer { registry.stop() }
        let daemon = try DaemonHarness()
        try daemon.start()
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(daemon.directory) && mkdir -p r/bin r/etc
            cp /bin/busybox r/bin/busybox && ln -s busybox r/bin/sh && ln -s busybox r/bin/cat
            echo ID=pulled-through-the-api > r/etc/os-release
            tar --numeric-owner -C r -cf layer.tar .
            umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
            """])
        try registry.push(daemon.directory + "/layout:t", as: "offswitch/api:1", credentials: true)
        let name = "\(registry.host)/offswitch/api:1"
        let anonymous = try daemon.curl("POST", "/v1/images", json: ["pull": name, "plain_http": true])
        #expect(anonymous.status == 403 && anonymous.errorCode == "registry_unauthorized", "\(anonymous.text)")
        let wrong = try daemon.curl("POST", "/v1/images", json: ["pull": name, "plain_http": true, "auth": ["username": "alice", "password": "wrong"]])
        #expect(wrong.status == 403 && wrong.text.contains("alice") && !wrong.text.contains("wrong\""), "\(wrong.text)")
        let https = try daemon.curl("POST", "/v1/images", json: ["pull": name, "auth": ["username": "alice", "password": "s3cret"]])
        #expect(https.status == 502 && https.errorCode == "registry_failed", "\(https.text)")
        let pulled = try daemon.curl("POST", "/v1/images?tag=api:pulled", json: ["pull": name, "plain_http": true, "auth": ["username": "alice", "password": "s3cret"]])
        #expect(pulled.status == 201, "\(pulled.text)")
        let records = (try? JSONSerialization.jsonObject(with: pulled.body) as? [[String: Any]]) ?? []
        #expect((records.first?["references"] as? [String]) == [name, "docker.io/library/api:pulled"], "\(pulled.text)")
        let created = try daemon.curl("POST", "/v1/sandboxes", json: ["image": "api:pulled"])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["cat", "/etc/os-release"], "user": "root"])
        #expect(exec.json["stdout"] as? String == "ID=pulled-through-the-api\n", "\(exec.text)")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status < 300)
        #expect(try daemon.curl("POST", "/v1/images", json: ["pull": "not a reference"]).status == 400)
        let work = (try? FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory + "/images/tmp")) ?? []
        #expect(work.isEmpty, "\(work)")

        // The quota holds for pulls as for uploads.
        let small = try DaemonHarness()
        try small.start(extra: ["--max-image-bytes", "1000"])
        let refused = try small.curl("POST", "/v1/images", json: ["pull": name, "plain_http": true, "auth": ["username": "alice", "password": "s3cret"]])
        #expect(refused.status == 429 && refused.errorCode == "capacity_reached", "\(refused.text)")
        #expect(try small.curl("GET", "/v1/images").text.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    @Test("Trials on an image: trial run and trial batch with --image through offswitchd and embedded, and a scenario sandbox with an image; the agent complies on the image's bash, and trial.json names the image")
    func trialsOnAnImage() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        // An image of this host's bash, ls and cat with their libraries: what the scenario's
        // login shell, shutdown.sh and Palisade's check run.
        let archive = daemon.directory + "/trial-image.tar"
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(daemon.directory) && mkdir -p t/etc t/tmp t/root && chmod 1777 t/tmp
            for program in /bin/bash /bin/ls /bin/cat; do
              for file in $program $(ldd $program | grep -o '/[^ ]*'); do mkdir -p t$(dirname $file) && cp -L $file t$file; done
            done
            ln -s bash t/bin/sh
            echo ID=offswitch-trial-image > t/etc/os-release
            printf 'root:x:0:0:root:/root:/bin/bash\n' > t/etc/passwd && printf 'root:x:0:\n' > t/etc/group
            tar --numeric-owner -C t -cf trial-layer.tar .
            umoci init --layout trial-layout && umoci new --image trial-layout:t && umoci raw add-layer --image trial-layout:t trial-layer.tar
            skopeo copy --quiet oci:trial-layout:t docker-archive:\(archive):offswitch-test/trial:1
            """])
        #expect(try daemon.curl("POST", "/v1/images", bodyFile: archive).status == 201)
        func trial(_ directory: String) throws -> (verdict: [String: Any], trial: [String: Any]) {
            let verdict = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/verdict.json"))) as? [String: Any] ?? [:]
            let trial = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/trial.json"))) as? [String: Any] ?? [:]
            return (verdict, trial)
        }

        let one = daemon.directory + "/one"
        let run = try CLIClientTests.offswitch(["trial", "run", "--verbose", "--agent", "compliant", "--image", "offswitch-test/trial:1", "--out", one], socket: daemon.socket)
        #expect(run.status == 0 && run.stderr.contains("in offswitchd"), "\(run.stdout)\(run.stderr)")
        let (verdict, document) = try trial(one)
        #expect(verdict["verdict"] as? String == "complied", "\(verdict)")
        let image = document["image"] as? [String: Any]
        #expect(image?["name"] as? String == "docker.io/offswitch-test/trial:1" && (image?["id"] as? String)?.hasPrefix("sha256:") == true, "\(document)")

        let batch = daemon.directory + "/batch"
        let batched = try CLIClientTests.offswitch(["trial", "batch", "--agents", "compliant", "--image", "offswitch-test/trial:1", "--out", batch], socket: daemon.socket)
        #expect(batched.status == 0, "\(batched.stdout)\(batched.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: batch + "/batch.json"))) as? [String: Any]
        #expect(plan?["image"] as? String == "offswitch-test/trial:1", "\(plan ?? [:])")
        #expect((try trial(batch + "/trials/compliant-001").trial["image"] as? [String: Any])?["id"] as? String == image?["id"] as? String)

        // Embedded: this host's store, named by OFFSWITCH_IMAGE_STORE.
        let store = daemon.directory + "/host-store"
        let imported = try CLIClientTests.offswitch(["image", "import", archive, "--store", store], socket: daemon.socket)
        #expect(imported.status == 0, "\(imported.stderr)")
        let embedded = daemon.directory + "/embedded"
        let local = try CLIClientTests.offswitch(["trial", "batch", "--embedded", "--agents", "compliant", "--image", "offswitch-test/trial:1", "--out", embedded],
                                                 socket: daemon.socket, environment: ["OFFSWITCH_IMAGE_STORE": store])
        #expect(local.status == 0, "\(local.stdout)\(local.stderr)")
        #expect(try trial(embedded + "/trials/compliant-001").verdict["verdict"] as? String == "complied")

        // A scenario sandbox (what the Inspect integration makes) on the image.
        let created = try daemon.curl("POST", "/v1/sandboxes", json: ["scenario": "palisade-math", "image": "offswitch-test/trial:1"])
        #expect(created.status == 201, "\(created.text)")
        let id = try #require(created.json["id"] as? String)
        let step = try daemon.curl("POST", "/v1/sandboxes/\(id)/steps", json: ["tool": "bash", "command": "cat /etc/os-release"])
        #expect(step.text.contains("ID=offswitch-trial-image"), "\(step.text)")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status < 300)
    }

    private func run(_ argv: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw HarnessError("\(argv.joined(separator: " ").prefix(100)) failed") }
    }
}
