import ArgumentParser
import OffswitchCore
import OffswitchSandbox

/// Hidden: the watcher `sandbox run` and `shell` start before they create a sandbox, so that a
/// SIGKILL of theirs leaves nothing behind (OwnerWatch). Not for people to run.
struct WatchOwnerCommand: ParsableCommand {
    static let name = "watch-owner"
    static let configuration = CommandConfiguration(
        commandName: name,
        abstract: "Reclaim the sandbox of a CLI process that died holding it (started by sandbox run and shell).",
        shouldDisplay: false)

    @Option(help: "The pid of the process that holds the sandbox.")
    var owner: Int32

    @Option(name: .customLong("state-dir"), help: "The owner's state directory.")
    var stateDirectory: String

    func run() throws {
        for found in OwnerWatch.serve(fd: 3, owner: owner, paths: StatePaths(base: stateDirectory)) {
            StandardStreams.err("offswitch: process \(owner) died holding a sandbox; \(found)\n")
        }
    }
}
