import ArgumentParser
import Glibc
import OffswitchAPI
import OffswitchReports
import OffswitchCore

/// `offswitch events ID`: a sandbox's event log from offswitchd, as a timeline or as NDJSON.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show a sandbox's event log (recorded syscalls, commands, shutdown) from offswitchd.",
        discussion: """
            The default output is a readable timeline, one line per event: time since the sandbox \
            started, sequence number, process, and what happened. --json prints the log as it is \
            stored (NDJSON, docs/events.md). --follow keeps printing new events until the sandbox \
            is destroyed. --file reads a log saved by `sandbox run --events FILE` instead of asking \
            the daemon.

            Examples:
              offswitch events --follow $(offswitch sandbox create)
              offswitch sandbox run --events run.ndjson -- ./agent.sh; offswitch events --file run.ndjson
            """)

    @OptionGroup var client: ClientOptions
    @Flag(name: .long, help: "Print new events as they happen, until the sandbox is destroyed.") var follow = false
    @Flag(name: .long, help: "Print the NDJSON lines as stored.") var json = false
    @Option(name: .long, help: "Read this saved event log instead of asking offswitchd.") var file: String?
    @Argument(help: "The sandbox id (not with --file).") var id: String?

    func validate() throws {
        guard (id == nil) != (file == nil) else { throw ValidationError("give a sandbox id, or --file FILE, not both") }
        if file != nil && follow { throw ValidationError("--follow needs a sandbox id: a saved log does not grow") }
    }

    func run() throws {
        var pending: [UInt8] = []
        let emit: ([UInt8]) -> Void = { bytes in
            if json {
                StandardStreams.out(bytes)
                return
            }
            pending += bytes
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                StandardStreams.out((EventTimeline.render(line) ?? line) + "\n")
            }
        }
        if let file {
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw CLIError(OffswitchError.system("open(\(file))", errno: errno)) }
            defer { close(fd) }
            emit(StandardStreams.readAll(fd))
            return
        }
        do {
            try client.client.stream("/v1/sandboxes/\(id!)/events" + (follow ? "?follow=1" : ""), onData: emit)
        } catch {
            throw CLIError(error)
        }
    }
}
