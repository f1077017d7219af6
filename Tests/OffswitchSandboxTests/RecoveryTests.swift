import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// A running `offswitch sandbox run --verbose` and the id of its sandbox.
private struct RunningCLI {
    let process: Process
    let id: String
    let stderr: FileHandle
    let paths: StatePaths

    /// Starts it, with its state in `runDirectory` when given (OFFSWITCH_RUN_DIR: no other
    /// process's sweep of leftovers reaches it).
    static func start(_ command: [String], runDirectory: String? = nil) throws -> RunningCLI {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = ["sandbox", "run", "--verbose", "--"] + command
        process.environment = embeddedEnvironment.merging(runDirectory.map { ["OFFSWITCH_RUN_DIR": $0] } ?? [:]) { $1 }
        let stderr = Foundation.Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let chunk = stderr.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.contains("embedded mode") }),
               let id = line.split(separator: " ").last, text.contains("setup inside") {
                return RunningCLI(process: process, id: String(id), stderr: stderr.fileHandleForReading,
                                  paths: runDirectory.map { StatePaths(base: $0) } ?? .standard)
            }
        }
        process.terminate()
        throw OffswitchError(.system, "the CLI never reported its sandbox: \(text)")
    }

    /// The sandbox's processes whose command is `name`, by host pid.
    func processes(named name: String) -> [Int32] {
        listDirectory("/proc").compactMap(Int32.init).filter { pid in
            readSmallFile("/proc/\(pid)/comm") == name + "\n" && readSmallFile("/proc/\(pid)/cgroup")?.contains("/offswitch/\(id)") == true
        }
    }

    /// The CLI's owner watch (OwnerWatch), by pid.
    var watcher: Int32? {
        listDirectory("/proc").compactMap(Int32.init).first { pid in
            let stat = readSmallFile("/proc/\(pid)/stat") ?? ""
            let ppid = stat.split(separator: ")").last?.split(separator: " ").dropFirst(1).first
            return ppid == "\(process.processIdentifier)" && readSmallFile("/proc/\(pid)/cmdline")?.contains("watch-owner") == true
        }
    }
}

private func traces(of id: String, paths: StatePaths = .standard) -> [String] {
    var found: [String] = []
    if (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.contains(id) == true { found.append("mount") }
    if FileManager.default.fileExists(atPath: paths.sandboxDirectory(id)) { found.append("directory") }
    for hierarchy in ["memory", "pids", "cpu", "unified", ""] {
        let path = "/sys/fs/cgroup/\(hierarchy)/offswitch/\(id)".replacingOccurrences(of: "//", with: "/")
        if FileManager.default.fileExists(atPath: path) { found.append("cgroup \(path)") }
    }
    return found
}

/// A run directory of the test's own, removed afterwards (the rootfs skeleton is built there),
/// with whatever a failed test left in it.
private func withRunDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let directory = "/run/offswitch-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer {
        _ = Leftovers.reclaim(paths: StatePaths(base: directory))
        try? FileManager.default.removeItem(atPath: directory)
    }
    return try body(directory)
}

@Suite("Recovery: interrupts and crashes", needsRoot)
struct RecoveryTests {
    @Test("SIGINT to the CLI destroys its sandbox and exits 130")
    func interrupt() throws {
        let cli = try RunningCLI.start(["sleep", "100"])
        #expect(!traces(of: cli.id).isEmpty)
        kill(cli.process.processIdentifier, SIGINT)
        cli.process.waitUntilExit()
        #expect(cli.process.terminationStatus == 130)
        #expect(traces(of: cli.id).isEmpty, "left: \(traces(of: cli.id))")
    }

    @Test("After kill -9 of the CLI, its watcher reclaims the sandbox at once: the command dies, no mount, cgroup or directory remains")
    func crash() throws {
        try withRunDirectory { runDirectory in
            let cli = try RunningCLI.start(["sleep", "1000"], runDirectory: runDirectory)
            let started = Date().addingTimeInterval(30)
            while cli.processes(named: "sleep").isEmpty && Date() < started { usleep(20_000) }
            let sleeps = cli.processes(named: "sleep")
            #expect(sleeps.count == 1 && !traces(of: cli.id, paths: cli.paths).isEmpty)
            kill(cli.process.processIdentifier, SIGKILL)
            cli.process.waitUntilExit()
            // Nothing else sweeps this run directory: what goes, the watcher removed.
            let deadline = Date().addingTimeInterval(30)
            func alive() -> [Int32] { sleeps.filter { kill($0, 0) == 0 } }
            while (!traces(of: cli.id, paths: cli.paths).isEmpty || !alive().isEmpty) && Date() < deadline { usleep(20_000) }
            #expect(traces(of: cli.id, paths: cli.paths).isEmpty, "left: \(traces(of: cli.id, paths: cli.paths))")
            #expect(alive().isEmpty, "sleep \(alive()) survived its sandbox")
            // The watcher says what it removed on the CLI's stderr, and ends.
            let said = String(decoding: cli.stderr.readDataToEndOfFile(), as: UTF8.self)
            #expect(said.contains("died holding a sandbox; sandbox \(cli.id): removed") && said.contains("mount "), "\(said)")
        }
    }

