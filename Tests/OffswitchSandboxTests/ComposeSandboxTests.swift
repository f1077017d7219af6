import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// What a compose file asks of a sandbox, in real sandboxes: extra /etc/hosts lines, tmpfs
/// mounts, a read-only root and a shared network namespace (issue 20).
@Suite("Compose fields in the sandbox", needsRoot)
struct ComposeSandboxTests {
    /// The code of what `body` throws, nil when it throws nothing.
    func code(_ body: () throws -> Void) -> OffswitchError.Code? {
        do { try body(); return nil } catch let error as OffswitchError { return error.code } catch { return .system }
    }

    /// The refusal of creating a sandbox of `spec`.
    func refusal(_ spec: SandboxSpec) throws -> OffswitchError {
        do throws(OffswitchError) {
            let sandbox = try Sandbox.create(spec)
            try sandbox.destroy()
        } catch {
            return error
        }
        throw OffswitchError(.system, "created a sandbox that should have been refused")
    }

    @Test("hosts: lines after the sandbox's own, resolved by getent")
    func hosts() throws {
        var spec = SandboxSpec()
        spec.hosts = try HostEntry.parse(["web": "127.0.0.1", "db": "::1", "api.internal": "10.1.2.3"])
        try withSandbox(spec) { sandbox in
            let hosts = try sandbox.readFile("/etc/hosts")
            #expect(String(decoding: hosts, as: UTF8.self).hasSuffix("10.1.2.3\tapi.internal\n::1\tdb\n127.0.0.1\tweb\n"))
            let resolved = try sandbox.bash("getent hosts web api.internal db")
            #expect(resolved.exitCode == 0)
            #expect(resolved.out.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
                    == ["127.0.0.1 web", "10.1.2.3 api.internal", "::1 db"], "\(resolved.out)")
        }
    }

    @Test("tmpfs: size, mode and owner as asked, nested ones parents first, full at its size, /tmp replaced")
    func tmpfs() throws {
        var spec = SandboxSpec()
        // The nested one first: PID 1 mounts parents first whatever the order given.
        spec.tmpfs = [TmpfsMount(path: "/var/cache/app/inner", sizeBytes: 1 << 20), TmpfsMount(path: "/var/cache/app", sizeBytes: 4 << 20, mode: 0o1770),
                      TmpfsMount(path: "/tmp", sizeBytes: 2 << 20, mode: 0o1777), TmpfsMount(path: "/dev/shm", sizeBytes: 3 << 20)]
        try withSandbox(spec) { sandbox in
            let mounts = try sandbox.bash("grep -E ' (/var/cache/app|/var/cache/app/inner|/tmp|/dev/shm) ' /proc/mounts").out
            let options = Dictionary(mounts.split(separator: "\n").map { line in
                let fields = line.split(separator: " ")
                return (String(fields[1]), String(fields[3]))
            }, uniquingKeysWith: { _, last in last })
            #expect(options["/var/cache/app"]?.hasPrefix("rw,nosuid,nodev,noexec,relatime,size=4096k,mode=1770") == true, "\(mounts)")
            #expect(options["/var/cache/app/inner"]?.contains("size=1024k") == true, "\(mounts)")
            #expect(options["/tmp"]?.contains("size=2048k") == true, "the sandbox's own /tmp is 256 MiB: \(mounts)")
            #expect(options["/dev/shm"]?.contains("size=3072k") == true, "\(mounts)")
            #expect(try sandbox.bash("stat -c '%a %U' /var/cache/app /var/cache/app/inner /tmp", user: .root).out == "1770 root\n1777 root\n1777 root\n")
            // Full at its size; root writes, since 1770 keeps `user` out.
            let fill = try sandbox.bash("dd if=/dev/zero of=/var/cache/app/fill bs=1M count=8 2>&1", user: .root)
            #expect(fill.exitCode != 0 && fill.out.contains("No space left on device"), "\(fill.out)")
            #expect(try sandbox.bash("touch /var/cache/app/x").err.contains("Permission denied"))
            #expect(try sandbox.bash("echo hi > /tmp/x && cat /tmp/x").out == "hi\n")
        }
    }

    @Test("tmpfs: a symlink on the way (the host root's /bin, a directory root's links) or a file is refused by name")
    func tmpfsRefusals() throws {
        let marker = "offswitch-tmpfs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var spec = SandboxSpec()
        spec.tmpfs = [TmpfsMount(path: "/run/ok", sizeBytes: 1 << 20), TmpfsMount(path: "/bin/\(marker)", sizeBytes: 1 << 20)]
        let viaBin = try refusal(spec)
        #expect(viaBin.code == .invalidArgument && viaBin.message.hasPrefix("tmpfs[1].path: /bin is a symbolic link"), "\(viaBin)")
        #expect(access("/usr/bin/\(marker)", F_OK) != 0)

        // A root directory standing for an image layer: links out of the root, absolute and relative.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(marker).path
        try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: "/etc")
        try FileManager.default.createSymbolicLink(atPath: root + "/data/up", withDestinationPath: "../../../../../../etc")
        try FileManager.default.createSymbolicLink(atPath: root + "/last", withDestinationPath: "/var")
        #expect(FileManager.default.createFile(atPath: root + "/file", contents: Data("x".utf8)))
        for (path, reason) in [("/escape/\(marker)", "/escape is a symbolic link"), ("/data/up/\(marker)", "/data/up is a symbolic link"),
                               ("/last", "/last is a symbolic link"), ("/file/\(marker)", "/file is not a directory"),
                               ("/file", "/file is not a directory")] {
            var spec = SandboxSpec(rootfs: .directory(root))
            spec.tmpfs = [TmpfsMount(path: path, sizeBytes: 1 << 20)]
            let error = try refusal(spec)
            #expect(error.code == .invalidArgument && error.message == "tmpfs[0].path: \(reason); a tmpfs mount point is never reached through one"
                    || error.message == "tmpfs[0].path: \(reason)", "\(error)")
            #expect(access("/etc/\(marker)", F_OK) != 0, "a directory was made in the host's /etc")
        }
        var duplicate = SandboxSpec()
        duplicate.tmpfs = [TmpfsMount(path: "/run", sizeBytes: 1 << 20), TmpfsMount(path: "/run", sizeBytes: 1 << 20)]
        #expect(try refusal(duplicate).message.hasPrefix("tmpfs[1].path"))
        var unbounded = SandboxSpec()
        unbounded.tmpfs = [TmpfsMount(path: "/run", sizeBytes: 0)]
        #expect(try refusal(unbounded).message.hasPrefix("tmpfs[0].size_mib"))
    }

    @Test("read_only: /, /etc, home and /tmp refuse writes (EROFS), tmpfs and /dev/shm take them; the file API says read_only; the diff completes")
    func readOnly() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-ro-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ndjson").path
        defer { unlink(log) }
        // The docker profile's spec records, so the recorder runs over the sealed root.
        var spec = try profileSpec("docker")
        spec.readOnlyRoot = true
        spec.tmpfs = [TmpfsMount(path: "/data", sizeBytes: 4 << 20)]
        let sandbox = try Sandbox.create(spec, eventLog: log) { sandbox throws(OffswitchError) in
            // Before the seal: the harness's files, as an image's build writes them.
            try sandbox.writeFile("/home/user/placed.txt", Array("placed\n".utf8))
            try sandbox.writeFile("/etc/harness.conf", Array("x\n".utf8), user: .root)
            sandbox.markBaseline()
        }
        defer { try? sandbox.destroy() }
        let probe = """
            import errno, os, sys
            for path in sys.argv[1:]:
                try:
                    with open(path, "w") as f:
                        f.write("x")
                    print(path, "ok")
                except OSError as e:
                    print(path, errno.errorcode[e.errno])
            """
        let targets = ["/x", "/etc/x", "/etc/harness.conf", "/home/user/x", "/home/user/placed.txt", "/tmp/x", "/usr/x", "/data/x", "/dev/shm/x"]
        for user in SandboxUser.allCases {
            let result = try sandbox.exec(ExecRequest(argv: ["python3", "-c", probe] + targets, user: user))
            let lines = result.out.split(separator: "\n").map(String.init)
            let expected = targets.map { $0.hasPrefix("/data/") || $0.hasPrefix("/dev/shm/") ? "\($0) ok" : "\($0) EROFS" }
            // `user` may not write / or /etc at all: root's EROFS is the mount's, user's may be either.
            if user == .root {
                #expect(lines == expected, "\(result.out)\(result.err)")
            } else {
                #expect(lines.filter { $0.hasSuffix(" ok") } == ["/data/x ok", "/dev/shm/x ok"], "\(result.out)\(result.err)")
                #expect(lines.contains("/home/user/x EROFS") && lines.contains("/tmp/x EROFS"), "\(result.out)")
            }
        }
        let mounts = try sandbox.bash("grep -E ' (/|/usr|/tmp|/data|/dev/shm) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1").out
        #expect(Set(mounts.split(separator: "\n")) == ["/ ro", "/usr ro", "/tmp ro", "/data rw", "/dev/shm rw"], "\(mounts)")
        // Root inside cannot take it back.
        #expect(try sandbox.bash("mount -o remount,rw / 2>&1; touch /y", user: .root).exitCode != 0)

        #expect(code { try sandbox.writeFile("/home/user/new", [1]) } == .readOnly)
        #expect(code { try sandbox.writeFile("/home/user/dir/new", [1]) } == .readOnly, "creating a parent is a write too")
        #expect(code { try sandbox.writeFile("/home/user/placed.txt", [1]) } == .readOnly)
        #expect(try sandbox.readFile("/home/user/placed.txt") == Array("placed\n".utf8))
        try sandbox.writeFile("/data/api", Array("via api\n".utf8))
        #expect(try sandbox.readFile("/data/api") == Array("via api\n".utf8))

        try sandbox.destroy()
        let events = try String(contentsOfFile: log, encoding: .utf8)
        #expect(events.contains(#""read_only":true"#) && events.contains(#""tmpfs":["/data"]"#))
        let diff = events.split(separator: "\n").first { $0.contains(#""kind":"diff_complete""#) } ?? ""
        #expect(diff.contains(#""complete":true"#), "\(diff)")
    }

    @Test("network sandbox:ID: one loopback shared, nothing routed, the first may go first; others cannot reach it")
    func sharedNetwork() throws {
        let port = Int.random(in: 20000...40000)
        let first = try Sandbox.create()
        defer { try? first.destroy() }
        let started = try first.exec(ExecRequest(argv: ["python3", "-c", podServerScript(port: port, body: "pod-answer")]))
        #expect(started.exitCode == 0, "\(started.err)")

        var spec = SandboxSpec()
        spec.network = .sandbox(first.id)
        spec.hosts = try HostEntry.parse(["web": "127.0.0.1"])
        let second = try Sandbox.create(spec, network: try first.networkNamespace())
        defer { try? second.destroy() }
        let fetched = try second.bash("curl -sS --max-time 10 http://web:\(port)/")
        #expect(fetched.out == "pod-answer", "\(fetched.err)")
        let routes = try second.exec(ExecRequest(argv: ["python3", "-c", connectScript, "192.0.2.1:80", "2001:db8::1:80"]))
        #expect(routes.out == "ENETUNREACH\nENETUNREACH\n", "\(routes.out)\(routes.err)")
        // The namespace is the first's: root here has no network powers in it, and its sysctls
        // stay the first's (ports below 1024 for anyone; ping for the first's groups only).
        let raw = "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('raw')"
        #expect(try first.exec(ExecRequest(argv: ["python3", "-c", raw], user: .root)).out == "raw\n", "CAP_NET_RAW in its own namespace")
        let denied = try second.exec(ExecRequest(argv: ["python3", "-c", raw], user: .root))
        #expect(denied.exitCode != 0 && denied.err.contains("Operation not permitted"), "\(denied.out)\(denied.err)")
        #expect(try second.bash("ip link set lo mtu 1280 2>&1", user: .root).out.contains("Operation not permitted"))
        #expect(try second.bash("cat /proc/sys/net/ipv4/ip_unprivileged_port_start").out == "0\n")
        #expect(try first.bash("cat /proc/sys/net/ipv4/ping_group_range").out == "0\t65535\n", "the joiner left the first's range alone")

        let stranger = try Sandbox.create()
        defer { try? stranger.destroy() }
        #expect(try stranger.exec(ExecRequest(argv: ["python3", "-c", connectScript, "127.0.0.1:\(port)"])).out == "ECONNREFUSED\n")

        try first.destroy()
        #expect(code { _ = try first.networkNamespace() } == .sandboxDestroyed)
        let alone = try second.exec(ExecRequest(argv: ["python3", "-c", """
            import socket
            listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
            client = socket.create_connection(listener.getsockname()); print("loopback")
            """]))
        #expect(alone.out == "loopback\n", "\(alone.err)")
        #expect(try second.exec(ExecRequest(argv: ["python3", "-c", connectScript, "127.0.0.1:\(port)"])).out == "ECONNREFUSED\n",
                "the first's server went with it")
    }

    @Test("network: a shut-down sandbox's namespace is not handed out; a spec and namespace that disagree are refused")
    func networkRefusals() throws {
        let first = try Sandbox.create()
        defer { try? first.destroy() }
        let namespace = try first.networkNamespace()
        var mismatched = SandboxSpec()
        mismatched.network = .sandbox("000000000000")
        #expect(code { _ = try Sandbox.create(mismatched, network: namespace) } == .invalidArgument)
        #expect(code { _ = try Sandbox.create(SandboxSpec(), network: namespace) } == .invalidArgument)
        mismatched.network = .sandbox(first.id)
        #expect(code { _ = try Sandbox.create(mismatched) } == .invalidArgument)
        try first.shutDown()
        #expect(code { _ = try first.networkNamespace() } == .sandboxShutDown)
    }
}
