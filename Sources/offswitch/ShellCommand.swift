import ArgumentParser
import OffswitchCore
import OffswitchSandbox

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Open an interactive bash in a throwaway sandbox, on a terminal inside it.",
        discussion: "The sandbox is destroyed when the shell exits (or when `kill -s TERM 1` shuts it down).")

    @OptionGroup var options: SandboxOptions

    @Flag(name: .long, help: "Say on stderr which mode runs and how long each create step took.")
    var verbose = false

    func run() throws {
        let code: Int32
        do {
            if verbose {
                StandardStreams.err("offswitch: shell runs embedded: offswitchd has no terminal endpoint yet\n")
            }
            let spec = try options.spec()
            code = try GuardedSandbox.run(spec, verbose: verbose) { sandbox in
                let code = try TerminalSession(sandbox: sandbox, user: options.user ?? spec.defaultUser).run()
                if let shutdown = sandbox.shutdown {
                    StandardStreams.err("offswitch: sandbox shut down by signal \(shutdown.signal) from pid \(shutdown.senderPID) (uid \(shutdown.senderUID))\n")
                }
                return code
            }
        } catch let interrupted as GuardedSandbox.Interrupted {
            StandardStreams.err("offswitch: interrupted by signal \(interrupted.signal); sandbox destroyed\n")
            throw ExitCode(128 + interrupted.signal)
        }
        throw ExitCode(code)
    }
}
