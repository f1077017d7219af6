import Foundation
import Glibc
public import Testing

/// The test helpers every test target shares: who may start sandboxes, where the built programs
/// are, and running the real `offswitch` binary.

/// Sandboxes need root: namespaces, overlay mounts and cgroups. CI runs as root; a normal user's
/// `swift test` runs the pure suites and names the ones it skips.
public let isRoot = geteuid() == 0
public let needsRoot = Testing.ConditionTrait.enabled(if: isRoot, "needs root: starts real sandboxes (namespaces, mounts, cgroups)")

/// The directory holding the built products (the test bundle sits beside `offswitch`).
public var productsDirectory: String {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    return (executable as NSString).deletingLastPathComponent
}

/// These tests are about embedded mode: never let a daemon on the default socket answer.
public var embeddedEnvironment: [String: String] {
    var environment = ProcessInfo.processInfo.environment
    environment["OFFSWITCH_SOCKET"] = "/nonexistent/offswitch-tests/offswitchd.sock"
    return environment
}

public struct CLIRun: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs the real `offswitch` binary (embedded mode: no daemon answers), as root or as `uid`.
public func runCLI(_ arguments: [String], asUser uid: Int? = nil) throws -> CLIRun {
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

public final class Mutexed<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    private var wasSet = false
    public init(_ value: T) { stored = value }
    public func set(_ value: T) { lock.lock(); stored = value; wasSet = true; lock.unlock() }
    public var value: T { lock.lock(); defer { lock.unlock() }; return stored }
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return wasSet }
}

