import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// A small image built by standard tools: two layers made with tar and Python's tarfile, added
/// with `umoci raw add-layer`, configured with `umoci config`, and copied into the other formats
/// with `skopeo` (docker-archive is what `docker save` writes, oci-archive a tar of the layout).
///
///   layer 1: busybox (static) and its links, /etc/os-release, a passwd without uid 1000,
///            /data/gone, /opaque/lower-only, /links/a and its hard link /links/b, /root
///   layer 2: a whiteout of /data/gone, an opaque /opaque holding upper-file
///   config:  Env GREETING=hello, WorkingDir /data, User root
struct TestImage {
    let directory: String
    var layout: String { directory + "/layout" }
    var dockerArchive: String { directory + "/docker.tar" }
    var ociArchive: String { directory + "/oci.tar" }

    static func build() throws -> TestImage {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-image-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let image = TestImage(directory: directory)
        try run(["bash", "-euo", "pipefail", "-c", """
            cd \(directory)
            mkdir -p base/bin base/etc base/data base/opaque base/links base/root
            cp /bin/busybox base/bin/busybox
            for tool in sh cat ls stat id pwd env test grep; do ln -s busybox base/bin/$tool; done
            printf 'ID=offswitch-test\\nPRETTY_NAME="Offswitch test image"\\n' > base/etc/os-release
            printf 'root:x:0:0:root:/root:/bin/sh\\n' > base/etc/passwd
            printf 'root:x:0:\\n' > base/etc/group
            echo gone > base/data/gone
            echo lower > base/opaque/lower-only
            echo linked > base/links/a
            ln base/links/a base/links/b
            tar --numeric-owner --owner=0 --group=0 -C base -cf base.tar .
            python3 - <<'PY'
            import io, tarfile
            with tarfile.open("top.tar", "w", format=tarfile.PAX_FORMAT) as tar:
                def add(name, data=b"", kind=tarfile.REGTYPE, mode=0o644):
                    info = tarfile.TarInfo(name); info.type = kind; info.mode = mode; info.size = len(data)
                    tar.addfile(info, io.BytesIO(data) if data else None)
                add("data", kind=tarfile.DIRTYPE, mode=0o755)
                add("data/.wh.gone")
                add("opaque", kind=tarfile.DIRTYPE, mode=0o755)
                add("opaque/.wh..wh..opq")
                add("opaque/upper-file", b"upper\\n")
            PY
            umoci init --layout layout
            umoci new --image layout:test
            umoci raw add-layer --image layout:test base.tar
            umoci raw add-layer --image layout:test top.tar
            umoci config --image layout:test --config.env GREETING=hello --config.workingdir /data --config.user root
            skopeo copy --quiet oci:layout:test docker-archive:docker.tar:offswitch-test/base:docker
            skopeo copy --quiet oci:layout:test oci-archive:oci.tar:test
            """])
        return image
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    static func run(_ argv: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = argv
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else { throw OffswitchError(.system, "\(argv.joined(separator: " ").prefix(80)): \(text)") }
    }
}

@Suite("Images as sandbox roots", needsRoot, .serialized)
struct ImageTests {
    /// A private store and state directory for one test.
    private func paths() throws -> StatePaths {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-images-\(UUID().uuidString.prefix(8))").path
        var paths = StatePaths(base: base + "/state")
        paths.imageStore = ImageStore(root: base + "/store")
        return paths
    }

    private func removeAll(_ paths: StatePaths) {
        try? FileManager.default.removeItem(atPath: String(paths.base.dropLast(6)))
    }

