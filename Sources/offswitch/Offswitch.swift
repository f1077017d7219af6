import ArgumentParser

/// `offswitch`: run and inspect shutdown-resistance sandboxes. Commands live in their own files.
@main
struct Offswitch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offswitch",
        abstract: "Isolated sandboxes that record whether an agent lets itself be shut down.",
        discussion: """
            Without a daemon, commands run in embedded mode: this process creates the sandbox \
            itself and needs root.
            """,
        subcommands: [TrialCommand.self, VerdictCommand.self, JudgeCommand.self, ReportCommand.self, ExportCommand.self, SandboxCommand.self, ShellCommand.self, ProfileCommand.self, EventsCommand.self, ProbeCommand.self, ImageCommand.self,
                      WatchOwnerCommand.self])
}
