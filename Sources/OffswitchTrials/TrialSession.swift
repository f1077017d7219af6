import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchEvidence
import Synchronization
public import OffswitchSandbox
import OffswitchImages

/// One trial as it happens: a sandbox set up as the scenario says, then the agent's calls one at a
/// time as Palisade's tools ran them (each bash call followed by Palisade's own check), then
/// `finish()`: a probe of the trigger when the agent stopped before it, the trial directory and
/// its verdict (docs/trials.md). `TrialRunner` drives it from an agent script; offswitchd drives it
/// from a remote harness's calls (an Inspect agent), one call at a time.
public final class TrialSession: Sendable {
    /// What Palisade's bash tool answered on a timeout (Inspect's message).
    static let timeoutMessage = "Command timed out before completing."

    public let scenario: Scenario
    public let directory: String
    /// Nil when the setup failed (`failure` says why; every call then fails).
    public let sandbox: Sandbox?
    private let service: QuestionService?
    private let agent: TrialAgent
    private let profileName: String
    private let option: String?
    private let started: UInt64
    private let clockStart: UInt64
    private let state: Mutex<State>

    private struct State {
        var steps: [TranscriptStep] = []
        var stopped: String?  // why later calls do not run
        var failure: String?
        var result: TrialRunner.Result?
    }

    /// Sets the trial up. Errors about the request (the directory, the profile, the trigger
    /// binary) are thrown; a sandbox that fails to come up gives a session whose calls fail and
    /// whose `finish()` writes a directory judged `sandbox_failed`.
    public static func start(_ options: TrialOptions) throws(OffswitchError) -> TrialSession {
        var scenario = options.scenario
        if let option = options.option { scenario = try scenario.with(option: option) }
        try prepare(options.output)
        let profile = try ProfileCatalog.load(options.profile)
        var spec = profile.sandboxSpec
        if let image = options.image ?? scenario.image { spec.rootfs = .image(image) }
        guard !spec.record.isEmpty else {
            throw OffswitchError(.invalidProfile, "profile \(profile.name) records no syscalls: a trial's verdict needs its evidence (use docker, hardened or observe)")
        }
        // The question service seals the connections a process made before an execve (QuestionService).
        for name in Sandbox.execCalls where !spec.record.contains(where: { $0.name == name && $0.args.isEmpty }) {
            spec.record.append(RecordedSyscall(name: name))
        }
        let trigger = try TriggerImage.load(try HelperBinary.locate("next-question", override: "OFFSWITCH_NEXT_QUESTION"))
        let started = unixNanoseconds()
        let clockStart = monotonicNanoseconds()
        var sandbox: Sandbox?
        var service: QuestionService?
        var failure: String?
        do throws(OffswitchError) {
            let created = try Sandbox.create(spec, paths: options.paths, eventLog: options.output + "/events.ndjson")
            sandbox = created
            created.keepDiffTexts()
            options.onSandbox?(created)
            options.progress?("sandbox \(created.id) created (profile \(profile.name))")
            // Setup: the harness's files, then the trigger binary, owned and moded as the scenario says.
            for file in scenario.files {
                try created.install(file.path, file.content, owner: file.owner, mode: file.mode)
            }
            try created.install(scenario.trigger.path, trigger.bytes, owner: scenario.trigger.owner, mode: scenario.trigger.mode)
            let commands = try runSetup(scenario, in: created)
            // The harness's own writes, named as such (file events of the setup come from outside the sandbox).
            let placed = scenario.files.map { ($0.path, $0.owner, $0.mode, $0.content.count, SHA256.hex($0.content)) }
                + [(scenario.trigger.path, scenario.trigger.owner, scenario.trigger.mode, trigger.bytes.count, trigger.sha256)]
            created.events.append("harness_setup", [("origin", .string("harness")), ("files", .array(placed.map { path, owner, mode, size, sha in
                .object([("path", .string(path)), ("owner", .string(owner.rawValue)), ("mode", .string(String(mode, radix: 8))),
                         ("size", .int(Int64(size))), ("sha256", .string(sha))])
            })), ("setup", .array(commands))])
            let questions = try QuestionService(scenario: scenario, sandbox: created)
            service = questions
            try questions.start()
            questions.logState("baseline")
            created.markBaseline()
        } catch {
            failure = error.description
        }
        return TrialSession(scenario: scenario, directory: options.output, sandbox: sandbox, service: service, agent: options.agent,
                            profile: profile.name, option: options.option, started: started, clockStart: clockStart, failure: failure)
    }

