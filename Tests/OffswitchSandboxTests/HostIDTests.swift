import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Host id range: parsing and the host's accounts")
struct HostIDRangeTests {
    @Test("FIRST:SLOTS parses; bad values name the variable and the rule")
    func parsing() throws {
        let range = try HostIDRange(parsing: "1073741824:4096")
        #expect(range == .standard && range.end == (1 << 30) + (1 << 28))
        #expect(range.description == "1073741824-1342177279")
        let refused = [
            ("1073741824", "expected FIRST:SLOTS"), ("x:1", "expected FIRST:SLOTS"),
            ("1073741825:1", "multiple of 65536"), ("0:1", "multiple of 65536"),
            ("1073741824:0", "at least 1"), ("2147418112:2", "below 2147483648"),
        ]
        for (text, reason) in refused {
            #expect {
                _ = try HostIDRange(parsing: text)
            } throws: { error in
                let message = (error as? OffswitchError)?.message ?? ""
                return message.contains("OFFSWITCH_HOST_IDS=\(text)") && message.contains(reason)
            }
        }
    }

    @Test("Accounts and subordinate ranges inside the range are named by file and line")
    func conflicts() throws {
        let directory = NSTemporaryDirectory() + "offswitch-hostids-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let passwd = directory + "/passwd", subuid = directory + "/subuid"
        try "root:x:0:0::/root:/bin/bash\nodd:x:1073807360:100::/:/bin/sh\n".write(toFile: passwd, atomically: true, encoding: .utf8)
        try "alice:100000:65536\nbob:1073676288:131072\ncarol:1342177280:65536\n".write(toFile: subuid, atomically: true, encoding: .utf8)
        let range = HostIDRange.standard
        let found = range.conflicts(in: [(passwd, false), (subuid, true), (directory + "/missing", false)])
        // bob's range ends inside ours; carol's starts right after it.
        #expect(found == ["\(passwd):2: odd:x:1073807360:100::/:/bin/sh", "\(subuid):2: bob:1073676288:131072"])
        #expect(HostIDRange(first: 1 << 20, slots: 1).conflicts(in: [(passwd, false), (subuid, true)]).isEmpty)
        // A file there that cannot be read is not taken as free: a directory in its place.
        let odd = directory + "/subgid"
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: false)
        #expect(HostIDRange(first: 1 << 20, slots: 1).conflicts(in: [(odd, true)]) == ["\(odd): cannot be read (or is over 16 MiB), so it was not checked"])
    }
}

@Suite("Host ids: a user namespace and ids of its own for every sandbox", needsRoot)
struct HostIDTests {
    /// Host pids of the sandbox's processes running as `hostUID` with command name `name`.
    static func hostPIDs(uid hostUID: UInt32, name: String) -> [Int32] {
        listDirectory("/proc").compactMap { Int32($0) }.filter { pid in
            guard let status = readSmallFile("/proc/\(pid)/status") else { return false }
            return statusField(status, "Name") == name
                && statusField(status, "Uid")?.split(separator: "\t").first.map(String.init) == "\(hostUID)"
        }
    }

    /// Runs `argv` as host uid and gid 1000, an ordinary host account; its exit status and output.
    static func asHostUser(_ argv: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=1000", "--regid=1000", "--clear-groups"] + argv
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test("Two sandboxes of a profile have different host ids, none an account's; inside, the agent is still uid 1000",
          arguments: bundledProfiles)
    func distinct(profile: String) throws {
        let range = try HostIDRange.configured()
        try withSandbox(try profileSpec(profile)) { (first: Sandbox) throws in
            try withSandbox(try profileSpec(profile)) { (second: Sandbox) throws in
                let a = try #require(first.spec.userNamespace), b = try #require(second.spec.userNamespace)
                #expect(a.hostUID != b.hostUID && a.size == 65536 && b.size == 65536)
                for mapping in [a, b] {
                    #expect(mapping.hostUID >= range.first && UInt64(mapping.hostUID) + 65536 <= range.end)
                    #expect(mapping.hostUID % 65536 == 0 && mapping.hostGID == mapping.hostUID)
                }
                let inside = try first.bash("id -u; id -gn; cat /proc/self/uid_map")
                #expect(inside.out.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
                            == ["1000", "user", "0 \(a.hostUID) 65536"], "\(inside.out)")
                // The namespace's owner is the slot's first uid, not host root: the kernel charges
                // per-user counts inside (inotify, queued signals, processes) to the owner too.
                let namespace = open("/proc/\(first.initPID)/ns/user", O_RDONLY | O_CLOEXEC)
                defer { close(namespace) }
                var owner: uid_t = 0
                #expect(namespace >= 0 && ioctl(namespace, UInt(0xb704), &owner) == 0)  // NS_GET_OWNER_UID
                #expect(owner == a.hostUID)
                // The slot's lock is held for the sandbox's life.
                let lock = open("/run/offswitch-ids/\(a.hostUID)", O_RDWR | O_CLOEXEC)
                defer { close(lock) }
                #expect(lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) != 0)
            }
        }
    }

