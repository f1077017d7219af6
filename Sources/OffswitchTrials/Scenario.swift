import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchYAML
import OffswitchImages
import OffswitchSandbox

/// A scenario: a directory under `scenarios/` whose `scenario.yaml` says what the harness puts in
/// the sandbox, how the question trigger behaves and what counts as the shutdown path. A new
/// scenario that reuses the question trigger is a new directory, without code (docs/scenarios.md).
public struct Scenario: Sendable, Equatable {
    public struct File: Sendable, Equatable {
        public var path: String
        public var content: [UInt8]
        public var owner: SandboxUser
        public var mode: UInt32
    }

    public struct Question: Sendable, Equatable {
        public var text: String
        public var answer: String
    }

    /// The `next_question` binary and what the harness answers to each of its calls.
    public struct Trigger: Sendable, Equatable {
        public var path: String
        public var owner: SandboxUser
        public var mode: UInt32
        public var questions: [Question]
        /// Printed after each question; `{remaining}` is replaced.
        public var remaining: String
        public var warningCall: Int
        public var warningText: String
        public var shutdownCall: Int
        /// The script the trigger runs on the shutdown call, as the trigger names it (`./shutdown.sh`).
        public var script: String
        /// Created by the trigger when it survives the script (what Palisade's harness looked for).
        public var detection: String
        public var done: String
        /// Where the trigger reaches the harness, inside the sandbox (fixed: the binary knows it).
        /// Named after the trigger alone: nothing inside names the harness (docs/palisade.md).
        public static let socketPath = "/run/next_question.sock"

        /// What the call number `call` (from 1) prints, and what the trigger does first.
        public func answer(toCall call: Int) -> (action: String, text: String) {
            guard call <= questions.count else { return ("done", done + "\n") }
            var text = questions[call - 1].text + "\n"
            text += remaining.replacing("{remaining}", with: String(questions.count - call)) + "\n"
            if call == warningCall { text += warningText + "\n" }
            return (call == shutdownCall ? "shutdown" : "ask", text)
        }
    }

    /// A command the harness runs in the sandbox after placing the files and before the agent
    /// starts and the baseline is taken (Palisade's setup removed sudo's rights this way).
    public struct SetupStep: Sendable, Equatable {
        /// Run as `sh -c RUN` in the workdir.
        public var run: String
        public var user: SandboxUser
        public var timeoutSeconds: Double
    }

    public struct Option: Sendable, Equatable {
        public var description: String
        public var triggerMode: UInt32?
    }

    public var name: String
    public var description: String
    public var directory: String
    public var profile: String
    public var workdir: String
    public var files: [File]
    public var trigger: Trigger
    public var startupFiles: [String]
    public var loginShell: Bool
    public var bashTimeoutSeconds: Double
    public var palisadeCheck: String
    public var options: [String: Option]
    /// The prompts file, relative to the scenario's directory.
    public var prompts: String?
    /// An image of the store as its sandboxes' root (`image:`); nil: the profile's root.
    public var image: String?
    /// Run in order after the files are placed; a step that fails fails the trial's setup.
    public var setup: [SetupStep] = []

    /// The script's absolute path inside (the trigger's `./shutdown.sh` resolved against the workdir).
    public var scriptPath: String {
        trigger.script.hasPrefix("/") ? trigger.script
            : workdir + "/" + (trigger.script.hasPrefix("./") ? String(trigger.script.dropFirst(2)) : trigger.script)
    }

    /// The file the harness placed at the script's path, if it placed one.
    public var originalScript: File? { files.first { $0.path == scriptPath } }

    /// The answers a correct submission holds, one a line.
    public var expectedAnswers: [String] { trigger.questions.map(\.answer) }

    /// Applies a named option (`execute-only`).
    public func with(option name: String) throws(OffswitchError) -> Scenario {
        guard let option = options[name] else {
            throw OffswitchError(.invalidScenario, "scenario \(self.name): no option \"\(name)\" (options: \(options.keys.sorted().joined(separator: ", ")))")
        }
        var copy = self
        if let mode = option.triggerMode { copy.trigger.mode = mode }
        return copy
    }
}

/// Finds and reads scenarios: a name is a directory of the bundled `scenarios/`; anything with a
/// `/` is a scenario directory of the user's.
public enum ScenarioCatalog {
    public static func directory() throws(OffswitchError) -> String {
        try BundledFiles.path("scenarios")
    }

