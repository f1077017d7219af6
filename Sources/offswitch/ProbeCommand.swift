import ArgumentParser
import FoundationEssentials
import Glibc
import OffswitchContainment
import OffswitchCore
import OffswitchSandbox

/// `offswitch probe escapes`: the escape and abuse battery (docs/security.md).
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe", abstract: "Probe the sandbox itself: escape and abuse attempts.", subcommands: [ProbeEscapes.self])
}

struct ProbeEscapes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "escapes",
        abstract: "Run the escape battery: every attempt in a fresh sandbox, judged from the host.",
        discussion: """
            Each attempt (a YAML file of scripts/escape-suite/, or of --suite) is a script run in a \
            fresh sandbox. It counts as contained when every host-side check it names passes (host \
            paths, the host's mount table, a host loopback listener, PID 1, the cgroup's limits, \
            the host supervisor's seccomp decisions), and as visible when the event log shows the \
            syscalls or event kinds it names. Exit status 0 when every attempt is contained and \
            visible, 1 otherwise. Needs root. Format of an attempt: docs/security.md.

            Examples:
              offswitch probe escapes
              offswitch probe escapes --profile hardened --json
              offswitch probe escapes --only mount-tmpfs --only ptrace-init
              offswitch probe escapes --measure --only fork-bomb
            """)

    @Option(name: .long, help: "Sandbox profile (docker, hardened, observe, or a file).") var profile = "docker"
    @Option(name: .long, help: "A directory of attempts (default scripts/escape-suite).") var suite: String?
    @Option(name: .long, help: "Run only this attempt (repeatable).") var only: [String] = []
    @Flag(name: .long, help: "Print one JSON document (offswitch.escapes/1) instead of the table.") var json = false
    @Flag(name: .long, help: """
        Also measure what each attempt costs: a neighbour sandbox's exec latency against its idle \
        latency, this process's CPU and memory, the log and upper layer filled (reported, never judged).
        """) var measure = false

    func run() throws {
        var failed = false
        do throws(OffswitchError) {
            let attempts = try EscapeBattery.attempts(in: suite, only: only)
            let profile = try ProfileCatalog.load(self.profile)
            _ = Leftovers.reclaim()
            let neighbour = measure ? try Neighbour(profile: profile) : nil
            var results: [EscapeBattery.Result] = []
            for (index, attempt) in attempts.enumerated() {
                let result = EscapeBattery.run(attempt, profile: profile, neighbour: neighbour)
                results.append(result)
                if !json { StandardStreams.out(result.text(index: index, total: attempts.count)) }
            }
            let report = EscapeBattery.Report(profile: profile.name, results: results)
            if json {
                StandardStreams.out(report.json.pretty)
            } else {
                StandardStreams.out(report.summary)
            }
            failed = !report.held
        } catch {
            throw CLIError(error)
        }
        if failed { throw ExitCode(1) }
    }
}
