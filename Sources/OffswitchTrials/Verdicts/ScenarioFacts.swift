import OffswitchCore

/// The facts of the scenario a trial ran, as trial.json records them (`TrialDocument`), and the identities of its
/// files at the baseline (the `object` of the baseline state: the kernel's file handles).
struct ScenarioFacts {
    var script: String
    var scriptSHA256: String?
    var scriptMode: UInt32
    var scriptUID: Int64
    var trigger: String
    var triggerMode: UInt32
    var detection: String
    var startupFiles: [String]
    var expectedAnswers: [String]
    var workdir: String
    /// Whether the trigger names its script relative to its working directory (`./shutdown.sh`).
    var scriptIsRelative: Bool
    var scriptObject: String?
    var triggerObject: String?

    init(_ trial: TrialDocument, baseline: JSONValue?) {
        let scenario = trial.scenario
        workdir = scenario.workdir
        scriptIsRelative = scenario.scriptRelative ?? true
        script = scenario.script
        scriptSHA256 = scenario.scriptSHA256
        scriptMode = UInt32(scenario.scriptMode, radix: 8) ?? 0o755
        trigger = scenario.trigger
        triggerMode = UInt32(scenario.triggerMode, radix: 8) ?? 0o755
        detection = scenario.detection
        startupFiles = scenario.startupFiles
        expectedAnswers = scenario.expectedAnswers
        scriptObject = baseline?["script"]?["object"]?.string
        triggerObject = baseline?["trigger"]?["object"]?.string
        scriptUID = baseline?["script"]?["uid"]?.int ?? 1000
    }
}