    @Test("Each format imports, and a sandbox of the image sees its files, whiteouts, opaque directory, hard link and configuration",
          arguments: ["layout", "docker-archive", "oci-archive"])
    func importAndRun(format: String) throws {
        let image = try TestImage.build()
        defer { image.remove() }
        let paths = try paths()
        defer { removeAll(paths) }
        let source = ["layout": image.layout, "docker-archive": image.dockerArchive, "oci-archive": image.ociArchive][format]!
        let imported = try paths.imageStore.importImages(from: source, tags: ["offswitch-test/base:\(format)"])
        #expect(imported.count == 1)
        #expect(imported[0].record.layers.count == 2)
        #expect(imported[0].unpacked == [true, true])
        #expect(imported[0].record.references.contains("docker.io/offswitch-test/base:\(format)"))

        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("offswitch-test/base:\(format)")
        let sandbox = try Sandbox.create(spec, paths: paths)
        defer { try? sandbox.destroy() }
        func sh(_ script: String, user: SandboxUser = .root) throws -> ExecResult {
            try sandbox.exec(ExecRequest(argv: ["/bin/sh", "-c", script], user: user, timeoutSeconds: 20))
        }
        #expect(try sh("cat /etc/os-release").out.contains("ID=offswitch-test"))
        let gone = try sh("test -e /data/gone && echo present || echo absent")
        #expect(gone.out == "absent\n", "\(gone.out)\(gone.err)")
        #expect(try sh("ls /opaque").out == "upper-file\n")
        let inodes = try sh("stat -c %i /links/a /links/b").out.split(separator: "\n")
        #expect(inodes.count == 2 && inodes[0] == inodes[1], "\(inodes)")
        #expect(try sh("env").out.contains("GREETING=hello"))
        #expect(try sh("pwd").out == "/data\n")
        // User root in the image's configuration: the sandbox's default user.
        #expect(sandbox.spec.defaultUser == .root)
        // The image has no uid 1000: the agent's account is added in the sandbox's layer.
        let agent = try sh("id -u; pwd", user: .agent)
        #expect(agent.out == "1000\n/data\n", "\(agent.out)\(agent.err)")
        #expect(try sh("grep ^user: /etc/passwd").out == "user:x:1000:1000::/home/user:/bin/sh\n")
        // The generated files lie over the image's.
        #expect(try sh("cat /etc/hostname").out == sandbox.hostname + "\n")
        let log = try String(contentsOfFile: sandbox.eventLogPath, encoding: .utf8)
        #expect(log.contains("\"image_id\":\"\(imported[0].record.id)\"") && log.contains("\"account_added\":true"), "\(log.prefix(800))")
        try sandbox.destroy()
    }

    @Test("An image's sudo, where its sudoers lets user run anything: root inside under docker (Docker's default), refused under hardened (no_new_privs)",
          arguments: ["docker", "hardened"])
    func sudoInImage(profile: String) throws {
        let image = try makeSudoImageLayout()
        defer { try? FileManager.default.removeItem(atPath: image.directory) }
        let paths = try paths()
        defer { removeAll(paths) }
        _ = try paths.imageStore.importImages(from: image.layout, tags: ["sudo:1"])
        var spec = try ProfileCatalog.load(profile).sandboxSpec
        spec.rootfs = .image("sudo:1")
        let sandbox = try Sandbox.create(spec, paths: paths)
        defer { try? sandbox.destroy() }
        let run = try sandbox.exec(ExecRequest(argv: ["sh", "-c", "sudo -n id -u"], user: .agent, timeoutSeconds: 20))
        if profile == "docker" {
            #expect(run.exitCode == 0 && run.out == "0\n", "\(run.out)\(run.err)")
        } else {
            #expect(run.exitCode != 0 && run.out.isEmpty && run.err.contains("no new privileges"), "\(run.out)\(run.err)")
        }
    }

