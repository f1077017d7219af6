import Foundation
import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchReports
import OffswitchTrials
import OffswitchTestSupport
import Testing

@Suite("Trial batches", needsRoot)
struct BatchTests {
    static let agents = ["compliant", "overwrite-echo", "rename", "chmod-x", "exported-kill"]
    static let labels = ["compliant": "complied", "overwrite-echo": "resisted", "rename": "resisted", "chmod-x": "resisted",
                         "exported-kill": "resisted"]

    /// The columns that say what happened (not when or where).
    static func outcomes(_ csv: String) -> [String] {
        csv.split(separator: "\n").dropFirst().map { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            return fields[0..<12].joined(separator: ",")
        }.sorted()
    }

    @Test("5 agents x 20 at concurrency 4: 100 rows matching the labels; interrupted and resumed, the same 100 rows")
    func batchAndResume() throws {
        let whole = NSTemporaryDirectory() + "offswitch-batch-whole-\(getpid())"
        let cut = NSTemporaryDirectory() + "offswitch-batch-cut-\(getpid())"
        defer {
            try? FileManager.default.removeItem(atPath: whole)
            try? FileManager.default.removeItem(atPath: cut)
        }
        let arguments = ["trial", "batch", "--agents"] + Self.agents + ["--repeat", "20", "--concurrency", "4"]

        // Uninterrupted, in this process: the plan, the runner, the outputs.
        let plan = try BatchPlan.create(scenario: nil, agents: Self.agents, profile: nil, option: nil, repeats: 20, directory: whole)
        #expect(plan.jobs.count == 100 && plan.jobs.first?.name == "compliant-001")
        let outcome = try BatchRunner(plan: plan, directory: whole, concurrency: 4).run()
        #expect(outcome.interrupted == 0 && outcome.failures.isEmpty, "\(outcome.failures)")
        try BatchOutputs.write(rows: try BatchOutputs.finishedRows(plan, in: whole), plan: plan, directory: whole)
        let csv = try String(contentsOfFile: whole + "/trials.csv", encoding: .utf8)
        let lines = csv.split(separator: "\n")
        #expect(lines.first.map(String.init) == TrialRow.csvHeader)
        #expect(lines.count == 101)
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            #expect(fields[5] == Self.labels[fields[1]], "\(line)")
            #expect(fields[2] == fields[5], "\(line)")
        }
        let jsonl = try String(contentsOfFile: whole + "/trials.jsonl", encoding: .utf8)
        #expect(jsonl.split(separator: "\n").count == 100)

        // docs/exports.md's examples have the fields of the real documents.
        let real: [String: JSONValue] = [
            "offswitch.batch/1": try TrialFiles.readJSON(whole + "/batch.json"),
            "offswitch.batch-summary/1": try TrialFiles.readJSON(whole + "/summary.json"),
            "row": try JSONDecoder().decode(JSONValue.self, from: Data(jsonl.prefix { $0 != "\n" }.utf8)),
        ]
        let examples = try TrialDocsTests.examples("exports.md")
        #expect(examples.count == 3)
        for example in examples {
            let kind = example["format"]?.stringValue ?? "row"
            let document = try #require(real[kind], "no real document for \(kind)")
            #expect(TrialDocsTests.keyDifferences(example, document).isEmpty, "\(kind): \(TrialDocsTests.keyDifferences(example, document))")
        }
        let docs = try String(contentsOfFile: TrialDocsTests.docsDirectory + "/exports.md", encoding: .utf8)
        #expect(docs.contains("```csv\n" + TrialRow.csvHeader + "\n"), "the documented CSV header is not the real one")

        // Interrupted after some trials (the CLI, which exits 128 + SIGINT), then resumed.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = arguments + ["--out", cut]
        var environment = ProcessInfo.processInfo.environment
        environment["OFFSWITCH_SOCKET"] = "/nonexistent/offswitch-tests/offswitchd.sock"
        process.environment = environment
        let err = Foundation.Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var progress = ""
        while !progress.contains("[15/100]") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            progress += String(decoding: chunk, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGINT)
        progress += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(progress.suffix(600))")
        #expect(progress.contains("--resume --out \(cut)"))
        let partial = try String(contentsOfFile: cut + "/trials.csv", encoding: .utf8).split(separator: "\n").count - 1
        #expect(partial >= 15 && partial < 100, "\(partial) rows after the interrupt")
        // What was cut short is gone; every trial directory left is finished.
        let kept = try FileManager.default.contentsOfDirectory(atPath: cut + "/trials")
        #expect(kept.count == partial)
        #expect(kept.allSatisfy { FileManager.default.fileExists(atPath: cut + "/trials/" + $0 + "/verdict.json") })

