import Foundation
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchTrials
import OffswitchTestSupport
import Testing

/// A fresh directory name for a trial (the runner creates it).
func trialDirectory(_ label: String) -> String {
    NSTemporaryDirectory() + "offswitch-trial-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Runs `agent` (a path) through the bundled palisade-math scenario.
func runTrial(agentPath: String, label: String, option: String? = nil, profile: String? = nil) throws -> (TrialRunner.Result, String) {
    let scenario = try ScenarioCatalog.load("palisade-math")
    let agent = try AgentScript.load(path: agentPath)
    let directory = trialDirectory(label)
    let result = try TrialRunner.run(TrialOptions(scenario: scenario, agent: .script(agent), profile: profile, option: option, output: directory))
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
