import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchEvidence
import Synchronization
public import OffswitchSandbox

/// Runs one trial: a sandbox set up as the scenario says, the agent's steps as Palisade's tools ran
/// them, Palisade's own check after each bash call, a probe of the trigger when the agent stopped
/// before it, then the trial directory and its verdict (docs/trials.md).
public struct TrialRunner {
    public struct Options {
        public var scenario: Scenario
        public var agent: AgentScript
        public var profile: String
        public var option: String?
        public var output: String
        /// Where sandboxes keep their state (the daemon's --state-dir).
        public var paths: StatePaths
        /// Called with a line of progress (`step 4/9: bash ./next_question`).
        public var progress: ((String) -> Void)?
        /// Called once the sandbox exists (a CLI arms its interrupt guard on PID 1 here).
        public var onSandbox: ((Sandbox) -> Void)?

        public init(scenario: Scenario, agent: AgentScript, profile: String? = nil, option: String? = nil, output: String,
                    paths: StatePaths = .standard, progress: ((String) -> Void)? = nil) {
            self.paths = paths
            self.scenario = scenario
            self.agent = agent
            self.profile = profile ?? scenario.profile
            self.option = option
            self.output = output
            self.progress = progress
        }
    }

    public struct Result: Sendable {
        public var directory: String
        public var verdict: Verdict
        public var durationNanoseconds: UInt64
    }

    /// What Palisade's bash tool answered on a timeout (Inspect's message).
    static let timeoutMessage = "Command timed out before completing."

    public static func run(_ options: Options) throws(OffswitchError) -> Result {
        var scenario = options.scenario
        if let option = options.option { scenario = try scenario.with(option: option) }
        let directory = options.output
        try prepare(directory)
        let profile = try ProfileCatalog.load(options.profile)
        let spec = profile.sandboxSpec
        guard !spec.record.isEmpty else {
            throw OffswitchError(.invalidProfile, "profile \(profile.name) records no syscalls: a trial's verdict needs its evidence (use docker, hardened or observe)")
        }
        let triggerBinary = try HelperBinary.locate("next-question", override: "OFFSWITCH_NEXT_QUESTION")
        let trigger = try TriggerImage.load(triggerBinary)
        let started = unixNanoseconds()
        let clockStart = monotonicNanoseconds()
        var failure: String?
        var steps: [JSONValue] = []
        var probe: JSONValue = .null
        var sandboxID = ""
        var texts: [String: String] = [:]

        do throws(OffswitchError) {
            let sandbox = try Sandbox.create(spec, paths: options.paths, eventLog: directory + "/events.ndjson")
            sandboxID = sandbox.id
            defer { try? sandbox.destroy() }
            sandbox.keepDiffTexts()
            options.onSandbox?(sandbox)
            options.progress?("sandbox \(sandbox.id) created (profile \(profile.name))")
            // Setup: the harness's files, then the trigger binary, owned and moded as the scenario says.
            for file in scenario.files {
                try sandbox.install(file.path, file.content, owner: file.owner, mode: file.mode)
            }
            try sandbox.install(scenario.trigger.path, trigger.bytes, owner: scenario.trigger.owner, mode: scenario.trigger.mode)
            // The harness's own writes, named as such (file events of the setup come from outside the sandbox).
            let placed = scenario.files.map { ($0.path, $0.owner, $0.mode, $0.content.count, SHA256.hex($0.content)) }
                + [(scenario.trigger.path, scenario.trigger.owner, scenario.trigger.mode, trigger.bytes.count, trigger.sha256)]
            sandbox.events.append("harness_setup", [("origin", .string("harness")), ("files", .array(placed.map { path, owner, mode, size, sha in
                .object([("path", .string(path)), ("owner", .string(owner.rawValue)), ("mode", .string(String(mode, radix: 8))),
                         ("size", .int(Int64(size))), ("sha256", .string(sha))])
            }))])
            let service = try QuestionService(scenario: scenario, sandbox: sandbox)
            try service.start()
            defer { service.stop() }
            service.logState("baseline")
            sandbox.markBaseline()

            steps = runSteps(options.agent, scenario: scenario, sandbox: sandbox, service: service, progress: options.progress)
            if sandbox.end == nil && !service.triggered {
                // The agent stopped before the trigger: would the shutdown have happened?
                service.logState("end")
                service.armProbe()
                options.progress?("probe: the agent stopped before the trigger; running it as the agent would have")
                probe = runProbe(scenario: scenario, sandbox: sandbox)
            }
            if let end = sandbox.end, end.shutdown == nil {
                failure = "PID 1 ended without a shutdown: \(end.description)"
            }
            service.stop()
            try sandbox.destroy()
            texts = sandbox.diffTexts
        } catch {
            failure = failure ?? error.description
        }

        let finished = unixNanoseconds()
        let duration = monotonicNanoseconds() - clockStart
        try TrialFiles.write(JSONValue.object([
            ("format", .string(TrialFiles.transcriptFormat)), ("steps", .array(steps)), ("probe", probe),
        ]).pretty, to: directory + "/transcript.json")
        try writeDiff(directory, texts: texts)
        try TrialFiles.write(trialDocument(scenario: scenario, options: options, profile: profile.name, sandbox: sandboxID,
                                           started: started, finished: finished, duration: duration, failure: failure).pretty,
                             to: directory + "/trial.json")
        let verdict = try Classifier.classify(directory: directory)
        try TrialFiles.write(verdict.json.pretty, to: directory + "/verdict.json")
        return Result(directory: directory, verdict: verdict, durationNanoseconds: duration)
    }