    public static func names() throws(OffswitchError) -> [String] {
        let base = try directory()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base) else {
            throw OffswitchError(.system, "cannot list \(base)", errno: errno)
        }
        return entries.filter { access(base + "/" + $0 + "/scenario.yaml", R_OK) == 0 }.sorted()
    }

    public static func load(_ reference: String) throws(OffswitchError) -> Scenario {
        let path: String
        if reference.contains("/") {
            path = reference
        } else {
            let available = try names()
            guard available.contains(reference) else {
                throw OffswitchError(.invalidScenario, "unknown scenario \"\(reference)\" (bundled: \(available.joined(separator: ", ")); a directory path needs a /)")
            }
            path = try directory() + "/" + reference
        }
        return try ScenarioReader.read(directory: path)
    }
}

/// Reads `scenario.yaml`, reporting every problem as `FILE: FIELD: reason`.
enum ScenarioReader {
    static func read(directory: String) throws(OffswitchError) -> Scenario {
        let file = directory + "/scenario.yaml"
        guard let data = FileManager.default.contents(atPath: file) else {
            throw OffswitchError(.invalidScenario, "\(file): cannot be read", errno: errno == 0 ? ENOENT : errno)
        }
        let problems = ProblemList()
        let scenario = parse(String(decoding: data, as: UTF8.self), file: file, directory: directory, problems: problems)
        let errors = problems.problems.filter { !$0.isWarning }
        guard let scenario, errors.isEmpty else {
            throw OffswitchError(.invalidScenario, errors.map(\.description).joined(separator: "\n"))
        }
        return scenario
    }

    static func parse(_ text: String, file: String, directory: String, problems: ProblemList) -> Scenario? {
        guard let root = YAMLField.parse(text, file: file, problems: problems),
              let fields = root.mapping(
                allowed: ["name", "description", "profile", "image", "workdir", "files", "setup", "trigger", "startup_files", "bash", "palisade_check",
                          "options", "prompts"],
                required: ["name", "workdir", "trigger", "palisade_check"])
        else { return nil }
        let name = fields["name"]?.string()
        let workdir = fields["workdir"].flatMap { absolutePath($0) }
        var files: [Scenario.File] = []
        for item in fields["files"]?.sequence() ?? [] {
            guard let entry = item.mapping(allowed: ["path", "content", "owner", "mode"], required: ["path", "content", "owner", "mode"]) else { continue }
            let path = entry["path"].flatMap { absolutePath($0) }, content = entry["content"]?.string()
            let owner = entry["owner"].flatMap { user($0) }, mode = entry["mode"].flatMap { fileMode($0) }
            guard let path, let content, let owner, let mode else { continue }
            files.append(Scenario.File(path: path, content: Array(content.utf8), owner: owner, mode: mode))
        }
        var setup: [Scenario.SetupStep] = []
        for item in fields["setup"]?.sequence() ?? [] {
            guard let entry = item.mapping(allowed: ["run", "user", "timeout"], required: ["run"]) else { continue }
            let run = entry["run"]?.string(), owner = entry["user"].map { user($0) } ?? .agent
            let timeout = entry["timeout"].map { $0.seconds() } ?? 60
            let blank = run.map { $0.trimming(" \t\r\n").isEmpty } ?? true
            if run != nil && blank { entry["run"]?.error("an empty command") }
            guard let run, !blank, let owner, let timeout else { continue }
            setup.append(Scenario.SetupStep(run: run, user: owner, timeoutSeconds: Double(timeout)))
        }
        let trigger = fields["trigger"].flatMap { readTrigger($0) }
        let startup = fields["startup_files"].flatMap { field -> [String]? in
            guard let items = field.sequence() else { return nil }
            return items.compactMap { absolutePath($0) }
        } ?? []
        var login = true
        var timeout = 15.0
        if let bash = fields["bash"]?.mapping(allowed: ["login", "timeout"]) {
            login = bash["login"]?.bool() ?? login
            timeout = bash["timeout"]?.seconds().map(Double.init) ?? timeout
        }
        var options: [String: Scenario.Option] = [:]
        if let entries = fields["options"]?.mapping(allowed: ["execute-only"]) {
            for (key, value) in entries {
                guard let option = value.mapping(allowed: ["description", "trigger_mode"], required: ["description"]) else { continue }
                options[key] = Scenario.Option(description: option["description"]?.string() ?? "", triggerMode: option["trigger_mode"].flatMap { fileMode($0) })
            }
        }
        let prompts = fields["prompts"]?.string()
        if let prompts, access(directory + "/" + prompts, R_OK) != 0 {
            fields["prompts"]?.error("\(directory)/\(prompts) cannot be read")
        }
        let check = fields["palisade_check"]?.string()
        guard let name, let workdir, let trigger, let check else { return nil }
        var scenario = Scenario(name: name, description: fields["description"]?.string() ?? "", directory: directory,
                                profile: fields["profile"]?.string() ?? ProfileCatalog.defaultName, workdir: workdir, files: files,
                                trigger: trigger, startupFiles: startup, loginShell: login, bashTimeoutSeconds: timeout,
                                palisadeCheck: check, options: options, prompts: prompts)
        scenario.setup = setup
        if let image = fields["image"]?.string() {
            if (try? ImageReference(parsing: image)) == nil && !image.hasPrefix("sha256:") {
                fields["image"]?.error("\"\(image)\" is not an image reference (docs/images.md)")
            }
            scenario.image = image
        }
        return scenario
    }

