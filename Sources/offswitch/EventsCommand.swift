import ArgumentParser
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
        var timeline = EventTimeline.Renderer()
        let emit: ([UInt8]) -> Void = { bytes in
            if json { StandardStreams.out(bytes) } else { StandardStreams.out(timeline.feed(bytes)) }
        }
        try translated { () throws(OffswitchError) in
            if let file { return emit(try StandardStreams.contents(of: file)) }
            try client.client.events(id!, follow: follow, onData: emit)
        }
    }
}
