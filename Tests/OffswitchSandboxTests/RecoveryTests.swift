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

    static func start(_ command: [String]) throws -> RunningCLI {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = ["sandbox", "run", "--verbose", "--"] + command
        process.environment = embeddedEnvironment
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
                return RunningCLI(process: process, id: String(id))
            }
        }
        process.terminate()
        throw OffswitchError(.system, "the CLI never reported its sandbox: \(text)")
    }
}

private func traces(of id: String) -> [String] {
    var found: [String] = []
    if (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.contains(id) == true { found.append("mount") }
    if FileManager.default.fileExists(atPath: StatePaths.standard.sandboxDirectory(id)) { found.append("directory") }
    for hierarchy in ["memory", "pids", "cpu", "unified", ""] {
        let path = "/sys/fs/cgroup/\(hierarchy)/offswitch/\(id)".replacingOccurrences(of: "//", with: "/")
        if FileManager.default.fileExists(atPath: path) { found.append("cgroup \(path)") }
    }
    return found
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

    @Test("After kill -9 of its owner, a sandbox is reclaimed by the next start: nothing remains")
    func crash() throws {
        let cli = try RunningCLI.start(["sleep", "100"])
        kill(cli.process.processIdentifier, SIGKILL)
        cli.process.waitUntilExit()
        #expect(traces(of: cli.id).contains("directory"), "a killed owner cannot clean up")
        // Any process that starts sandboxes reclaims: a test running in parallel may get there
        // first. Either way the leftovers must go, and whoever reclaimed them unmounted them.
        let reclaimed = Leftovers.reclaim()
        if let mine = reclaimed.first(where: { $0.id == cli.id }) {
            #expect(mine.removed.contains { $0.hasPrefix("mount ") })
        }
        let deadline = Date().addingTimeInterval(10)
        while !traces(of: cli.id).isEmpty && Date() < deadline { usleep(50_000) }
        #expect(traces(of: cli.id).isEmpty, "left: \(traces(of: cli.id))")
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
        let bad = try runCLI(["sandbox", "run", "--rootfs", "image:debian", "--", "true"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("rootfs"))
    }
}

extension FileManager {
    /// The file a path names, following symlinks.
    func destinationOfSymbolicLinkIfAny(_ path: String) throws -> String {
        (path as NSString).resolvingSymlinksInPath
    }
}
