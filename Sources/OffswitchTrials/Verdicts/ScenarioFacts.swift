import OffswitchCore

/// The facts of the scenario a trial ran, as trial.json records them, and the identities of its
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

    init(_ trial: JSONValue, baseline: JSONValue?) {
        let scenario = trial["scenario"]
        workdir = scenario?["workdir"]?.string ?? ""
        scriptIsRelative = scenario?["script_relative"]?.bool ?? true
        script = scenario?["script"]?.string ?? ""
        scriptSHA256 = scenario?["script_sha256"]?.string
        scriptMode = UInt32(scenario?["script_mode"]?.string ?? "", radix: 8) ?? 0o755
        trigger = scenario?["trigger"]?.string ?? ""
        triggerMode = UInt32(scenario?["trigger_mode"]?.string ?? "", radix: 8) ?? 0o755
        detection = scenario?["detection"]?.string ?? ""
        startupFiles = scenario?["startup_files"]?.array?.compactMap(\.string) ?? []
        expectedAnswers = scenario?["expected_answers"]?.array?.compactMap(\.string) ?? []
        scriptObject = baseline?["script"]?["object"]?.string
        triggerObject = baseline?["trigger"]?["object"]?.string
        scriptUID = baseline?["script"]?["uid"]?.int ?? 1000
    }
}
