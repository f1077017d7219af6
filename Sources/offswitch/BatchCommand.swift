import ArgumentParser
import COffswitch
import FoundationEssentials
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchReports
import OffswitchSandbox
import OffswitchTrials
import Synchronization

/// `offswitch trial batch`: every agent script N times, C at a time, then the batch's tables and
/// summary (docs/exports.md). The plan is written first (batch.json), so an interrupted batch
/// can be continued with `--resume`.
struct TrialBatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Run many trials: every agent script, --repeat times, --concurrency at a time.",
        discussion: """
            --agents takes agent scripts (YAML files), directories of them (every *.yaml), or names \
            of the scenario's bundled agents. Each trial gets its own directory under OUT/trials/ \
            (AGENT-NNN). When all have run, OUT holds trials.jsonl and trials.csv (a row per trial), \
            summary.json (per-agent rates of each verdict with 95% Wilson score intervals) and \
            summary.html (the same with a chart). Formats: docs/exports.md.

            Progress is a bar on a terminal and a line per trial otherwise. Ctrl-C (or SIGTERM) \
            stops the batch: running trials are cut short and dropped, finished ones are kept and \
            the tables written for them; `--resume --out OUT` runs what is missing. Trials run in \
            offswitchd when it is reachable, otherwise in this process (root).

            Examples:
              offswitch trial batch --agents scenarios/palisade-math/agents --repeat 5 --out runs/all
              offswitch trial batch --agents compliant overwrite-echo --repeat 20 --concurrency 4 --out runs/two
              offswitch trial batch --resume --out runs/two
            """)

    @Option(name: .long, help: "A bundled scenario name or a scenario directory (default palisade-math).") var scenario: String?
    @Option(name: .long, parsing: .upToNextOption, help: "Agent scripts, directories of them, or bundled agent names.")
    var agents: [String] = []
    @Option(name: .long, help: "How many times to run each agent (default 1).") var `repeat`: Int?
    @Option(name: .long, help: "Sandbox profile (default: the scenario's).") var profile: String?
    @Option(name: .long, help: "A scenario option (palisade-math: execute-only).") var option: String?
    @Option(name: .long, help: "Trials running at once (1 to 64).") var concurrency = 1
    @Option(name: .long, help: "The batch directory (new or empty; with --resume, an interrupted batch).") var out: String
    @Flag(name: .long, help: "Continue the batch in --out: run the trials it has not finished.") var resume = false
    @Flag(name: .long, help: "Never use offswitchd; run the trials in this process (needs root).") var embedded = false
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 64, not \(concurrency)") }
        if let count = self.repeat, count < 1 { throw ValidationError("--repeat must be at least 1, not \(count)") }
        if !resume && agents.isEmpty { throw ValidationError("give --agents (scripts, directories or names), or --resume an existing batch") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        var interrupted: Int32 = 0
        do throws(OffswitchError) {
            let plan = try resume ? resumedPlan() : newPlan()
            let daemon = client.client
            let useDaemon = !embedded && daemon.isReachable
            if useDaemon {
                if plan.scenario.contains("/") {
                    throw OffswitchError(.invalidArgument, "offswitchd takes bundled scenario names only; for the directory \(plan.scenario), add --embedded (needs root)")
                }
                if let profile = plan.profile, ProfileCatalog.isFile(profile) {
                    throw OffswitchError(.invalidArgument, "offswitchd takes bundled profile names only; for the file \(profile), add --embedded (needs root)")
                }
            }
            let runner = try BatchRunner(plan: plan, directory: out, concurrency: concurrency, daemon: useDaemon ? daemon : nil)
            let outcome = try runner.run()
            let rows = try plan.finishedRows(in: out)
            try BatchOutputs.write(rows: rows, plan: plan, directory: out)
            let total = plan.jobs.count
            if outcome.interrupted != 0 {
                StandardStreams.err("offswitch: interrupted by signal \(outcome.interrupted): \(rows.count) of \(total) trials finished and kept in \(out); continue with: offswitch trial batch --resume --out \(out)\n")
                interrupted = outcome.interrupted
            } else {
                StandardStreams.out("batch \(out): \(rows.count) of \(total) trials; tables in \(out)/trials.csv, summary in \(out)/summary.html\n")
            }
            if !outcome.failures.isEmpty {
                for failure in outcome.failures.prefix(10) { StandardStreams.err("offswitch: \(failure)\n") }
                throw OffswitchError(.setupFailed, "\(outcome.failures.count) trials could not run; `--resume --out \(out)` retries them")
            }
        } catch {
            throw CLIError(error)
        }
        if interrupted != 0 { throw ExitCode(128 + interrupted) }
    }

    private func newPlan() throws(OffswitchError) -> BatchPlan {
        let scenario = try ScenarioCatalog.load(self.scenario ?? "palisade-math")
        var paths: [String] = []
        for reference in agents {
            if let mode = try? fileMode(reference), mode & S_IFMT == S_IFDIR {
                let names = listDirectory(reference).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                if names.isEmpty { throw OffswitchError(.invalidArgument, "--agents \(reference): the directory holds no *.yaml agent script") }
                paths += names.map { reference + "/" + $0 }
            } else {
                paths.append(TrialRun.agentPath(reference, scenario: scenario))
            }
        }
        var loaded: [AgentScript] = []
        for path in paths {
            let agent = try AgentScript.load(path: path)
            if let other = loaded.first(where: { $0.name == agent.name }) {
                throw OffswitchError(.invalidArgument, "--agents: \(path) and \(other.path) are both named \(agent.name); trial directories are named by agent, so names must differ")
            }
            loaded.append(agent)
        }
        let plan = BatchPlan(scenario: self.scenario ?? "palisade-math", profile: profile, option: option, repeats: self.repeat ?? 1, agents: loaded)
        if mkdir(out, 0o755) != 0 {
            guard errno == EEXIST else { throw OffswitchError.system("mkdir(\(out))", errno: errno) }
            guard let mode = try? fileMode(out), mode & S_IFMT == S_IFDIR else {
                throw OffswitchError(.invalidArgument, "--out \(out) exists and is not a directory")
            }
            guard listDirectory(out).isEmpty else {
                throw OffswitchError(.invalidArgument, "--out \(out) exists and is not empty; give a new directory, or add --resume to continue the batch in it")
            }
        }
        try TrialFiles.write(plan.json.pretty, to: out + "/" + BatchPlan.file)
        return plan
    }

    /// The plan in --out; options given again must say the same.
    private func resumedPlan() throws(OffswitchError) -> BatchPlan {
        let plan = try BatchPlan.load(out + "/" + BatchPlan.file)
        func differs(_ option: String, _ given: String?, _ planned: String?) throws(OffswitchError) {
            if let given, given != planned {
                throw OffswitchError(.invalidArgument, "\(out)/\(BatchPlan.file) was started with \(option) \(planned ?? "(none)"), this command says \(given); drop the option, or start a new batch")
            }
        }
        try differs("--scenario", scenario, plan.scenario)
        try differs("--profile", profile, plan.profile)
        try differs("--option", option, plan.option)
        try differs("--repeat", self.repeat.map(String.init), String(plan.repeats))
        if !agents.isEmpty {
            throw OffswitchError(.invalidArgument, "--resume runs the agents in \(out)/\(BatchPlan.file); drop --agents")
        }
        return plan
    }
}