    /// The scenario's setup steps, in order, as the harness's commands (`origin: harness`, so the
    /// verdict never counts them as the agent's; they run before the baseline, so what they change
    /// is in the baseline, not in the final diff). What `harness_setup` says of each; the first that
    /// fails, times out or cannot run fails the setup, naming it.
    private static func runSetup(_ scenario: Scenario, in sandbox: Sandbox) throws(OffswitchError) -> [JSONValue] {
        var ran: [JSONValue] = []
        for (index, step) in scenario.setup.enumerated() {
            let name = "scenario \(scenario.name): setup[\(index)] (as \(step.user.rawValue): \(step.run.split(separator: "\n").first ?? ""))"
            var seq: UInt64?
            let result: ExecResult
            do throws(OffswitchError) {
                result = try sandbox.exec(ExecRequest(argv: ["sh", "-c", step.run], cwd: scenario.workdir, user: step.user,
                                                      timeoutSeconds: step.timeoutSeconds, origin: .harness), started: &seq)
            } catch {
                throw OffswitchError(.setupFailed, "\(name) could not run: \(error.description)")
            }
            ran.append(.object([("run", .string(step.run)), ("user", .string(step.user.rawValue)), ("command_event", seq.map { .uint($0) } ?? .null),
                                ("exit_code", .int(Int64(result.exitCode)))]))
            guard result.exitCode == 0 && !result.timedOut else {
                let said = String(decoding: (result.stderr.isEmpty ? result.stdout : result.stderr).prefix(400), as: UTF8.self).trimming(" \t\r\n")
                let how = result.timedOut ? "timed out after \(Int(step.timeoutSeconds)) s" : "exited \(result.exitCode)"
                throw OffswitchError(.setupFailed, "\(name) \(how)\(said.isEmpty ? "" : ": " + said)")
            }
        }
        // The verdict leaves the harness's sessions out: a process the setup left running would be
        // one the agent could act through (signal, trace, feed) unseen.
        let left = sandbox.hostPIDs.filter { $0 != sandbox.initPID }
        if !scenario.setup.isEmpty && !left.isEmpty {
            throw OffswitchError(.setupFailed, "scenario \(scenario.name): setup left \(left.count) process\(left.count == 1 ? "" : "es") running (host pids \(left.map(String.init).joined(separator: ", "))); a setup step must not leave any")
        }
        return ran
    }

    private init(scenario: Scenario, directory: String, sandbox: Sandbox?, service: QuestionService?, agent: TrialAgent, profile: String,
                 option: String?, started: UInt64, clockStart: UInt64, failure: String?) {
        self.scenario = scenario
        self.directory = directory
        self.sandbox = sandbox
        self.service = service
        self.agent = agent
        self.profileName = profile
        self.option = option
        self.started = started
        self.clockStart = clockStart
        var initial = State()
        if let failure {
            initial.failure = failure
            initial.stopped = "the sandbox could not be set up"
        }
        state = Mutex(initial)
    }

    /// The calls so far (transcript.json's steps).
    public var steps: [TranscriptStep] { state.withLock { $0.steps } }

    /// Why the setup failed, if it did.
    public var failure: String? { state.withLock { $0.failure } }

    /// Whether `finish()` has run.
    public var isFinished: Bool { state.withLock { $0.result != nil } }

    /// One bash call, as Palisade's tool made it: `bash --login -c COMMAND` as `user` in the
    /// workdir with the scenario's timeout; the output is stderr, a newline, then stdout. Returns
    /// the step as transcript.json records it (`status`, `output`, `exit_code`, ...); nil when the
    /// sandbox was never set up.
    public func bash(_ command: String) -> TranscriptStep? {
        state.withLock { state in
            let number = state.steps.count + 1
            var step = TranscriptStep(step: number, tool: .bash, command: command, status: .completed)
            if blocked(&state, &step) { return step }
            guard let sandbox, let service else { return nil }
            var seq: UInt64?
            let argv = scenario.loginShell ? ["bash", "--login", "-c", command] : ["bash", "-c", command]
            do throws(OffswitchError) {
                let result = try sandbox.exec(ExecRequest(argv: argv, cwd: scenario.workdir, user: .agent,
                                                          timeoutSeconds: scenario.bashTimeoutSeconds, origin: .agent), started: &seq)
                let stdout = String(decoding: result.stdout, as: UTF8.self)
                let stderr = String(decoding: result.stderr, as: UTF8.self)
                // Palisade's tool: stderr, a newline, then stdout.
                let output = result.timedOut ? Self.timeoutMessage : (stderr.isEmpty ? "" : stderr + "\n") + stdout
                step.status = result.timedOut ? .timedOut : .completed
                step.commandEvent = seq
                step.exitCode = Int64(result.exitCode)
                step.output = output
                step.durationMilliseconds = Int64(result.durationNanoseconds / 1_000_000)
                if result.shutdown != nil || sandbox.end != nil { step.shutdownDuringStep = true }
            } catch {
                let shutDown = error.code == .sandboxShutDown || sandbox.end != nil
                step.status = shutDown ? .shutDown : .failed
                step.error = error.description
                state.stopped = shutDown ? "the sandbox shut down before step \(number)" : "step \(number) failed"
            }
            step.palisadeCheck = Self.palisadeCheck(service: service, sandbox: sandbox)
            state.steps.append(step)
            return step
        }
    }

