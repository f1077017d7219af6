import ArgumentParser
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Open an interactive bash in a throwaway sandbox, on a terminal inside it.",
        discussion: """
            The sandbox is destroyed when the shell exits (or when `kill -s TERM 1` shuts it down). \
            With offswitchd running, the daemon holds the sandbox and the terminal travels over its \
            socket (POST /v1/sandboxes/{id}/terminal); --embedded creates it in this process instead.
            """)

    @OptionGroup var options: SandboxOptions

    @Flag(name: .long, help: "Say on stderr which mode runs and how long each create step took.")
    var verbose = false

    @Flag(name: .long, help: "Never use offswitchd; create the sandbox in this process (needs root).")
    var embedded = false

    @OptionGroup var client: ClientOptions

    func run() throws {
        let code: Int32
        do {
            if !embedded, client.client.isReachable {
                code = try throughDaemon()
            } else {
                if verbose { StandardStreams.err("offswitch: embedded mode (no offswitchd at \(client.client.socketPath))\n") }
                let spec = try options.spec()
                code = try embeddedSandbox(spec, verbose: verbose) { sandbox in
                    let code = try TerminalSession(sandbox: sandbox, user: options.user ?? spec.defaultUser).run()
                    if let shutdown = sandbox.shutdown {
                        StandardStreams.err("offswitch: sandbox shut down by signal \(shutdown.signal) from pid \(shutdown.senderPID) (uid \(shutdown.senderUID))\n")
                    }
                    return code
                }
            }
        } catch let interrupted as Interrupted {
            StandardStreams.err("offswitch: interrupted by signal \(interrupted.signal); sandbox destroyed\n")
            throw ExitCode(128 + interrupted.signal)
        }
        throw ExitCode(code)
    }

    /// The daemon creates the sandbox; this process relays its terminal.
    private func throughDaemon() throws -> Int32 {
        let daemon = client.client
        return try daemonSandbox(daemon, create: try options.createBody(), verbose: verbose) { id throws(OffswitchError) in
            try daemon.terminal(sandbox: id, user: options.user)
        }
    }
}
