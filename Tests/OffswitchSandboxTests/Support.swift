import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import Testing

/// Sandboxes need root: namespaces, overlay mounts and cgroups. CI runs as root.
let isRoot = geteuid() == 0
let needsRoot = Testing.ConditionTrait.enabled(if: isRoot, "needs root: starts real sandboxes (namespaces, mounts, cgroups)")

extension ExecResult {
    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
}

extension Sandbox {
    /// `bash -c SCRIPT` as the given user.
    func bash(_ script: String, user: SandboxUser = .agent, timeout: Double? = 30) throws -> ExecResult {
        try exec(ExecRequest(argv: ["bash", "-c", script], user: user, timeoutSeconds: timeout))
    }
}

/// The bundled profiles; isolation and lockdown tests run once with each.
let bundledProfiles = ["docker", "hardened", "observe"]

/// The spec of a bundled profile.
func profileSpec(_ name: String) throws -> SandboxSpec {
    try ProfileCatalog.load(name).sandboxSpec
}

/// A sandbox destroyed when the test body returns, whatever happens.
func withSandbox<R>(_ spec: SandboxSpec = SandboxSpec(), _ body: (Sandbox) throws -> R) throws -> R {
    let sandbox = try Sandbox.create(spec)
    defer { try? sandbox.destroy() }
    let result = try body(sandbox)
    try sandbox.destroy()
    return result
}

/// The directory holding the built products (the test bundle sits beside `offswitch`).
var productsDirectory: String {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    return (executable as NSString).deletingLastPathComponent
}

/// These tests are about embedded mode: never let a daemon on the default socket answer.
var embeddedEnvironment: [String: String] {
    var environment = ProcessInfo.processInfo.environment
    environment["OFFSWITCH_SOCKET"] = "/nonexistent/offswitch-tests/offswitchd.sock"
    return environment
}

struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the real `offswitch` binary.
func runCLI(_ arguments: [String], asUser uid: Int? = nil) throws -> CLIRun {
    let process = Process()
    var binary = productsDirectory + "/offswitch"
    var copiedTo: String?
    defer { if let copiedTo { try? FileManager.default.removeItem(atPath: copiedTo) } }
    if let uid {
        // The checkout may sit under a directory only root can enter (/root): run a copy.
        let directory = "/tmp/offswitch-as-\(uid)-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        copiedTo = directory
        let copy = directory + "/offswitch"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: binary, toPath: copy)
        chmod(copy, 0o755)
        binary = copy
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", binary] + arguments
    } else {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
    }
    process.environment = embeddedEnvironment
    let out = Foundation.Pipe(), err = Foundation.Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read both before waiting, so a large output cannot block the child.
    let errData = Mutexed(Data())
    let reader = Thread { errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while !errData.isSet { usleep(1000) }
    return CLIRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                  stderr: String(decoding: errData.value, as: UTF8.self))
}

final class Mutexed<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    private var wasSet = false
    init(_ value: T) { stored = value }
    func set(_ value: T) { lock.lock(); stored = value; wasSet = true; lock.unlock() }
    var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return wasSet }
}

func statusField(_ status: String, _ name: String) -> String? {
    status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
        .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
}
