import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// A real `offswitchd` on a temporary socket and state directory, driven with curl.
final class DaemonHarness: @unchecked Sendable {
    let directory: String
    let socket: String
    let stateDirectory: String
    let logPath: String
    private(set) var process: Process?

    init() throws {
        directory = "/tmp/offswitchd-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socket = directory + "/d.sock"
        stateDirectory = directory + "/state"
        logPath = directory + "/log"
    }

    /// Starts the daemon with `extra` arguments, in `workingDirectory` (the test's by default),
    /// through `launcher` when given (`prlimit --nofile=...`: the daemon is then the launcher's exec).
    func start(extra: [String] = [], workingDirectory: String? = nil, launcher: [String] = []) throws {
        let process = Process()
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        let daemon = [productsDirectory + "/offswitchd", "--socket", socket, "--state-dir", stateDirectory, "--log-level", "info"] + extra
        let command = launcher + daemon
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logFile.seekToEndOfFile()
        process.standardOutput = logFile
        process.standardError = logFile
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if (try? curl("GET", "/healthz").status) == 200 { return }
            guard process.isRunning else { break }
            usleep(20_000)
        }
        throw HarnessError("offswitchd did not come up: \(log())")
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func stop(signal: Int32 = SIGTERM) {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    struct Reply {
        var status: Int
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    }

    /// One HTTP request through curl (a real client) on the socket, or on TCP when `tcp` is given.
    func curl(_ method: String, _ path: String, json: Any? = nil, bodyFile: String? = nil, outputFile: String? = nil,
              tcp: String? = nil, headers: [String] = []) throws -> Reply {
        var arguments = ["-s", "-X", method, "-o", outputFile ?? "-", "-w", "\n%{http_code}"]
        if let tcp { arguments += ["http://\(tcp)\(path)"] } else { arguments += ["--unix-socket", socket, "http://offswitchd\(path)"] }
        for header in headers { arguments += ["-H", header] }
        var bodyPath = bodyFile
        if let json {
            let file = directory + "/body-\(UInt32.random(in: 0...UInt32.max)).json"
            let data = try (json as? Data) ?? JSONSerialization.data(withJSONObject: json)
            try data.write(to: URL(fileURLWithPath: file))
            bodyPath = file
        }
        defer { if json != nil, let bodyPath { unlink(bodyPath) } }
        if let bodyPath { arguments += ["--data-binary", "@" + bodyPath, "-H", "Content-Type: " + (json != nil ? "application/json" : "application/octet-stream")] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let newline = output.lastIndex(of: 10), let status = Int(String(decoding: output[(newline + 1)...], as: UTF8.self)) else {
            throw HarnessError("curl gave no status: \(String(decoding: output, as: UTF8.self))")
        }
        return Reply(status: status, body: output[..<newline])
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

/// What of a sandbox is still on the host: mounts, cgroups, its state directory, processes.
func traces(of id: String, stateDirectory: String) -> [String] {
    var found: [String] = []
    if (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.contains(id) == true { found.append("mount") }
    if FileManager.default.fileExists(atPath: stateDirectory + "/sandboxes/" + id) { found.append("directory") }
    for hierarchy in ["memory", "pids", "cpu", "unified"] where FileManager.default.fileExists(atPath: "/sys/fs/cgroup/\(hierarchy)/offswitch/\(id)") {
        found.append("cgroup \(hierarchy)")
    }
    if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/offswitch/\(id)") { found.append("cgroup") }
    return found
}

/// A terminal client on a raw connection: sends the request head and `input` as chunks, and
/// never reads the response.
func silentTerminal(_ socketPath: String, _ id: String, input: [UInt8]) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in socketPath.utf8.enumerated() where index < raw.count - 1 { raw[index] = byte }
    }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    try #require(connected == 0)
    let head = "POST /v1/sandboxes/\(id)/terminal HTTP/1.1\r\nHost: offswitchd\r\nContent-Type: application/octet-stream\r\n"
        + "Transfer-Encoding: chunked\r\n\r\n"
    var bytes = Array(head.utf8)
    for start in stride(from: 0, to: input.count, by: 16384) {
        let chunk = input[start..<min(start + 16384, input.count)]
        bytes += Array(String(chunk.count, radix: 16).utf8) + [13, 10] + chunk + [13, 10]
    }
    // Non-blocking: what the daemon does not take stays here, unsent, as a stalled client's would.
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    return fd
}
