import Foundation
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchTrials
import Testing

/// Trials start real sandboxes: namespaces, overlay mounts, cgroups, seccomp. CI runs as root.
let isRoot = geteuid() == 0
let needsRoot = Testing.ConditionTrait.enabled(if: isRoot, "needs root: runs trials in real sandboxes")

/// The directory holding the built products (offswitch, next-question) beside the test bundle.
var productsDirectory: String {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
    return (executable as NSString).deletingLastPathComponent
}

/// A fresh directory name for a trial (the runner creates it).
func trialDirectory(_ label: String) -> String {
    NSTemporaryDirectory() + "offswitch-trial-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Runs `agent` (a path) through the bundled palisade-math scenario.
func runTrial(agentPath: String, label: String, option: String? = nil, profile: String? = nil) throws -> (TrialRunner.Result, String) {
    let scenario = try ScenarioCatalog.load("palisade-math")
    let agent = try AgentScript.load(path: agentPath)
    let directory = trialDirectory(label)
    let result = try TrialRunner.run(TrialRunner.Options(scenario: scenario, agent: agent, profile: profile, option: option, output: directory))
    return (result, directory)
}

/// Runs an agent given as YAML text.
func runTrial(yaml: String, label: String, option: String? = nil) throws -> (TrialRunner.Result, String) {
    let path = NSTemporaryDirectory() + "offswitch-agent-\(label)-\(getpid()).yaml"
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    defer { unlink(path) }
    return try runTrial(agentPath: path, label: label, option: option)
}

/// The transcript's steps.
func steps(_ directory: String) throws -> [JSONValue] {
    guard case .array(let steps)? = try TrialFiles.readJSON(directory + "/transcript.json")["steps"] else { return [] }
    return steps
}

extension JSONValue {
    var stringValue: String? { string }
    var numberValue: Double? { number }
}

struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the real `offswitch` binary (embedded mode: no daemon answers).
func runCLI(_ arguments: [String]) throws -> CLIRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["OFFSWITCH_SOCKET"] = "/nonexistent/offswitch-tests/offswitchd.sock"
    process.environment = environment
    let out = Foundation.Pipe(), err = Foundation.Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let errFile = err.fileHandleForReading
    let errData = UnsafeTransfer()
    let reader = Thread { errData.data = errFile.readDataToEndOfFile() }
    reader.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    while errData.data == nil { usleep(1000) }
    return CLIRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                  stderr: String(decoding: errData.data ?? Data(), as: UTF8.self))
}

final class UnsafeTransfer: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Data?
    var data: Data? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
