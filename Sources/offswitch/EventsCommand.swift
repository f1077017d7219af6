import ArgumentParser
import OffswitchAPI
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
            is destroyed. For an embedded `sandbox run`, use its --events FILE instead.

            Example: offswitch events --follow $(offswitch sandbox create)
            """)

    @OptionGroup var client: ClientOptions
    @Flag(name: .long, help: "Print new events as they happen, until the sandbox is destroyed.") var follow = false
    @Flag(name: .long, help: "Print the NDJSON lines as stored.") var json = false
    @Argument(help: "The sandbox id.") var id: String

    func run() throws {
        var pending: [UInt8] = []
        do {
            try client.client.stream("/v1/sandboxes/\(id)/events" + (follow ? "?follow=1" : "")) { bytes in
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
        } catch {
            throw CLIError(error)
        }
    }
}
