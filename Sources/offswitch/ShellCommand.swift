import ArgumentParser
import OffswitchCore
import OffswitchSandbox

struct ShellCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shell",
        abstract: "Open an interactive bash in a throwaway sandbox, on a terminal inside it.",
        discussion: "The sandbox is destroyed when the shell exits (or when `kill -s TERM 1` shuts it down).")

    @OptionGroup var options: SandboxOptions

    func run() throws {
        do {
            let sandbox = try Sandbox.create(try options.spec())
            defer { try? sandbox.destroy() }
            let code = try TerminalSession(sandbox: sandbox, user: options.user).run()
            try sandbox.destroy()
            throw ExitCode(code)
        } catch let error as OffswitchError {
            throw CLIError(error)
        }
    }
}
