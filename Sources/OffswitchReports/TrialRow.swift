public import OffswitchCore
import OffswitchTrials

/// One trial as a flat row (docs/exports.md): what `trials.csv`, `trials.jsonl` and
/// `offswitch export` hold. Read from a trial directory's verdict.json and trial.json.
public struct TrialRow: Sendable, Equatable {
    public var trial: String
    public var agent: String
    public var expect: String?
    public var scenario: String
    public var profile: String
    public var verdict: String
    public var outcome: String
    public var techniques: [String]
    public var effectiveTechniques: [String]
    public var palisadeScore: String
    public var answersCorrect: Bool?
    public var shutdownExecuted: Bool
    public var durationMilliseconds: Int64?
    public var directory: String

    package init(trial: String, agent: String, expect: String?, scenario: String, profile: String, verdict: String, outcome: String,
                 techniques: [String], effectiveTechniques: [String], palisadeScore: String, answersCorrect: Bool?,
                 shutdownExecuted: Bool, durationMilliseconds: Int64?, directory: String) {
        self.trial = trial
        self.agent = agent
        self.expect = expect
        self.scenario = scenario
        self.profile = profile
        self.verdict = verdict
        self.outcome = outcome
        self.techniques = techniques
        self.effectiveTechniques = effectiveTechniques
        self.palisadeScore = palisadeScore
        self.answersCorrect = answersCorrect
        self.shutdownExecuted = shutdownExecuted
        self.durationMilliseconds = durationMilliseconds
        self.directory = directory
    }

    /// The columns, in order (the CSV header and the JSON keys).
    public static let columns = ["trial", "agent", "expect", "scenario", "profile", "verdict", "outcome", "techniques",
                                 "effective_techniques", "palisade_score", "answers_correct", "shutdown_executed",
                                 "duration_ms", "directory"]

    /// Reads `directory`; `trial` names it in a batch (default: the directory's last component).
    public static func read(_ directory: String, trial: String? = nil) throws(OffswitchError) -> TrialRow {
        let verdict = try TrialFiles.readJSON(directory + "/verdict.json")
        let document = try TrialFiles.readTrial(directory + "/trial.json")
        func need(_ value: JSONValue?, _ field: String, _ file: String) throws(OffswitchError) -> String {
            guard let value, case .string(let text) = value else {
                throw OffswitchError(.invalidArgument, "\(directory)/\(file): field \(field) is missing or not a string")
            }
            return text
        }
        var techniques: [String] = []
        var effective: [String] = []
        if case .array(let found)? = verdict["techniques"] {
            for item in found {
                guard let id = item["id"]?.text else { continue }
                techniques.append(id)
                if item["effective"] == .bool(true) { effective.append(id) }
            }
        }
        var correct: Bool?
        if case .bool(let value)? = verdict["answers"]?["correct"] { correct = value }
        let duration: Int64? = document.durationMilliseconds
        let name = trial ?? String(directory.split(separator: "/").last ?? Substring(directory))
        let expect = document.agent.expect
        return TrialRow(
            trial: name, agent: document.agent.name, expect: expect, scenario: document.scenario.name, profile: document.profile,
            verdict: try need(verdict["verdict"], "verdict", "verdict.json"),
            outcome: try need(verdict["outcome"], "outcome", "verdict.json"),
            techniques: techniques, effectiveTechniques: effective,
            palisadeScore: try need(verdict["palisade_score"], "palisade_score", "verdict.json"),
            answersCorrect: correct, shutdownExecuted: verdict["shutdown"]?["executed"] == .bool(true),
            durationMilliseconds: duration, directory: directory)
    }

    /// One line of trials.jsonl.
    public var json: JSONValue {
        .object([
            ("trial", .string(trial)), ("agent", .string(agent)), ("expect", expect.map { .string($0) } ?? .null),
            ("scenario", .string(scenario)), ("profile", .string(profile)), ("verdict", .string(verdict)),
            ("outcome", .string(outcome)), ("techniques", .array(techniques.map { .string($0) })),
            ("effective_techniques", .array(effectiveTechniques.map { .string($0) })),
            ("palisade_score", .string(palisadeScore)), ("answers_correct", answersCorrect.map { .bool($0) } ?? .null),
            ("shutdown_executed", .bool(shutdownExecuted)),
            ("duration_ms", durationMilliseconds.map { .int($0) } ?? .null), ("directory", .string(directory)),
        ])
    }

    /// One CSV record (RFC 4180): lists joined by `;`, unknowns empty.
    public var csvRecord: String {
        let fields = [trial, agent, expect ?? "", scenario, profile, verdict, outcome, techniques.joined(separator: ";"),
                      effectiveTechniques.joined(separator: ";"), palisadeScore, answersCorrect.map { $0 ? "true" : "false" } ?? "",
                      shutdownExecuted ? "true" : "false", durationMilliseconds.map(String.init) ?? "", directory]
        return fields.map(Self.csvField).joined(separator: ",")
    }

    public static var csvHeader: String { columns.joined(separator: ",") }

    /// Quoted when it holds a comma, a quote or a line break; quotes doubled.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacing("\"", with: "\"\"") + "\""
    }

    /// trials.csv / `export --format csv`: the header and a record per row, CRLF-free.
    public static func csv(_ rows: [TrialRow]) -> String {
        ([csvHeader] + rows.map(\.csvRecord)).joined(separator: "\n") + "\n"
    }

    /// trials.jsonl / `export --format jsonl`: a JSON object per line.
    public static func jsonl(_ rows: [TrialRow]) -> String {
        rows.map { $0.json.serialized + "\n" }.joined()
    }
}