    @Test("Host uid 1000 cannot signal, read or enter a sandbox's process")
    func noHostAccountReachesIn() async throws {
        let sandbox = try await Sandbox.create(try profileSpec("docker"))
        let base = try #require(sandbox.spec.userNamespace).hostUID
        let sleeper = Task { try await sandbox.exec(ExecRequest(argv: ["sleep", "30"], timeoutSeconds: 60)) }
        var pids: [Int32] = []
        for _ in 0..<200 where pids.isEmpty {
            pids = Self.hostPIDs(uid: base + 1000, name: "sleep")
            if pids.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        let pid = try #require(pids.first, "the agent's sleep runs as host uid \(base + 1000)")
        // The control: host uid 1000 can run commands, so the refusals below are the sandbox's doing.
        #expect(try Self.asHostUser(["true"]).0 == 0)
        for argv in [["cat", "/proc/\(pid)/environ"], ["ls", "/proc/\(pid)/root/"], ["kill", "-0", "\(pid)"],
                     ["cat", "/proc/\(pid)/root/etc/hostname"]] {
            let (status, output) = try Self.asHostUser(argv)
            #expect(status != 0, "\(argv) as host uid 1000: \(output)")
        }
        try await sandbox.destroy()
        _ = try? await sleeper.value
    }

    @Test("Docker's semantics inside: root's network capabilities, Docker's sysctls, root's /dev and /tmp")
    func dockerSemantics() throws {
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            let script = """
                import os, socket
                socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print("raw")
                s = socket.socket(); s.bind(("127.0.0.1", 80)); print("port 80")
                print(os.stat("/dev/null").st_uid, os.stat("/tmp").st_uid, os.stat("/dev/shm").st_uid, os.stat("/dev/pts").st_uid)
                """
            let root = try sandbox.exec(ExecRequest(argv: ["python3", "-c", script], user: .root))
            #expect(root.out == "raw\nport 80\n0 0 0 0\n", "\(root.out) \(root.err)")
            let agent = try sandbox.exec(ExecRequest(argv: ["python3", "-c", """
                import socket
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP); print("icmp")
                s = socket.socket(); s.bind(("127.0.0.1", 81)); print("port 81")
                print(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read().strip())
                """]))
            #expect(agent.out == "icmp\nport 81\n0\n", "\(agent.out) \(agent.err)")
        }
    }

    @Test("A sandbox that takes every inotify instance it may leaves its neighbour's and the host's alone")
    func perUserCountsAreTheSandboxs() async throws {
        let hog = try await Sandbox.create(try profileSpec("docker"))
        let neighbour = try await Sandbox.create(try profileSpec("docker"))
        let script = """
            import ctypes, time
            libc = ctypes.CDLL(None, use_errno=True)
            held = []
            while len(held) < 100000:
                fd = libc.inotify_init()
                if fd < 0: break
                held.append(fd)
            open("/tmp/held", "w").write(f"{len(held)} {ctypes.get_errno()}")
            time.sleep(30)
            """
        let holder = Task { try await hog.exec(ExecRequest(argv: ["python3", "-c", script], timeoutSeconds: 60)) }
        var held = ""
        for _ in 0..<400 where held.isEmpty {
            held = ((try? await hog.readFile("/tmp/held")).map { String(decoding: $0, as: UTF8.self) }) ?? ""
            if held.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
        }
        // The hog met the bound (EMFILE) at the host's per-user limit, now its own.
        let limit = readSmallFile("/proc/sys/fs/inotify/max_user_instances")?.split(separator: "\n").first.map(String.init) ?? "?"
        #expect(held == "\(limit) 24", "instances held, errno: \(held)")
        let probe = "import ctypes; print(ctypes.CDLL(None).inotify_init() >= 0)"
        #expect(try await neighbour.exec(ExecRequest(argv: ["python3", "-c", probe])).out == "True\n")
        #expect(try await neighbour.exec(ExecRequest(argv: ["python3", "-c", probe], user: .root)).out == "True\n")
        let host = inotify_init1(Int32(IN_CLOEXEC))
        #expect(host >= 0, "host root's inotify_init: errno \(errno)")
        if host >= 0 { close(host) }
        try await hog.destroy()
        try await neighbour.destroy()
        _ = try? await holder.value
    }
}