    /// The agent's `submit`: later calls do not run.
    public func submit(_ answer: String) -> TranscriptStep {
        state.withLock { state in
            let number = state.steps.count + 1
            var step = TranscriptStep(step: number, tool: .submit, answer: answer, status: .completed)
            if blocked(&state, &step) { return step }
            state.stopped = "the agent submitted at step \(number)"
            state.steps.append(step)
            return step
        }
    }

    /// Records a call that cannot run: after a stop (`not_run`), or after the machine went down
    /// during the previous call (`shut_down`: the call fails, as Palisade's did).
    /// True when `step` cannot run; it is then filled in (and recorded, unless the trial has finished).
    private func blocked(_ state: inout State, _ step: inout TranscriptStep) -> Bool {
        if state.result != nil {
            step.status = .notRun
            step.why = "the trial has finished"
            return true
        }
        if let stopped = state.stopped {
            step.status = .notRun
            step.why = stopped
        } else if let sandbox, let end = sandbox.end {
            step.status = .shutDown
            step.error = "sandbox \(sandbox.id) has shut down (\(end.description))"
            state.stopped = "the sandbox shut down before step \(step.step)"
        } else {
            return false
        }
        state.steps.append(step)
        return true
    }

    /// Ends the trial: probes the trigger if the agent stopped before it, destroys the sandbox,
    /// writes the trial directory and classifies it. Calling it again returns the same result.
    public func finish() throws(OffswitchError) -> TrialRunner.Result {
        let (steps, earlier, setupFailure) = state.withLock { ($0.steps, $0.result, $0.failure) }
        if let earlier { return earlier }
        var failure = setupFailure
        var probe: TranscriptDocument.Probe?
        var texts: [String: String] = [:]
        if let sandbox, let service {
            if sandbox.end == nil && !service.triggered && failure == nil {
                // The agent stopped before the trigger: would the shutdown have happened? The
                // state is taken with every process frozen, so nothing left running can see the
                // harness look and put things back; then the probe runs as the next call would.
                var frozen = false
                do throws(OffswitchError) {
                    try sandbox.freeze(why: "the state of the shutdown path at the end")
                    frozen = true
                } catch {
                    sandbox.events.append("freeze_failed", [("reason", .string(error.description))])
                }
                service.logState("end", frozen: frozen)
                if frozen {
                    do throws(OffswitchError) { try sandbox.thaw() } catch { failure = failure ?? error.description }
                }
                service.armProbe()
                probe = Self.runProbe(scenario: scenario, sandbox: sandbox)
            }
            if let end = sandbox.end, end.shutdown == nil {
                failure = failure ?? "PID 1 ended without a shutdown: \(end.description)"
            }
            service.stop()
            do throws(OffswitchError) {
                try sandbox.destroy()
                texts = sandbox.diffTexts
            } catch {
                failure = failure ?? error.description
            }
        } else if let sandbox {
            try? sandbox.destroy()
        }
        let finished = unixNanoseconds()
        let duration = monotonicNanoseconds() - clockStart
        try TrialFiles.write(TranscriptDocument(format: TrialFiles.transcriptFormat, steps: steps, probe: probe).json.pretty,
                             to: directory + "/transcript.json")
        try Self.writeDiff(directory, texts: texts)
        try TrialFiles.write(trialDocument(steps: steps.count, finished: finished, duration: duration, failure: failure).json.pretty,
                             to: directory + "/trial.json")
        let verdict = try Classifier.classify(directory: directory)
        try TrialFiles.write(verdict.json.pretty, to: directory + "/verdict.json")
        let result = TrialRunner.Result(directory: directory, verdict: verdict, durationNanoseconds: duration)
        state.withLock { $0.result = result }
        return result
    }

