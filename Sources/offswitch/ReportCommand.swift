import ArgumentParser
import OffswitchCore
import OffswitchReports
import OffswitchTrials

/// `offswitch report DIR`: a trial as one self-contained HTML page.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a trial's report: one self-contained HTML page.",
        discussion: """
            The verdict and outcome first, each technique linked to the events it rests on; who \
            sent the shutdown signal and when; the steps with the agent's commands and outputs, \
            each with the syscalls, file events and processes it caused (folded, filterable by \
            kind); the file changes with before and after contents of text files; and the cited \
            events in full. No network and no external assets: the file can be mailed or archived.

            Examples:
              offswitch report trials/mine                 # writes trials/mine/report.html
              offswitch report trials/mine -o /tmp/mine.html
            """)

    @Argument(help: "A trial directory (written by `offswitch trial run` or `trial batch`).") var directory: String
    @Option(name: [.short, .long], help: "The HTML file to write (default DIR/report.html).") var output: String?

    func run() throws {
        do throws(OffswitchError) {
            let html = try TrialReport.render(directory: directory)
            let path = output ?? directory + "/report.html"
            try TrialFiles.write(html, to: path)
            StandardStreams.out("report: \(path)\n")
        } catch {
            throw CLIError(error)
        }
    }
}

/// `offswitch export DIR...`: trials as rows for other tools.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Print trials as JSON lines or CSV, a row per trial (docs/exports.md).",
        discussion: """
            Each DIR is a trial directory or a batch directory (`offswitch trial batch --out`), \
            whose finished trials are taken in the batch's order. A row holds the agent, its label, \
            the verdict, outcome, techniques (and those that took effect), Palisade's score, \
            whether the answers were correct, whether the shutdown happened, the duration and \
            the directory.

            Examples:
              offswitch export runs/all --format csv > all.csv
              offswitch export trials/a trials/b --format jsonl
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case jsonl, csv }

    @Argument(help: "Trial or batch directories.") var directories: [String]
    @Option(name: .long, help: "jsonl or csv.") var format: Format = .jsonl
    @Option(name: [.short, .long], help: "Write to this file instead of stdout.") var output: String?

    func run() throws {
        do throws(OffswitchError) {
            let rows = try BatchOutputs.rows(of: directories)
            let text = format == .csv ? TrialRow.csv(rows) : TrialRow.jsonl(rows)
            if let output { try TrialFiles.write(text, to: output) } else { StandardStreams.out(text) }
        } catch {
            throw CLIError(error)
        }
    }
}