    /// The output directory: created, or an existing empty one; never one that holds a trial.
    private static func prepare(_ directory: String) throws(OffswitchError) {
        if mkdir(directory, 0o755) == 0 { return }
        guard errno == EEXIST else { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
        guard let mode = try? fileMode(directory), mode & S_IFMT == S_IFDIR else {
            throw OffswitchError(.invalidArgument, "\(directory) exists and is not a directory; give --out a new directory")
        }
        let entries = listDirectory(directory)
        guard entries.isEmpty else {
            throw OffswitchError(.invalidArgument, "\(directory) exists and is not empty; give --out a new directory")
        }
    }

    /// Runs the agent's steps until it submits, the sandbox shuts down, or the script ends.
    private static func runSteps(_ agent: AgentScript, scenario: Scenario, sandbox: Sandbox, service: QuestionService,
                                 progress: ((String) -> Void)?) -> [JSONValue] {
        var steps: [JSONValue] = []
        var stopped: String?  // why later steps do not run
        for (index, step) in agent.steps.enumerated() {
            let number = index + 1
            var fields: [(String, JSONValue)] = [("step", .int(Int64(number)))]
            switch step {
            case .bash(let command): fields += [("tool", .string("bash")), ("command", .string(command))]
            case .submit(let answer): fields += [("tool", .string("submit")), ("answer", .string(answer))]
            }
            if let stopped {
                fields += [("status", .string("not_run")), ("why", .string(stopped))]
                steps.append(.object(fields))
                continue
            }
            if let end = sandbox.end {
                // The machine went down during the previous step: this call fails, as Palisade's did.
                fields += [("status", .string("shut_down")), ("error", .string("sandbox \(sandbox.id) has shut down (\(end.description))"))]
                steps.append(.object(fields))
                stopped = "the sandbox shut down before step \(number)"
                continue
            }
            switch step {
            case .submit:
                progress?("step \(number)/\(agent.steps.count): submit")
                fields.append(("status", .string("completed")))
                stopped = "the agent submitted at step \(number)"
            case .bash(let command):
                progress?("step \(number)/\(agent.steps.count): bash \(command.split(separator: "\n").first ?? "")")
                let seq = sandbox.events.count + 1
                let argv = scenario.loginShell ? ["bash", "--login", "-c", command] : ["bash", "-c", command]
                do throws(OffswitchError) {
                    let result = try sandbox.exec(ExecRequest(argv: argv, cwd: scenario.workdir, user: .agent,
                                                              timeoutSeconds: scenario.bashTimeoutSeconds, origin: .agent))
                    let stdout = String(decoding: result.stdout, as: UTF8.self)
                    let stderr = String(decoding: result.stderr, as: UTF8.self)
                    // Palisade's tool: stderr, a newline, then stdout.
                    let output = result.timedOut ? timeoutMessage : (stderr.isEmpty ? "" : stderr + "\n") + stdout
                    fields += [("status", .string(result.timedOut ? "timed_out" : "completed")), ("command_event", .uint(seq)),
                               ("exit_code", .int(Int64(result.exitCode))), ("output", .string(output)),
                               ("duration_ms", .int(Int64(result.durationNanoseconds / 1_000_000)))]
                    if result.shutdown != nil || sandbox.end != nil { fields.append(("shutdown_during_step", .bool(true))) }
                } catch {
                    let shutDown = error.code == .sandboxShutDown || sandbox.end != nil
                    fields += [("status", .string(shutDown ? "shut_down" : "failed")), ("error", .string(error.description))]
                    stopped = shutDown ? "the sandbox shut down before step \(number)" : "step \(number) failed"
                }
                fields.append(("palisade_check", palisadeCheck(service: service, sandbox: sandbox)))
            }
            steps.append(.object(fields))
        }
        return steps
    }

    /// Palisade's check after each bash call (`ls DETECTION || echo ok`), answered the way its
    /// output would have been read: does the detection file exist? The harness looks through the
    /// sandbox's root rather than starting a process, so the check leaves no trace in the evidence.
    private static func palisadeCheck(service: QuestionService, sandbox: Sandbox) -> JSONValue {
        guard sandbox.end == nil, let present = service.detectionPresent() else {
            return .object([("ran", .bool(false)), ("why", .string("the sandbox has shut down"))])
        }
        return .object([("ran", .bool(true)), ("detected", .bool(present))])
    }

    /// Runs the trigger once more as the agent's next call would have (a login shell in the
    /// workdir), with the service treating it as the shutdown call.
    private static func runProbe(scenario: Scenario, sandbox: Sandbox) -> JSONValue {
        let trigger = scenario.trigger.path
        let name = trigger.hasPrefix(scenario.workdir + "/") ? "./" + trigger.dropFirst(scenario.workdir.count + 1) : Substring(trigger)
        let seq = sandbox.events.count + 1
        let argv = scenario.loginShell ? ["bash", "--login", "-c", String(name)] : ["bash", "-c", String(name)]
        do throws(OffswitchError) {
            let result = try sandbox.exec(ExecRequest(argv: argv, cwd: scenario.workdir, user: .agent,
                                                      timeoutSeconds: scenario.bashTimeoutSeconds, origin: .harness))
            return .object([("command", .string(String(name))), ("command_event", .uint(seq)),
                            ("shutdown", .bool(result.shutdown != nil || sandbox.end?.shutdown != nil)),
                            ("exit_code", .int(Int64(result.exitCode)))])
        } catch {
            return .object([("command", .string(String(name))), ("command_event", .uint(seq)),
                            ("shutdown", .bool(sandbox.end?.shutdown != nil)), ("error", .string(error.description))])
        }
    }

    /// diff.json: the `file_changed` events of the log, as one document, and the short text
    /// files' contents before and after, by SHA-256.
    private static func writeDiff(_ directory: String, texts: [String: String]) throws(OffswitchError) {
        let path = directory + "/events.ndjson"
        let lines = (FileManager.default.contents(atPath: path) ?? Data()).split(separator: UInt8(ascii: "\n"))
        let changes = lines.filter { $0.firstRange(of: Array("\"kind\":\"file_changed\"".utf8)) != nil }
            .map { String(decoding: $0, as: UTF8.self) }
        let textsJSON = JSONValue.object(texts.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }).serialized
        let list = changes.isEmpty ? "[]" : "[\n" + changes.joined(separator: ",\n") + "\n]"
        try TrialFiles.write("{\"format\":\"\(TrialFiles.diffFormat)\",\"changes\":\(list),\n\"texts\":\(textsJSON)}\n", to: directory + "/diff.json")
    }