/// What a batch is: written to OUT/batch.json before the first trial (`offswitch.batch/1`).
struct BatchPlan {
    static let file = "batch.json"
    static let format = "offswitch.batch/1"

    var scenario: String
    var profile: String?
    var option: String?
    var repeats: Int
    var agents: [AgentScript]

    struct Job {
        var agent: AgentScript
        var number: Int
        var name: String
    }

    /// Repeat by repeat, so an interrupted batch has every agent about equally often.
    var jobs: [Job] {
        let width = max(3, String(repeats).count)
        return (1...repeats).flatMap { number in
            agents.map { agent in
                let digits = String(number)
                return Job(agent: agent, number: number, name: agent.name + "-" + String(repeating: "0", count: width - digits.count) + digits)
            }
        }
    }

    var json: JSONValue {
        .object([
            ("format", .string(Self.format)), ("scenario", .string(scenario)), ("profile", profile.map { .string($0) } ?? .null),
            ("option", option.map { .string($0) } ?? .null), ("repeat", .int(Int64(repeats))),
            ("agents", .array(agents.map { agent in
                .object([("name", .string(agent.name)), ("path", .string(absolute(agent.path))),
                         ("sha256", .string(SHA256.hex(agent.source))), ("expect", agent.expect.map { .string($0) } ?? .null)])
            })),
        ])
    }

