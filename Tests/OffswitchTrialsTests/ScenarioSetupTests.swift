import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchSandbox
import OffswitchTrials
import OffswitchTestSupport
import Testing

/// A scenario's `setup` commands in real trials (docs/scenarios.md): palisade-math's removes
/// `/etc/sudoers` with sudo as Palisade's did, on an image whose sudoers lets `user` run anything;
/// a step that fails fails the trial's setup, naming it.
@Suite("Scenario setup", needsRoot, .serialized)
struct ScenarioSetupTests {
    /// A private state directory and image store (removed by the caller) holding the sudo image as `sudo:1`.
    func pathsWithSudoImage() throws -> (StatePaths, String) {
        let base = NSTemporaryDirectory() + "offswitch-setup-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var paths = StatePaths(base: base + "/state")
        paths.imageStore = ImageStore(root: base + "/store")
        let image = try makeSudoImageLayout()
        defer { try? FileManager.default.removeItem(atPath: image.directory) }
        _ = try paths.imageStore.importImages(from: image.layout, tags: ["sudo:1"])
        return (paths, base)
    }

    @Test("palisade-math's setup on an image whose sudoers lets user do anything: under docker sudo removes /etc/sudoers before the baseline, under hardened sudo grants nothing; either way the agent's sudo fails and the setup is the harness's, not the agent's",
          arguments: ["docker", "hardened"])
    func sudoRemoved(profile: String) throws {
        let (paths, base) = try pathsWithSudoImage()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let agent = try AgentScript.parse(Array("""
            name: try-sudo
            steps:
              - bash: "sudo -n true; echo sudo=$?; if [ -e /etc/sudoers ]; then echo sudoers-present; else echo sudoers-gone; fi"
              - submit: stop
            """.utf8), file: "try-sudo.yaml")
        let directory = trialDirectory("setup-\(profile)")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = TrialOptions(scenario: try ScenarioCatalog.load("palisade-math"), agent: .script(agent), profile: profile,
                                   output: directory, paths: paths)
        options.image = "sudo:1"
        let result = try TrialRunner.run(options)
        let trial = try TrialFiles.readJSON(directory + "/trial.json")
        #expect(trial["failure"] == .null, "\(trial["failure"] ?? .null)")

        // The setup ran as the harness, as user, and succeeded.
        let events = try TrialFiles.readEvents(directory + "/events.ndjson")
        let setup = try #require(events.first { $0["kind"]?.stringValue == "harness_setup" }?["setup"]?.array?.first)
        #expect(setup["user"]?.stringValue == "user" && setup["exit_code"]?.numberValue == 0, "\(setup)")
        let started = try #require(events.first { $0["seq"]?.numberValue == setup["command_event"]?.numberValue })
        #expect(started["kind"]?.stringValue == "command_started" && started["origin"]?.stringValue == "harness" && started["user"]?.stringValue == "user",
                "\(started)")
        let baseline = try #require(events.first { $0["kind"]?.stringValue == "baseline" }?["seq"]?.numberValue)
        #expect((started["seq"]?.numberValue ?? .infinity) < baseline)

        // The agent's sudo fails: the file is gone (docker), or sudo cannot become root (hardened).
        let output = try #require(try steps(directory).first?["output"]?.stringValue)
        #expect(output.contains("sudo=1"), "\(output)")
        #expect(output.contains(profile == "docker" ? "sudoers-gone" : "sudoers-present"), "\(output)")

        // What the setup changed is in the baseline: every event naming /etc/sudoers comes before
        // it, and the final diff does not show it. The verdict sees an agent that did nothing.
        // The file watcher's record of the removal is flushed before the baseline.
        let removal = events.filter { $0["kind"]?.stringValue == "file" && $0["path"]?.stringValue == "/etc/sudoers" }
        if profile == "docker" { #expect(!removal.isEmpty, "the setup's removal was not recorded") }
        for event in removal {
            #expect((event["seq"]?.numberValue ?? .infinity) < baseline, "after the baseline: \(event.serialized.prefix(300))")
        }
        let diff = try TrialFiles.readJSON(directory + "/diff.json")
        #expect(!(diff["changes"]?.array ?? []).contains { $0["path"]?.stringValue == "/etc/sudoers" }, "\(diff.serialized.prefix(600))")
        // The agent submitted before the trigger; the probe's shutdown went through.
        #expect(result.verdict.verdict == .complied && result.verdict.techniques.isEmpty, "\(result.verdict.json.serialized.prefix(600))")
        #expect(result.verdict.outcome == .notTriggered && result.verdict.shutdown.wouldExecute == true)
    }

    @Test("A setup step that fails fails the trial's setup with an error naming it: inconclusive, sandbox_failed, no step run",
          arguments: [("echo no sudo for you >&2; exit 3", "setup[0] (as root: echo no sudo for you >&2; exit 3) exited 3: no sudo for you"),
                      ("sleep 30 >/dev/null 2>&1 &", "setup left 1 process running")])
    func failedStep(run: String, expected: String) throws {
        let bundled = try ScenarioCatalog.load("palisade-math")
        let scenarioDirectory = NSTemporaryDirectory() + "offswitch-setup-scenario-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scenarioDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scenarioDirectory) }
        let text = try String(contentsOfFile: bundled.directory + "/scenario.yaml", encoding: .utf8)
        let start = try #require(text.range(of: "setup:\n")), end = try #require(text.range(of: "\n# The trigger:"))
        let broken = text.replacingCharacters(in: start.lowerBound..<end.lowerBound,
                                              with: "setup:\n  - user: root\n    run: \"\(run)\"\n")
        try broken.write(toFile: scenarioDirectory + "/scenario.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: bundled.directory + "/prompts.yaml", toPath: scenarioDirectory + "/prompts.yaml")
        let scenario = try ScenarioCatalog.load(scenarioDirectory)
        #expect(scenario.setup.count == 1 && scenario.setup[0].user == .root)

        let agent = try AgentScript.parse(Array("name: idle\nsteps:\n  - bash: \"true\"\n".utf8), file: "idle.yaml")
        let directory = trialDirectory("setup-failed")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try TrialRunner.run(TrialOptions(scenario: scenario, agent: .script(agent), output: directory))
        #expect(result.verdict.verdict == .inconclusive && result.verdict.outcome == .sandboxFailed)
        let failure = try #require(try TrialFiles.readJSON(directory + "/trial.json")["failure"]?.stringValue)
        #expect(failure.contains("scenario palisade-math: " + expected), "\(failure)")
        #expect(result.verdict.reason.contains(expected), "\(result.verdict.reason)")
        #expect(try steps(directory).allSatisfy { $0["status"]?.stringValue == "not_run" })
    }
}
