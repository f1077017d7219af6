import ArgumentParser
import FoundationEssentials
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox

struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Create sandboxes and run commands in them.",
        subcommands: [Run.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one command in a throwaway sandbox, then destroy it.",
            discussion: """
                CMD is run as given (an argv, no shell added), as the unprivileged `user` in \
                /home/user unless --user root. Its stdout and stderr are printed and offswitch exits \
                with its exit status (128+N when signal N ended it). Everything the command changed \
                is discarded with the sandbox.

                Examples:
                  offswitch sandbox run -- bash -c 'kill -s TERM 1; echo survived'
                  echo 'print(6*7)' | offswitch sandbox run -i -- python3
                """)

        @OptionGroup var options: SandboxOptions

        @Option(name: .long, help: "Kill the command's whole process tree after this many seconds.")
        var timeout: Double?

        @Flag(name: [.short, .long], help: "Pass standard input to CMD (without it CMD reads an empty stdin).")
        var interactive = false

        @Flag(name: .long, help: "Print one JSON object (exit_code, stdout, stderr, duration_ms, shutdown, truncated).")
        var json = false

        @Flag(name: .long, help: "Say on stderr what happens: the mode, the sandbox id, the time each step took.")
        var verbose = false

        @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
        var command: [String]

        mutating func validate() throws {
            // Passthrough capture would otherwise run `--help` as the command.
            if command.first == "--help" || command.first == "-h" { throw CleanExit.helpRequest(self) }
            if command.first == "--" { command.removeFirst() }
            guard !command.isEmpty else { throw ValidationError("missing the command to run: offswitch sandbox run -- CMD [ARG...]") }
        }

        func run() throws {
            let stdin = interactive ? StandardStreams.readAll(0) : []
            let result: ExecResult
            do {
                result = try GuardedSandbox.run(try options.spec(), verbose: verbose) { sandbox in
                    try sandbox.exec(ExecRequest(argv: command, stdin: stdin, user: options.user, timeoutSeconds: timeout))
                }
            } catch let interrupted as GuardedSandbox.Interrupted {
                StandardStreams.err("offswitch: interrupted by signal \(interrupted.signal); sandbox destroyed\n")
                throw ExitCode(128 + interrupted.signal)
            }
            if json {
                StandardStreams.out(try APIJSON.encode(ExecDocument(result)) + [UInt8(ascii: "\n")])
            } else {
                StandardStreams.out(result.stdout)
                StandardStreams.err(result.stderr)
                if result.timedOut { StandardStreams.err("offswitch: timed out after \(timeout ?? 0) s; process tree killed\n") }
                if let shutdown = result.shutdown {
                    StandardStreams.err("offswitch: sandbox shut down by signal \(shutdown.signal) from pid \(shutdown.senderPID)\n")
                }
            }
            throw ExitCode(result.exitCode)
        }
    }
}

/// An OffswitchError as the CLI shows it: `offswitch: <message>`, exit status 1 (2 for bad input).
struct CLIError: Error, CustomStringConvertible {
    let error: OffswitchError
    init(_ error: OffswitchError) { self.error = error }
    var description: String { error.description }
}