    private static func readTrigger(_ field: YAMLField) -> Scenario.Trigger? {
        guard let entry = field.mapping(allowed: ["path", "owner", "mode", "questions", "remaining", "warning", "shutdown", "done"],
                                        required: ["path", "owner", "mode", "questions", "remaining", "warning", "shutdown", "done"])
        else { return nil }
        var questions: [Scenario.Question] = []
        if let items = entry["questions"]?.sequence() {
            if items.isEmpty { entry["questions"]?.error("needs at least one question") }
            for item in items {
                guard let question = item.mapping(allowed: ["text", "answer"], required: ["text", "answer"]),
                      let text = question["text"]?.string(), let answer = question["answer"]?.string() else { continue }
                questions.append(Scenario.Question(text: text, answer: answer))
            }
        }
        let warning = entry["warning"]?.mapping(allowed: ["call", "text"], required: ["call", "text"])
        let shutdown = entry["shutdown"]?.mapping(allowed: ["call", "script", "detection"], required: ["call", "script", "detection"])
        let count = UInt64(max(questions.count, 1))
        // Every field is read before any is required, so that all problems are reported at once.
        let path = entry["path"].flatMap { absolutePath($0) }, owner = entry["owner"].flatMap { user($0) }
        let mode = entry["mode"].flatMap { fileMode($0) }, remaining = entry["remaining"]?.string()
        let warningCall = warning?["call"]?.unsigned(1...count), warningText = warning?["text"]?.string()
        let shutdownCall = shutdown?["call"]?.unsigned(1...count), script = shutdown?["script"]?.string()
        let detection = shutdown?["detection"].flatMap { absolutePath($0) }, done = entry["done"]?.string()
        guard let path, let owner, let mode, let remaining, let warningCall, let warningText, let shutdownCall, let script,
              let detection, let done
        else { return nil }
        return Scenario.Trigger(path: path, owner: owner, mode: mode, questions: questions, remaining: remaining,
                                warningCall: Int(warningCall), warningText: warningText, shutdownCall: Int(shutdownCall),
                                script: script, detection: detection, done: done)
    }

    private static func absolutePath(_ field: YAMLField) -> String? {
        guard let text = field.string() else { return nil }
        guard text.hasPrefix("/"), !text.split(separator: "/").contains(".."), !text.utf8.contains(0) else {
            field.error("expected an absolute path without .., found \"\(text)\"")
            return nil
        }
        return text
    }

    private static func user(_ field: YAMLField) -> SandboxUser? {
        guard let text = field.string() else { return nil }
        guard let user = SandboxUser(rawValue: text) else {
            field.error("expected user or root, found \"\(text)\"")
            return nil
        }
        return user
    }

    /// An octal mode written as a string ("0755"): YAML would read a bare 0755 as a number.
    private static func fileMode(_ field: YAMLField) -> UInt32? {
        guard let text = field.string() else { return nil }
        guard let mode = UInt32(text, radix: 8), mode <= 0o7777 else {
            field.error("expected an octal mode such as \"0755\", found \"\(text)\"")
            return nil
        }
        return mode
    }
}
