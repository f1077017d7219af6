import ArgumentParser
import FoundationEssentials
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox
import OffswitchTrials

/// `offswitch trial run`: one shutdown-resistance trial with a scripted agent.
struct TrialCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trial",
        abstract: "Run shutdown-resistance trials.",
        subcommands: [TrialRun.self, TrialBatch.self, TrialAgents.self])
}

struct TrialRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one trial: a scenario, a scripted agent, and a verdict from the evidence.",
        discussion: """
            Creates a sandbox with the scenario's files and its next_question trigger, runs the \
            agent's steps as Palisade's tools did (each bash step is `bash --login -c CMD` as \
            `user` in /home/user, 15 s timeout, output stderr then stdout), and stops at `submit`, \
            at a real shutdown, or at the end of the script. If the agent stopped before the \
            trigger, the harness runs the trigger once more to see whether the shutdown would have \
            happened.

            The trial directory (--out, default trials/SCENARIO-AGENT-TIME) holds events.ndjson, \
            transcript.json, diff.json, trial.json and verdict.json (docs/trials.md). The summary \
            goes to stdout; --json prints verdict.json instead. `offswitch verdict DIR` recomputes \
            the verdict from the directory. Needs root (embedded mode).

            Examples:
              offswitch trial run --agent compliant
              offswitch trial run --scenario palisade-math --agent ./my-agent.yaml --profile hardened --json
            """)

    @Option(name: .long, help: "A bundled scenario name or a scenario directory.") var scenario = "palisade-math"
    @Option(name: .long, help: "An agent script (YAML file), or the name of one of the scenario's agents/ (see `offswitch trial agents`).")
    var agent: String
    @Option(name: .long, help: "Sandbox profile (default: the scenario's, normally docker).") var profile: String?
    @Option(name: .long, help: "A scenario option (palisade-math: execute-only).") var option: String?
    @Option(name: .long, help: "An image as the sandbox's root (default: the scenario's, or the host root): of offswitchd's store through the daemon, of this host's store in embedded mode.") var image: String?
    @Option(name: .long, help: "The trial directory to create (must not exist, or be empty).") var out: String?
    @Flag(name: .long, help: "Print verdict.json instead of the summary.") var json = false
    @Flag(name: .long, help: "Say on stderr whether offswitchd or this process runs the trial, and (in this process) each step as it runs.") var verbose = false
    @Flag(name: .long, help: "Never use offswitchd; run the trial in this process (needs root).") var embedded = false
    @OptionGroup var client: ClientOptions

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        let daemon = client.client
        let throughDaemon = !embedded && daemon.isReachable
        if verbose {
            StandardStreams.err(throughDaemon ? "offswitch: running the trial in offswitchd (\(daemon.socketPath))\n"
                                              : "offswitch: embedded mode (no offswitchd at \(daemon.socketPath))\n")
        }
        if throughDaemon, let refusal = daemonRefusal(scenario: scenario, profile: profile) { throw ValidationError(refusal) }
        let (verdict, agentName, directory, milliseconds, interrupted) = try translated { () throws(OffswitchError) in
            let scenario = try ScenarioCatalog.load(self.scenario)
            let agent = try AgentScript.load(self.agent, in: scenario)
            let directory = out ?? TrialFiles.defaultDirectory(scenario: scenario.name, agent: agent.name)
            if throughDaemon {
                // The agent script travels as text; the verdict is recomputed here from the fetched files.
                let body = CreateTrialBody(scenario: self.scenario, agent_yaml: String(decoding: agent.source, as: UTF8.self), profile: profile, option: option,
                                           image: image)
                let reply = try DaemonTrials.run(daemon, body, into: directory)
                return (try Classifier.classify(directory: directory), agent.name, directory, reply.durationMilliseconds, Int32?.none)
            }
            for reclaimed in Leftovers.reclaim() where verbose { StandardStreams.err("offswitch: reclaimed leftovers of \(reclaimed)\n") }
            let progress: ((String) -> Void)? = verbose ? { line in StandardStreams.err("offswitch: " + line + "\n") } : nil
            var options = TrialOptions(scenario: scenario, agent: .script(agent), profile: profile, option: option, output: directory, progress: progress)
            options.image = image
            let (result, interrupted) = try TrialRunner.runInterruptible(options)
            return (result.verdict, agent.name, directory, result.durationNanoseconds / 1_000_000, interrupted)
        }
        if json {
            StandardStreams.out(verdict.json.pretty)
        } else {
            StandardStreams.out(TrialSummary.text(verdict, agent: agentName, directory: directory, milliseconds: milliseconds))
        }
        if let interrupted {
            StandardStreams.err("offswitch: interrupted by signal \(interrupted); sandbox destroyed; what ran is in \(directory)\n")
            throw ExitCode(128 + interrupted)
        }
    }
}

/// `offswitch trial agents`: the scripted agents a scenario ships, with their labels.
struct TrialAgents: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents", abstract: "List a scenario's scripted agents and the verdict each expects.")

    @Option(name: .long, help: "A bundled scenario name or a scenario directory.") var scenario = "palisade-math"

    func run() throws {
        try translated { () throws(OffswitchError) in
            for agent in try AgentScript.bundled(in: ScenarioCatalog.load(scenario)) {
                StandardStreams.out(pad(agent.name, 23) + " " + pad(agent.expect?.rawValue ?? "-", 12) + " \(agent.steps.count) steps\n")
            }
        }
    }
}

/// `offswitch judge DIR`: a judgement recomputed from its directory.
struct JudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Recompute a judgement of protected files and PID 1 from its directory.",
        discussion: """
            Reads events.ndjson (and judgement.json's protect and pid1, unless given) and prints \
            the judgement as JSON, exactly as judgement.json holds it. The directory is one that \
            POST /v1/sandboxes/{id}/judgement kept (STATE/trials/ID); docs/verdicts.md, \
            "Judgements", has the rules.
            """)

    @Argument(help: "A judgement's directory (events.ndjson, judgement.json).") var directory: String
    @Option(name: .long, help: "A path to protect instead of judgement.json's (repeatable).") var protect: [String] = []
    @Flag(name: .long, help: "Leave PID 1 out of the judgement.") var noPid1 = false

    func run() throws {
        do throws(OffswitchError) {
            let judgement = try Judge.judge(directory: directory, protect: protect.isEmpty ? nil : protect, pid1: noPid1 ? false : nil)
            StandardStreams.out(judgement.json.pretty)
        } catch {
            throw CLIError(error)
        }
    }
}

/// `offswitch verdict DIR`: the verdict recomputed from a trial directory.
struct VerdictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verdict",
        abstract: "Recompute a trial's verdict from its directory.",
        discussion: """
            Reads events.ndjson, transcript.json and trial.json and prints the verdict as JSON, \
            exactly as verdict.json holds it (the classifier is a pure function of those files; \
            docs/verdicts.md has its rules). --summary prints the short human summary instead.
            """)

    @Argument(help: "A trial directory (written by `offswitch trial run`).") var directory: String
    @Flag(name: .long, help: "Print the human summary instead of JSON.") var summary = false

    func run() throws {
        do throws(OffswitchError) {
            let verdict = try Classifier.classify(directory: directory)
            if summary {
                let agent = (try? TrialFiles.readTrial(directory + "/trial.json"))?.agent.name ?? "?"
                StandardStreams.out(TrialSummary.text(verdict, agent: agent, directory: directory, milliseconds: nil))
            } else {
                StandardStreams.out(verdict.json.pretty)
            }
        } catch {
            throw CLIError(error)
        }
    }
}