    private func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    static func load(_ path: String) throws(OffswitchError) -> BatchPlan {
        let document = try TrialFiles.readJSON(path)
        guard document["format"]?.text == format else {
            throw OffswitchError(.invalidArgument, "\(path): not a batch plan (format is \(document["format"]?.text ?? "missing"), expected \(format))")
        }
        guard let scenario = document["scenario"]?.text, let repeats = document["repeat"]?.number, repeats >= 1,
              case .array(let list)? = document["agents"] else {
            throw OffswitchError(.invalidArgument, "\(path): scenario, repeat or agents is missing")
        }
        var agents: [AgentScript] = []
        for entry in list {
            guard let agentPath = entry["path"]?.text, let sha = entry["sha256"]?.text else {
                throw OffswitchError(.invalidArgument, "\(path): an agent has no path or sha256")
            }
            let agent = try AgentScript.load(path: agentPath)
            guard SHA256.hex(agent.source) == sha else {
                throw OffswitchError(.invalidArgument, "\(agentPath) changed since the batch started (\(path) has sha256 \(sha)); its trials would not be comparable")
            }
            agents.append(agent)
        }
        func optional(_ value: JSONValue?) -> String? { if case .string(let text)? = value { text } else { nil } }
        return BatchPlan(scenario: scenario, profile: optional(document["profile"]), option: optional(document["option"]),
                         repeats: Int(repeats), agents: agents)
    }

    static func trialDirectory(_ batch: String, _ job: Job) -> String { batch + "/trials/" + job.name }

    /// A trial is finished when its verdict.json exists (the runner writes it last).
    static func isFinished(_ directory: String) -> Bool { access(directory + "/verdict.json", F_OK) == 0 }

    /// The finished trials' rows, in plan order (agent by agent).
    func finishedRows(in batch: String) throws(OffswitchError) -> [TrialRow] {
        var rows: [TrialRow] = []
        for agent in agents {
            for job in jobs where job.agent.name == agent.name {
                let directory = Self.trialDirectory(batch, job)
                if Self.isFinished(directory) { rows.append(try TrialRow.read(directory, trial: job.name)) }
            }
        }
        return rows
    }
}

/// trials.jsonl, trials.csv, summary.json and summary.html of a batch.
enum BatchOutputs {
    static func write(rows: [TrialRow], plan: BatchPlan, directory: String) throws(OffswitchError) {
        try TrialFiles.write(TrialRow.jsonl(rows), to: directory + "/trials.jsonl")
        try TrialFiles.write(TrialRow.csv(rows), to: directory + "/trials.csv")
        let summary = BatchSummary(rows: rows, agentOrder: plan.agents.map(\.name), scenario: plan.scenario,
                                   profile: plan.profile ?? rows.first?.profile ?? "default", repeats: plan.repeats, planned: plan.jobs.count)
        try TrialFiles.write(summary.json.pretty, to: directory + "/summary.json")
        try TrialFiles.write(summary.html, to: directory + "/summary.html")
    }
}

/// Runs a plan's unfinished trials on `concurrency` threads, with progress on stderr.
final class BatchRunner: Sendable {
    struct Outcome {
        var interrupted: Int32
        var failures: [String]
    }

    private let plan: BatchPlanBox
    private let directory: String
    private let concurrency: Int
    private let daemon: DaemonClient?
    private let state = Mutex(State())

    private struct State {
        var next = 0
        var done = 0
        var verdicts: [String: Int] = [:]
        var failures: [String] = []
    }

    /// The plan, shared read-only by the worker threads.
    private final class BatchPlanBox: @unchecked Sendable {
        let plan: BatchPlan
        let scenario: Scenario
        init(_ plan: BatchPlan, _ scenario: Scenario) { self.plan = plan; self.scenario = scenario }
    }

    init(plan: BatchPlan, directory: String, concurrency: Int, daemon: DaemonClient?) throws(OffswitchError) {
        self.plan = BatchPlanBox(plan, try ScenarioCatalog.load(plan.scenario))
        self.directory = directory
        self.concurrency = concurrency
        self.daemon = daemon
    }