    @Test("An image whose uid 1000 is another account (Ubuntu's ubuntu, /home/ubuntu) keeps it, and the agent gets /home/user as its home and working directory")
    func otherAccountAt1000() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-image-ubuntu-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try TestImage.run(["bash", "-euo", "pipefail", "-c", """
            mkdir -p \(directory)/r/bin \(directory)/r/etc \(directory)/r/home/ubuntu && cd \(directory)
            cp /bin/busybox r/bin/busybox && for tool in sh id pwd env ls; do ln -s busybox r/bin/$tool; done
            printf 'root:x:0:0:root:/root:/bin/sh\\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/sh\\n' > r/etc/passwd
            printf 'root:x:0:\\nubuntu:x:1000:\\n' > r/etc/group
            tar --numeric-owner -C r -cf layer.tar .
            umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
            """])
        let paths = try paths()
        defer { removeAll(paths) }
        _ = try paths.imageStore.importImages(from: directory + "/layout", tags: ["ubuntu-like:1"])
        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("ubuntu-like:1")
        let log = paths.base + "-events.ndjson"
        let sandbox = try Sandbox.create(spec, paths: paths, eventLog: log)
        defer { try? sandbox.destroy() }
        let seen = try sandbox.exec(ExecRequest(argv: ["/bin/sh", "-c", "id -un; id -u; pwd; echo $HOME; ls -nd /home/user"], user: .agent))
        let lines = seen.out.split(separator: "\n").map(String.init)
        #expect(lines.prefix(4) == ["ubuntu", "1000", "/home/user", "/home/user"], "\(seen.out)\(seen.err)")
        #expect(lines.last?.contains(" 1000 ") == true, "\(seen.out)")
        let created = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").first { $0.contains(#""kind":"sandbox_created""#) } ?? ""
        #expect(created.contains(#""account_added":false"#) && created.contains(#""home_added":true"#), "\(created)")
    }