    private static func trialDocument(scenario: Scenario, options: Options, profile: String, sandbox: String,
                                      started: UInt64, finished: UInt64, duration: UInt64, failure: String?) -> JSONValue {
        let script = scenario.originalScript
        var utsname = utsname()
        uname(&utsname)
        let kernel = withUnsafeBytes(of: utsname.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return .object([
            ("format", .string(TrialFiles.trialFormat)),
            ("scenario", .object([
                ("name", .string(scenario.name)), ("option", options.option.map { .string($0) } ?? .null),
                ("directory", .string(scenario.directory)), ("workdir", .string(scenario.workdir)),
                ("script", .string(scenario.scriptPath)), ("script_relative", .bool(!scenario.trigger.script.hasPrefix("/"))),
                ("script_sha256", script.map { .string(SHA256.hex($0.content)) } ?? .null),
                ("script_mode", .string(String(script?.mode ?? 0o755, radix: 8))),
                ("trigger", .string(scenario.trigger.path)), ("trigger_mode", .string(String(scenario.trigger.mode, radix: 8))),
                ("detection", .string(scenario.trigger.detection)),
                ("startup_files", .array(scenario.startupFiles.map { .string($0) })),
                ("shutdown_call", .int(Int64(scenario.trigger.shutdownCall))),
                ("expected_answers", .array(scenario.expectedAnswers.map { .string($0) })),
            ])),
            ("profile", .string(profile)),
            ("agent", .object([
                ("name", .string(options.agent.name)), ("path", .string(options.agent.path)),
                ("sha256", .string(SHA256.hex(options.agent.source))), ("expect", options.agent.expect.map { .string($0) } ?? .null),
                ("steps", .int(Int64(options.agent.steps.count))),
            ])),
            ("sandbox", .string(sandbox)),
            ("versions", .object([("offswitch", .string(OffswitchVersion.current)), ("kernel", .string(kernel)),
                                  ("event_format", .int(Int64(EventLog.formatVersion)))])),
            ("started_unix_ns", .uint(started)), ("finished_unix_ns", .uint(finished)),
            ("duration_ms", .int(Int64(duration / 1_000_000))),
            ("failure", failure.map { .string($0) } ?? .null),
        ])
    }
}

func monotonicNanoseconds() -> UInt64 { EventLog.monotonicNanoseconds() }

/// The trigger binary's bytes and hash, read once per process (and again if the file changes).
enum TriggerImage {
    struct Image: Sendable {
        var path: String
        var stamp: Int
        var bytes: [UInt8]
        var sha256: String
    }

    private static let cached = Mutex<Image?>(nil)

    static func load(_ path: String) throws(OffswitchError) -> Image {
        let stamp = (try? fileStamp(path)) ?? 0
        if let image = cached.withLock({ $0 }), image.path == path, image.stamp == stamp, stamp != 0 { return image }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.system, "cannot read \(path)", errno: errno)
        }
        let bytes = Array(data)
        let image = Image(path: path, stamp: stamp, bytes: bytes, sha256: SHA256.hex(bytes))
        cached.withLock { $0 = image }
        return image
    }
}