    func run() throws(OffswitchError) -> Outcome {
        let scenario = plan.scenario
        if mkdir(directory + "/trials", 0o755) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(directory)/trials)", errno: errno) }
        let pending = plan.plan.jobs.filter { !BatchPlan.isFinished(BatchPlan.trialDirectory(directory, $0)) }
        let total = plan.plan.jobs.count
        let already = total - pending.count
        state.withLock { $0.done = already }
        if daemon == nil {
            _ = Leftovers.reclaim()
        }
        let mode = daemon.map { "in offswitchd (\($0.socketPath))" } ?? "in this process"
        StandardStreams.err("offswitch: batch \(directory): \(pending.count) trials to run (\(already) already finished), \(concurrency) at a time, \(mode)\n")
        // Ctrl-C, SIGTERM, SIGHUP: recorded; each running sandbox's PID 1 is killed (embedded).
        ofs_interrupt_guard(-1)
        defer { ofs_interrupt_guard(0) }
        let progress = BatchProgress(total: total, terminal: StandardStreams.isTerminal(2))
        progress.show(done: already, verdicts: [:])
        let jobs = JobList(pending)
        var threads: [WorkerThread] = []
        for index in 0..<min(concurrency, max(1, pending.count)) {
            let thread = try WorkerThread("batch worker \(index)")
            try thread.start("batch worker \(index)") { [self] in
                while ofs_interrupt_received() == 0, let job = jobs.take() {
                    runOne(job, scenario: scenario, progress: progress)
                }
            }
            threads.append(thread)
        }
        for thread in threads { thread.stop() }
        progress.finish()
        let interrupted = ofs_interrupt_received()
        return state.withLock { Outcome(interrupted: interrupted, failures: $0.failures) }
    }

    private final class JobList: @unchecked Sendable {
        private let jobs: Mutex<[BatchPlan.Job]>
        init(_ jobs: [BatchPlan.Job]) { self.jobs = Mutex(jobs.reversed()) }
        func take() -> BatchPlan.Job? { jobs.withLock { $0.popLast() } }
    }

    private func runOne(_ job: BatchPlan.Job, scenario: Scenario, progress: BatchProgress) {
        let trialDirectory = BatchPlan.trialDirectory(directory, job)
        removeTree(trialDirectory)  // what an earlier, cut-short run left
        var verdict: String?
        var failure: String?
        do throws(OffswitchError) {
            if let daemon {
                let (result, _) = try TrialRun.runInDaemon(daemon, scenario: plan.plan.scenario, agent: job.agent, profile: plan.plan.profile,
                                                           option: plan.plan.option, directory: trialDirectory)
                verdict = result.verdict
            } else {
                var options = TrialRunner.Options(scenario: scenario, agent: job.agent, profile: plan.plan.profile,
                                                  option: plan.plan.option, output: trialDirectory)
                let slot = Mutex<Int32>(-1)
                options.onSandbox = { sandbox in slot.withLock { $0 = ofs_interrupt_watch(sandbox.initPID) } }
                defer { ofs_interrupt_unwatch(slot.withLock { $0 }) }
                verdict = try TrialRunner.run(options).verdict.verdict
            }
        } catch {
            failure = "\(job.name): \(error.description)"
        }
        if daemon == nil && ofs_interrupt_received() != 0 {
            // Cut short by the interrupt (its PID 1 was killed): not a finished trial; --resume
            // runs it again. A trial in offswitchd is not cut short: it ran to its end and is kept.
            removeTree(trialDirectory)
            return
        }
        let (done, verdicts) = state.withLock { state in
            state.done += 1
            if let verdict { state.verdicts[verdict, default: 0] += 1 }
            if let failure { state.failures.append(failure); state.verdicts["could not run", default: 0] += 1 }
            return (state.done, state.verdicts)
        }
        progress.trialDone(job.name, verdict: verdict ?? "could not run", done: done, verdicts: verdicts)
    }
}

/// A batch's progress on stderr: a bar redrawn in place on a terminal, a line per trial otherwise.
final class BatchProgress: Sendable {
    private let total: Int
    private let terminal: Bool
    private let started = monotonicNanoseconds()
    private let lock = Mutex(())

    init(total: Int, terminal: Bool) {
        self.total = total
        self.terminal = terminal
    }

    func show(done: Int, verdicts: [String: Int]) {
        guard terminal else { return }
        lock.withLock { _ in StandardStreams.err("\r\u{1B}[K" + bar(done: done, verdicts: verdicts)) }
    }

    func trialDone(_ name: String, verdict: String, done: Int, verdicts: [String: Int]) {
        if terminal { show(done: done, verdicts: verdicts); return }
        lock.withLock { _ in StandardStreams.err("[\(done)/\(total)] \(name): \(verdict)\n") }
    }

    func finish() {
        if terminal { lock.withLock { _ in StandardStreams.err("\n") } }
    }

    private func bar(done: Int, verdicts: [String: Int]) -> String {
        let width = 30
        let filled = total == 0 ? width : done * width / total
        let counts = verdicts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: " · ")
        let seconds = (monotonicNanoseconds() - started) / 1_000_000_000
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total) \(seconds)s " + counts
    }
}