    @Test("With its watcher killed too, a killed CLI's sandbox is reclaimed by the next start: nothing remains")
    func crashWithoutWatcher() throws {
        try withRunDirectory { runDirectory in
            let cli = try RunningCLI.start(["sleep", "1000"], runDirectory: runDirectory)
            let watcher = try #require(cli.watcher, "the CLI started no owner watch")
            kill(watcher, SIGKILL)
            kill(cli.process.processIdentifier, SIGKILL)
            cli.process.waitUntilExit()
            #expect(traces(of: cli.id, paths: cli.paths).contains("directory"), "a killed owner cannot clean up")
            let reclaimed = Leftovers.reclaim(paths: cli.paths)
            let mine = reclaimed.first { $0.id == cli.id }
            #expect(mine?.removed.contains { $0.hasPrefix("mount ") } == true, "\(reclaimed)")
            #expect(traces(of: cli.id, paths: cli.paths).isEmpty, "left: \(traces(of: cli.id, paths: cli.paths))")
        }
    }

    @Test("Live sandboxes are never reclaimed")
    func liveUntouched() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            #expect(!Leftovers.reclaim().contains { $0.id == sandbox.id })
            #expect(try sandbox.exec(ExecRequest(argv: ["true"])).exitCode == 0)
        }
    }
}

@Suite("Rootfs sources", needsRoot)
struct RootfsTests {
    /// A minimal root filesystem: dash and the libraries it links, nothing else.
    static func makeMinimalRoot() throws -> String {
        let root = NSTemporaryDirectory() + "offswitch-rootfs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fm = FileManager.default
        for directory in ["bin", "etc", "tmp"] { try fm.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true) }
        let dash = "/usr/bin/dash"
        try fm.copyItem(atPath: dash, toPath: root + "/bin/sh")
        let ldd = Process()
        ldd.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        ldd.arguments = [dash]
        let pipe = Foundation.Pipe()
        ldd.standardOutput = pipe
        try ldd.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ldd.waitUntilExit()
        for path in listing.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) where path.hasPrefix("/") {
            let real = try fm.destinationOfSymbolicLinkIfAny(String(path))
            let target = root + path
            try fm.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if !fm.fileExists(atPath: target) { try fm.copyItem(atPath: real, toPath: target) }
        }
        try "marker-from-dir-rootfs\n".write(toFile: root + "/etc/marker", atomically: true, encoding: .utf8)
        return root
    }

    @Test("dir:PATH runs from an unpacked root; writes stay in the sandbox")
    func directoryRoot() throws {
        let root = try Self.makeMinimalRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try withSandbox(SandboxSpec(rootfs: .directory(root))) { (sandbox: Sandbox) throws in
            // `cat` is not in this root: a builtin-only script.
            let result = try sandbox.exec(ExecRequest(argv: ["/bin/sh", "-c", "read m < /etc/marker; echo $m; echo new > /etc/created; read c < /etc/created; echo $c"], cwd: "/", user: .root))
            #expect(result.out == "marker-from-dir-rootfs\nnew\n", "\(result.out) \(result.err)")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/etc/created"))
    }

    @Test("The CLI accepts --rootfs dir:PATH and rejects what it cannot use")
    func cliRootfs() throws {
        let run = try runCLI(["sandbox", "run", "--rootfs", "dir:/nonexistent/root", "--", "true"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("/nonexistent/root"))
        let bad = try runCLI(["sandbox", "run", "--rootfs", "oci:debian", "--", "true"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("rootfs"))
        // An image the store lacks: refused, naming the image and how to get it in.
        let missing = try runCLI(["sandbox", "run", "--image", "offswitch-test/absent:1", "--", "true"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("offswitch-test/absent:1") && missing.stderr.contains("image import"), "\(missing.stderr)")
    }
}

extension FileManager {
    /// The file a path names, following symlinks.
    func destinationOfSymbolicLinkIfAny(_ path: String) throws -> String {
        (path as NSString).resolvingSymlinksInPath
    }
}
