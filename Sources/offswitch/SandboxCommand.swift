import ArgumentParser
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox

struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Create sandboxes and run commands in them.",
        subcommands: [Run.self, Create.self, Exec.self, Attach.self, Put.self, Get.self, Rm.self, Ls.self])

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

        @Option(name: .long, help: "Write the sandbox's event log (NDJSON, docs/events.md) to this file; embedded mode only.")
        var events: String?

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

        @Flag(name: .long, help: "Never use offswitchd; create the sandbox in this process.")
        var embedded = false

        @OptionGroup var client: ClientOptions

        func run() throws {
            let stdin = interactive ? StandardStreams.readAll(0) : []
            let document: ExecDocument
            do {
                if !embedded, events == nil, client.client.isReachable {
                    let daemon = client.client
                    let body = ExecBody(argv: command, stdin: stdin, user: options.user, timeout: timeout)
                    document = try daemonSandbox(daemon, create: try options.createBody(), verbose: verbose) { id throws(OffswitchError) in
                        try daemon.exec(id, body)
                    }
                } else {
                    let spec = try options.spec()
                    let request = ExecRequest(argv: command, stdin: stdin, user: options.user ?? spec.defaultUser,
                                              timeoutSeconds: timeout ?? spec.commandTimeoutSeconds.map(Double.init))
                    document = ExecDocument(try embeddedSandbox(spec, verbose: verbose, eventLog: events) { sandbox in
                        try sandbox.exec(request)
                    })
                }
            } catch let interrupted as Interrupted {
                StandardStreams.err("offswitch: interrupted by signal \(interrupted.signal); sandbox destroyed\n")
                throw ExitCode(128 + interrupted.signal)
            }
            throw try ExecOutput.print(document, json: json, timeout: timeout)
        }
    }
}