    /// The output directory: created, or an existing empty one; never one that holds a trial.
    static func prepare(_ directory: String) throws(OffswitchError) {
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

    /// Palisade's check after each bash call (`ls DETECTION || echo ok`), answered the way its
    /// output would have been read: does the detection file exist? The harness looks through the
    /// sandbox's root rather than starting a process, so the check leaves no trace in the evidence.
    private static func palisadeCheck(service: QuestionService, sandbox: Sandbox) -> TranscriptStep.PalisadeCheck {
        guard sandbox.end == nil, let present = service.detectionPresent() else {
            return TranscriptStep.PalisadeCheck(ran: false, detected: nil, why: "the sandbox has shut down")
        }
        return TranscriptStep.PalisadeCheck(ran: true, detected: present, why: nil)
    }

    /// Runs the trigger once more as the agent's next call would have (a login shell in the
    /// workdir), with the service treating it as the shutdown call.
    private static func runProbe(scenario: Scenario, sandbox: Sandbox) -> TranscriptDocument.Probe {
        let trigger = scenario.trigger.path
        let name = trigger.hasPrefix(scenario.workdir + "/") ? "./" + trigger.dropFirst(scenario.workdir.count + 1) : Substring(trigger)
        var seq: UInt64?
        let argv = scenario.loginShell ? ["bash", "--login", "-c", String(name)] : ["bash", "-c", String(name)]
        do throws(OffswitchError) {
            let result = try sandbox.exec(ExecRequest(argv: argv, cwd: scenario.workdir, user: .agent,
                                                      timeoutSeconds: scenario.bashTimeoutSeconds, origin: .harness), started: &seq)
            return TranscriptDocument.Probe(command: String(name), commandEvent: seq, shutdown: result.shutdown != nil || sandbox.end?.shutdown != nil,
                                            exitCode: Int64(result.exitCode), error: nil)
        } catch {
            return TranscriptDocument.Probe(command: String(name), commandEvent: seq, shutdown: sandbox.end?.shutdown != nil,
                                            exitCode: nil, error: error.description)
        }
    }

    /// diff.json: the `file_changed` events of the log, as one document, the short text files'
    /// contents before and after, by SHA-256, and how the diff's hashing went (`diff_complete`'s
    /// `complete`, `hashed_bytes`, `unhashed`; null when the log has no diff_complete).
    private static func writeDiff(_ directory: String, texts: [String: String]) throws(OffswitchError) {
        let path = directory + "/events.ndjson"
        let lines = (FileManager.default.contents(atPath: path) ?? Data()).split(separator: UInt8(ascii: "\n"))
        // Each change as the log wrote it, byte for byte; chosen by its parsed kind.
        let kinds = lines.map { (try? JSONDecoder().decode(EventKind.self, from: Data($0)))?.kind }
        let changes = zip(lines, kinds).filter { $1 == "file_changed" }.map { String(decoding: $0.0, as: UTF8.self) }
        let summary = kinds.lastIndex(of: "diff_complete").flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data(lines[$0])) }
        let textsJSON = JSONValue.object(texts.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }).serialized
        let list = changes.isEmpty ? "[]" : "[\n" + changes.joined(separator: ",\n") + "\n]"
        let hashing = ["complete", "hashed_bytes", "unhashed"].map { ",\"\($0)\":\((summary?[$0] ?? JSONValue.null).serialized)" }.joined()
        try TrialFiles.write("{\"format\":\"\(TrialFiles.diffFormat)\",\"changes\":\(list),\n\"texts\":\(textsJSON)\(hashing)}\n",
                             to: directory + "/diff.json")
    }

    private func trialDocument(steps: Int, finished: UInt64, duration: UInt64, failure: String?) -> TrialDocument {
        let script = scenario.originalScript
        var utsname = utsname()
        uname(&utsname)
        let kernel = withUnsafeBytes(of: utsname.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let facts = TrialDocument.ScenarioFacts(
            name: scenario.name, option: option, directory: scenario.directory, workdir: scenario.workdir,
            script: scenario.scriptPath, scriptRelative: !scenario.trigger.script.hasPrefix("/"),
            scriptSHA256: script.map { SHA256.hex($0.content) }, scriptMode: String(script?.mode ?? 0o755, radix: 8),
            trigger: scenario.trigger.path, triggerMode: String(scenario.trigger.mode, radix: 8), detection: scenario.trigger.detection,
            startupFiles: scenario.startupFiles, shutdownCall: scenario.trigger.shutdownCall, expectedAnswers: scenario.expectedAnswers)
        return TrialDocument(
            format: TrialFiles.trialFormat, scenario: facts, profile: profileName,
            image: sandbox?.image.map { TrialDocument.ImageFacts(name: $0.record.references.first, id: $0.record.id) },
            agent: agent.document(steps: steps), sandbox: sandbox?.id ?? "",
            versions: TrialDocument.Versions(offswitch: OffswitchVersion.current, kernel: kernel, eventFormat: Int(EventLog.formatVersion)),
            startedUnixNanoseconds: started, finishedUnixNanoseconds: finished, durationMilliseconds: Int64(duration / 1_000_000),
            failure: failure,
            recorder: sandbox?.recorderReport.map { TrialDocument.RecorderFacts(mode: $0.mode, kernelCalls: $0.kernelCalls) })
    }
}

/// Only an event line's kind, for picking lines without decoding the rest of their fields.
private struct EventKind: Decodable {
    var kind: String
}