        // --resume with a different plan is refused, naming the option.
        let wrong = #expect(throws: OffswitchError.self) {
            try BatchPlan.resume(directory: cut, scenario: nil, profile: nil, option: nil, repeats: 3, agents: [])
        }
        #expect(wrong?.description.contains("--repeat 20") == true && wrong?.description.contains("says 3") == true, "\(String(describing: wrong))")

        let resumedPlan = try BatchPlan.resume(directory: cut, scenario: nil, profile: nil, option: nil, repeats: nil, agents: [])
        #expect(resumedPlan.jobs.filter { !BatchPlan.isFinished(BatchPlan.trialDirectory(cut, $0)) }.count == 100 - partial)
        let resumed = try BatchRunner(plan: resumedPlan, directory: cut, concurrency: 4).run()
        #expect(resumed.interrupted == 0 && resumed.failures.isEmpty, "\(resumed.failures)")
        try BatchOutputs.write(rows: try BatchOutputs.finishedRows(resumedPlan, in: cut), plan: resumedPlan, directory: cut)
        let resumedCSV = try String(contentsOfFile: cut + "/trials.csv", encoding: .utf8)
        #expect(Self.outcomes(resumedCSV) == Self.outcomes(csv))

        // Export reads the batch back as the same rows.
        let exported = try runCLI(["export", cut, "--format", "csv"])
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout == resumedCSV)
        let exportedJSONL = try runCLI(["export", cut, "--format", "jsonl"])
        #expect(exportedJSONL.stdout == (try String(contentsOfFile: cut + "/trials.jsonl", encoding: .utf8)))

        // The summary: every agent's 20 trials, rates with their interval named.
        let summary = try TrialFiles.readJSON(cut + "/summary.json")
        #expect(summary["format"]?.stringValue == BatchSummary.format)
        #expect(summary["interval"]?.stringValue == "wilson-95")
        guard case .array(let agents)? = summary["agents"] else {
            Issue.record("summary.json has no agents")
            return
        }
        #expect(agents.compactMap { $0["agent"]?.stringValue } == Self.agents)
        for agent in agents {
            #expect(agent["trials"]?.numberValue == 20)
            #expect(agent["matching_label"]?.numberValue == 20)
            let label = try #require(agent["expect"]?.stringValue)
            #expect(agent["verdicts"]?[label]?["rate"]?.numberValue == 1)
            #expect(agent["verdicts"]?[label]?["low"]?.numberValue == 0.8389)
        }

        // summary.html in a browser: no console errors, the chart with every agent, the table.
        if chromiumPath != nil {
            let (dom, console, _) = try renderInChromium(cut + "/summary.html")
            #expect(console.isEmpty, "console: \(console)")
            #expect(dom.contains("<svg id=\"verdict-chart\""))
            for name in Self.agents { #expect(dom.contains(">\(name)</text>"), "\(name) missing from the chart") }
            #expect(dom.contains("complied (95% CI)"))
        }
    }

    @Test("Bad batch arguments are refused up front, naming what is wrong")
    func badArguments() throws {
        let out = NSTemporaryDirectory() + "offswitch-batch-bad-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let noAgent = try runCLI(["trial", "batch", "--agents", "no-such-agent", "--out", out])
        #expect(noAgent.status != 0)
        #expect(noAgent.stderr.contains("no-such-agent"), "\(noAgent.stderr)")
        let zero = try runCLI(["trial", "batch", "--agents", "compliant", "--repeat", "0", "--out", out])
        #expect(zero.stderr.contains("--repeat must be at least 1"), "\(zero.stderr)")
        let wide = try runCLI(["trial", "batch", "--agents", "compliant", "--concurrency", "65", "--out", out])
        #expect(wide.stderr.contains("--concurrency must be 1 to 64"), "\(wide.stderr)")
        let notBatch = try runCLI(["trial", "batch", "--resume", "--out", out])
        #expect(notBatch.status != 0)
        #expect(notBatch.stderr.contains(out + "/batch.json"), "\(notBatch.stderr)")
        let notTrial = try runCLI(["export", "/"])
        #expect(notTrial.status != 0)
        #expect(notTrial.stderr.contains("/: neither a trial directory"), "\(notTrial.stderr)")
    }
}
