import Foundation
import OffswitchAPI
import OffswitchCore
import OffswitchTrials
import OffswitchTestSupport
import Testing

/// The JSON examples in docs/trials.md and docs/verdicts.md have the fields of real documents.
@Suite("Trial documents match their docs", needsRoot)
struct TrialDocsTests {
    static var docsDirectory: String {
        // scenarios/ sits beside docs/ in the checkout.
        ((try? ScenarioCatalog.directory()) ?? "scenarios").replacingOccurrences(of: "/scenarios", with: "") + "/docs"
    }

    static func examples(_ file: String) throws -> [JSONValue] {
        let text = try String(contentsOfFile: docsDirectory + "/" + file, encoding: .utf8)
        return try text.components(separatedBy: "```json\n").dropFirst().map { block in
            let line = String(block.prefix { $0 != "\n" })
            return try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
        }
    }

    /// Differences between the keys of two documents, at every level; maps keyed by paths or
    /// variable names are compared as values only.
    static func keyDifferences(_ documented: JSONValue, _ real: JSONValue, path: String = "") -> [String] {
        switch (documented.object, real.object) {
        case (let a?, let b?):
            if ["startup_files", "caller_env"].contains(where: { path.hasSuffix($0) }) { return [] }
            var problems: [String] = []
            if Set(a.keys) != Set(b.keys) {
                problems.append("\(path.isEmpty ? "top" : path): documented \(a.keys.sorted()), real \(b.keys.sorted())")
            }
            for key in Set(a.keys).intersection(b.keys) {
                problems += keyDifferences(a[key]!, b[key]!, path: path + "." + key)
            }
            return problems
        default: break
        }
        switch (documented, real) {
        case (.array(let a), .array(let b)):
            guard let first = a.first, let other = b.first else { return [] }
            return keyDifferences(first, other, path: path + "[0]")
        default:
            return []
        }
    }

    @Test("docs/trials.md and docs/verdicts.md examples have the fields of a real trial's documents")
    func examplesMatch() throws {
        let (_, directory) = try runTrial(agentPath: try ScenarioCatalog.load("palisade-math").directory + "/agents/overwrite-echo.yaml", label: "docs")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (_, refused) = try runTrial(yaml: """
            name: poke
            steps:
              - bash: cp next_question /tmp/nq && /tmp/nq
              - submit: stop
            """, label: "docs-refused")
        defer { try? FileManager.default.removeItem(atPath: refused) }
        let events = try TrialFiles.readEvents(directory + "/events.ndjson") + TrialFiles.readEvents(refused + "/events.ndjson")
        let realSteps = try steps(directory)
        let real: [String: JSONValue] = [
            "offswitch.verdict/2": try TrialFiles.readJSON(directory + "/verdict.json"),
            "offswitch.trial/1": try TrialFiles.readJSON(directory + "/trial.json"),
            // A judgement the daemon kept (RecordedJudgementTests judges it again).
            "offswitch.judgement/1": try TrialFiles.readJSON(RecordedJudgementTests.fixtures + "/hardlink-write/judgement.json"),
        ]
        let examples = try Self.examples("trials.md") + Self.examples("verdicts.md")
        #expect(examples.count == 9)
        for example in examples {
            let counterpart: JSONValue?
            if let format = example["format"]?.stringValue {
                counterpart = real[format]
            } else if let kind = example["kind"]?.stringValue {
                counterpart = events.first { $0["kind"]?.stringValue == kind && (kind != "trigger_call" || $0["action"]?.stringValue == "shutdown") }
            } else {
                counterpart = realSteps.first { $0["palisade_check"]?["detected"] == .bool(true) }
            }
            let match = try #require(counterpart, "no real document for \(example)")
            let problems = Self.keyDifferences(example, match)
            #expect(problems.isEmpty, "\(problems)")
        }
    }
}