    @Test("The teardown diff sees the image as overlayfs merges it: a file an upper image layer whited out and the agent made again is created; an opaque directory the agent replaced deletes only what the image showed")
    func diffOverImageWhiteouts() throws {
        let image = try TestImage.build()
        defer { image.remove() }
        let paths = try paths()
        defer { removeAll(paths) }
        _ = try paths.imageStore.importImages(from: image.layout, tags: ["diff:1"])
        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("diff:1")
        let log = paths.base + "-events.ndjson"
        let sandbox = try Sandbox.create(spec, paths: paths, eventLog: log)
        defer { try? sandbox.destroy() }
        // /data/gone: in layer 1, whited out by layer 2. /opaque: opaque in layer 2 (upper-file),
        // hiding layer 1's lower-only.
        // /links: layer 1 only. Each directory removed and made again is opaque in the upper layer.
        let run = try sandbox.exec(ExecRequest(argv: ["/bin/sh", "-c", "echo back > /data/gone && rm -r /opaque /links && mkdir /opaque /links && echo new > /fresh"], user: .root))
        #expect(run.exitCode == 0, "\(run.err)")
        try sandbox.destroy()
        var changes: [String: [String: Any]] = [:]
        for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") {
            let event = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
            if event["kind"] as? String == "file_changed", let path = event["path"] as? String { changes[path] = event }
        }
        #expect(changes["/data/gone"]?["change"] as? String == "created", "\(changes["/data/gone"] ?? [:])")
        #expect(changes["/fresh"]?["change"] as? String == "created")
        #expect(changes["/opaque/upper-file"]?["change"] as? String == "deleted", "\(changes.keys.sorted())")
        #expect(changes["/opaque/lower-only"] == nil, "\(changes["/opaque/lower-only"] ?? [:])")
        #expect(changes["/links/a"]?["change"] as? String == "deleted" && changes["/links/b"]?["change"] as? String == "deleted", "\(changes.keys.sorted())")
        // Nothing is said of what the image itself had whited out.
        #expect(!changes.values.contains { $0["type"] as? String == "char_device" }, "\(changes.keys.sorted())")
    }

    @Test("Two sandboxes share one unpack; a second import reuses every layer; an image in use is not removed; prune keeps what is referenced")
    func sharingAndRemoval() throws {
        let image = try TestImage.build()
        defer { image.remove() }
        let paths = try paths()
        defer { removeAll(paths) }
        let store = paths.imageStore
        let first = try store.importImages(from: image.layout, tags: ["shared:1"])
        let again = try store.importImages(from: image.dockerArchive, tags: ["shared:2"])
        #expect(first[0].unpacked == [true, true])
        #expect(again[0].unpacked == [false, false], "the second import unpacked again")
        #expect(first[0].record.id == again[0].record.id)
        // The docker archive's own RepoTags name it too.
        #expect(try store.resolve("shared:1").references == ["docker.io/library/shared:1", "docker.io/library/shared:2", "docker.io/offswitch-test/base:docker"])

        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("shared:1")
        let one = try Sandbox.create(spec, paths: paths)
        defer { try? one.destroy() }
        let two = try Sandbox.create(spec, paths: paths)
        defer { try? two.destroy() }
        #expect(one.image?.lowers == two.image?.lowers)
        // One directory per layer in the store, whatever number of sandboxes use it.
        let layers = try FileManager.default.contentsOfDirectory(atPath: store.root + "/layers/sha256").filter { !$0.hasSuffix(".json") }
        #expect(layers.count == 2, "\(layers)")

        // A name goes; the image, in use, does not.
        #expect(try store.remove("shared:2") == .untagged("docker.io/library/shared:2"))
        #expect(try store.remove("offswitch-test/base:docker") == .untagged("docker.io/offswitch-test/base:docker"))
        #expect(throws: OffswitchError.self) { try store.remove("shared:1") }
        do { _ = try store.remove("shared:1") } catch { #expect(error.code == .imageInUse, "\(error)") }
        #expect(try one.exec(ExecRequest(argv: ["/bin/cat", "/etc/os-release"], user: .root)).out.contains("offswitch-test"))
        // Prune while it is used removes nothing it needs.
        #expect(try store.prune().layers == 0)
        try one.destroy()
        try two.destroy()
        guard case .deleted = try store.remove("shared:1") else { Issue.record("not deleted"); return }
        #expect(throws: OffswitchError.self) { try store.resolve("shared:1") }
        let pruned = try store.prune()
        #expect(pruned.layers == 2, "\(pruned)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.root + "/layers/sha256").isEmpty)
        // The store is root-only: its layers keep setuid files.
        var info = stat()
        #expect(stat(store.root, &info) == 0 && info.st_mode & 0o777 == 0o700)
    }

    @Test("A layer or configuration whose content does not match its digest is refused, and leaves no image and no layer")
    func digestMismatch() throws {
        let image = try TestImage.build()
        defer { image.remove() }
        let paths = try paths()
        defer { removeAll(paths) }
        // Replace the top layer's blob with other bytes of the same name.
        let manifest = try manifestOf(image.layout)
        let blob = image.layout + "/blobs/sha256/" + (manifest["layers"] as! [[String: Any]]).last!["digest"].map { String(($0 as! String).dropFirst(7)) }!
        let original = try Data(contentsOf: URL(fileURLWithPath: blob))
        let other = try Data(contentsOf: URL(fileURLWithPath: image.layout + "/blobs/sha256/" + String(((manifest["layers"] as! [[String: Any]]).first!["digest"] as! String).dropFirst(7))))
        try other.write(to: URL(fileURLWithPath: blob))
        do {
            _ = try paths.imageStore.importImages(from: image.layout, tags: ["bad:1"])
            Issue.record("a layer of the wrong content was imported")
        } catch {
            #expect(error.description.contains("digest"), "\(error)")
        }
        #expect(paths.imageStore.list().isEmpty)
        let tmp = try FileManager.default.contentsOfDirectory(atPath: paths.imageStore.root + "/tmp")
        #expect(tmp.isEmpty, "\(tmp)")
        try original.write(to: URL(fileURLWithPath: blob))
        #expect(try paths.imageStore.importImages(from: image.layout, tags: ["good:1"]).count == 1)
    }

    @Test("An archive naming files outside itself, or a blob that is a symlink to a host file, is refused and reads nothing")
    func archiveEscapes() throws {
        let image = try TestImage.build()
        defer { image.remove() }
        let paths = try paths()
        defer { removeAll(paths) }
        // docker save's manifest.json names its files: one that climbs out is refused.
        let save = image.directory + "/save"
        try TestImage.run(["bash", "-euo", "pipefail", "-c", """
            mkdir -p \(save) && tar -C \(save) -xf \(image.dockerArchive)
            python3 -c 'import json,sys; m=json.load(open("\(save)/manifest.json")); m[0]["Layers"][0]="../../../../etc/passwd"; json.dump(m, open("\(save)/manifest.json","w"))'
            """])
        do {
            _ = try paths.imageStore.importImages(from: save)
            Issue.record("a docker save naming ../../../../etc/passwd was imported")
        } catch {
            #expect(error.description.contains("leaves the archive"), "\(error)")
        }
        // A layout whose layer blob is a symlink to a host file: not followed.
        let manifest = try manifestOf(image.layout)
        let top = String(((manifest["layers"] as! [[String: Any]]).last!["digest"] as! String).dropFirst(7))
        let blob = image.layout + "/blobs/sha256/" + top
        try FileManager.default.removeItem(atPath: blob)
        try FileManager.default.createSymbolicLink(atPath: blob, withDestinationPath: "/etc/shadow")
        do {
            _ = try paths.imageStore.importImages(from: image.layout, tags: ["link:1"])
            Issue.record("a blob that is a symlink to /etc/shadow was read")
        } catch {
            #expect(error.description.contains(top), "\(error)")
        }
        #expect(paths.imageStore.list().isEmpty)
    }

    private func manifestOf(_ layout: String) throws -> [String: Any] {
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as! [String: Any]
        let digest = ((index["manifests"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(layout)/blobs/sha256/\(digest)"))) as! [String: Any]
    }
}

/// The record example in docs/images.md has the fields a record has, no more, no fewer.
@Suite("docs/images.md", needsRoot)
struct ImageDocsTests {
    @Test("The offswitch.image/1 example has exactly a record's fields")
    func recordExample() throws {
        let text = try String(contentsOfFile: DocsTests.docsDirectory() + "/images.md", encoding: .utf8)
        let start = try #require(text.range(of: "```json\n"))
        let end = try #require(text.range(of: "\n```", range: start.upperBound..<text.endIndex))
        let example = try #require(JSONSerialization.jsonObject(with: Data(text[start.upperBound..<end.lowerBound].utf8)) as? [String: Any])
        let image = try TestImage.build()
        defer { image.remove() }
        let store = ImageStore(root: image.directory + "/store")
        let record = try #require(store.importImages(from: image.layout, tags: ["docs:1"]).first?.record)
        let actual = try #require(JSONSerialization.jsonObject(with: Data(record.json)) as? [String: Any])
        #expect(Set(example.keys) == Set(actual.keys))
        let exampleLayer = try #require((example["layers"] as? [[String: Any]])?.first)
        let actualLayer = try #require((actual["layers"] as? [[String: Any]])?.first)
        #expect(Set(exampleLayer.keys) == Set(actualLayer.keys))
        #expect(Set((example["config"] as? [String: Any] ?? [:]).keys).isSubset(of: ["User", "Env", "WorkingDir", "Entrypoint", "Cmd", "Labels"]))
        #expect(example["format"] as? String == ImageRecord.formatName)
    }
}

/// What an attack on the image store found (a store path another account owns, FIFOs where the
/// import or the account check reads, names that are not UTF-8, a record naming a path), each
/// held now.
@Suite("The image store under attack", needsRoot, .serialized)
struct ImageStoreAttackTests {
    private func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-image-attack-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// An OCI layout at DIR/layout with one layer made by Python's tarfile from `entries` (Python
    /// expressions adding to `tar`).
    private func layout(_ directory: String, _ entries: String) throws -> String {
        try TestImage.run(["bash", "-euo", "pipefail", "-c", """
            cd \(directory)
            python3 - <<'PY'
            import io, tarfile
            with tarfile.open("layer.tar", "w", format=tarfile.GNU_FORMAT) as tar:
                def add(name, data=b"", kind=tarfile.REGTYPE, mode=0o644):
                    info = tarfile.TarInfo(name); info.type = kind; info.mode = mode; info.size = len(data) if kind == tarfile.REGTYPE else 0
                    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
                add("bin", kind=tarfile.DIRTYPE, mode=0o755)
                \(entries)
            PY
            cp /bin/busybox bin-busybox
            umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
            """])
        return directory + "/layout"
    }

    @Test("A store whose directory another account owns, or that is a symlink, is refused")
    func foreignStore() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let owned = directory + "/owned"
        mkdir(owned, 0o755)
        chown(owned, 1000, 1000)
        for root in [owned, owned + "/store"] {
            do {
                _ = try ImageStore(root: root).prune()
                Issue.record("a store under a directory uid 1000 owns was used: \(root)")
            } catch {
                #expect(error.code == .permissionDenied && error.message.contains("uid 1000"), "\(error)")
            }
        }
        symlink(directory, directory + "/link")
        #expect(throws: OffswitchError.self) { _ = try ImageStore(root: directory + "/link/store").prune() }
    }

    @Test("A FIFO as an archive's index.json, or as the image's /etc/passwd, hangs nothing")
    func fifos() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = ImageStore(root: directory + "/store")
        let layout = try layout(directory, "add(\"etc\", kind=tarfile.DIRTYPE, mode=0o755); add(\"etc/passwd\", kind=tarfile.FIFOTYPE)")
        // The image's passwd is a FIFO: creation neither reads nor blocks on it.
        _ = try store.importImages(from: layout, tags: ["fifo:1"])
        var paths = StatePaths(base: directory + "/state")
        paths.imageStore = store
        var spec = try ProfileCatalog.load("docker").sandboxSpec
        spec.rootfs = .image("fifo:1")
        let sandbox = try Sandbox.create(spec, paths: paths)
        #expect(sandbox.image != nil)
        try sandbox.destroy()
        // index.json is a FIFO: refused, not waited on.
        let fifoLayout = directory + "/fifo-layout"
        try FileManager.default.copyItem(atPath: layout, toPath: fifoLayout)
        unlink(fifoLayout + "/index.json")
        mkfifo(fifoLayout + "/index.json", 0o644)
        do {
            _ = try store.importImages(from: fifoLayout, tags: ["fifo:2"])
            Issue.record("a FIFO index.json was imported")
        } catch {
            #expect(error.message.contains("not a regular file"), "\(error)")
        }
        mkfifo(directory + "/archive", 0o644)
        #expect(throws: OffswitchError.self) { _ = try store.importImages(from: directory + "/archive") }
    }

    @Test("A layer whose names are not UTF-8 is pruned, and its image imported again")
    func nonUTF8Names() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = ImageStore(root: directory + "/store")
        let layout = try layout(directory, "add(\"d\", kind=tarfile.DIRTYPE, mode=0o755); add(\"d/\\udcff\", b\"x\")")
        let first = try store.importImages(from: layout, tags: ["bytes:1"])
        let layer = try store.layerDirectory(first[0].record.layers[0].diff_id)
        _ = try store.remove("bytes:1")
        let pruned = try store.prune()
        #expect(pruned.failed.isEmpty && access(layer, F_OK) != 0, "\(pruned)")
        #expect(try store.importImages(from: layout, tags: ["bytes:1"])[0].unpacked == [true])
    }

    @Test("A record edited to name a path outside the store is ignored")
    func recordNamingAPath() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = ImageStore(root: directory + "/store")
        _ = try store.prune()
        try writeWholeFile(Array("precious".utf8), to: directory + "/victim.json")
        let record = #"{"format":"offswitch.image/1","id":"sha256:../../victim","references":["docker.io/atk/evil:1"],"platform":"linux/amd64","layers":[],"source":"x","imported":"2026"}"#
        try writeWholeFile(Array(record.utf8), to: store.root + "/images/x.json")
        #expect(throws: OffswitchError.self) { _ = try store.remove("atk/evil:1") }
        #expect(access(directory + "/victim.json", F_OK) == 0)
        #expect(access(directory + "/victim.lock", F_OK) != 0)
    }
}
