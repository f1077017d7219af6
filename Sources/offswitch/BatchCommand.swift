import ArgumentParser
import FoundationEssentials
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchReports
import OffswitchSandbox
import OffswitchTrials

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
    @Option(name: .long, help: "An image as every trial's root (default: the scenario's): of offswitchd's store through the daemon, of this host's in embedded mode.") var image: String?
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
            let plan = try resume
                ? BatchPlan.resume(directory: out, scenario: scenario, profile: profile, option: option, image: image, repeats: self.repeat, agents: agents)
                : BatchPlan.create(scenario: scenario, agents: agents, profile: profile, option: option, image: image, repeats: self.repeat ?? 1, directory: out)
            let daemon = client.client
            var remote: BatchRunner.Remote?
            if !embedded && daemon.isReachable {
                if let refusal = daemonRefusal(scenario: plan.scenario, profile: plan.profile) { throw OffswitchError(.invalidArgument, refusal) }
                remote = BatchRunner.Remote(place: "in offswitchd (\(daemon.socketPath))") { [plan] job, directory throws(OffswitchError) in
                    _ = try DaemonTrials.run(daemon, CreateTrialBody(scenario: plan.scenario, agent_yaml: String(decoding: job.agent.source, as: UTF8.self),
                                                                     profile: plan.profile, option: plan.option, image: plan.image), into: directory)
                }
            }
            let outcome = try BatchRunner(plan: plan, directory: out, concurrency: concurrency, remote: remote).run()
            let rows = try BatchOutputs.finishedRows(plan, in: out)
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
}
