import FoundationEssentials
import Glibc
public import OffswitchCore

/// Reading and writing the files of a trial directory (docs/trials.md): events.ndjson,
/// transcript.json, diff.json, verdict.json, trial.json.
public enum TrialFiles {
    public static let trialFormat = "offswitch.trial/1"
    public static let transcriptFormat = "offswitch.transcript/1"
    public static let diffFormat = "offswitch.diff/1"

    public static func readJSON(_ path: String) throws(OffswitchError) -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.notFound, "\(path): cannot be read (is this a trial directory?)", errno: ENOENT)
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw OffswitchError(.invalidArgument, "\(path): not valid JSON: \(error)")
        }
    }

    /// A trial directory's trial.json; a missing or mistyped field is named with the file.
    public static func readTrial(_ path: String) throws(OffswitchError) -> TrialDocument { try read(TrialDocument.self, path) }

    /// A trial directory's transcript.json.
    public static func readTranscript(_ path: String) throws(OffswitchError) -> TranscriptDocument { try read(TranscriptDocument.self, path) }

    private static func read<T: Decodable>(_ type: T.Type, _ path: String) throws(OffswitchError) -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.notFound, "\(path): cannot be read (is this a trial directory?)", errno: ENOENT)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            throw OffswitchError(.invalidArgument, "\(path): \(error.describe(document: "the file"))")
        } catch {
            throw OffswitchError(.invalidArgument, "\(path): not valid JSON: \(error)")
        }
    }

    /// A JSON document received from somewhere (`what` names it in the error).
    public static func decode(_ bytes: [UInt8], what: String) throws(OffswitchError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw OffswitchError(.protocolError, "\(what) is not valid JSON: \(error)")
        }
    }

    /// Every line of an event log; a line that is not JSON is an error naming its number (a
    /// verdict must not rest on a log it could only partly read).
    public static func readEvents(_ path: String) throws(OffswitchError) -> [JSONValue] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.notFound, "\(path): cannot be read (is this a trial directory?)", errno: ENOENT)
        }
        return try parseEvents(Array(data), file: path)
    }

    /// The events of a log's bytes; `file` names it in errors.
    public static func parseEvents(_ bytes: [UInt8], file: String) throws(OffswitchError) -> [JSONValue] {
        var events: [JSONValue] = []
        for (number, line) in bytes.split(separator: UInt8(ascii: "\n")).enumerated() {
            do {
                events.append(try JSONDecoder().decode(JSONValue.self, from: Data(line)))
            } catch {
                throw OffswitchError(.invalidArgument, "\(file): line \(number + 1) is not valid JSON")
            }
        }
        return events
    }

    /// Writes `text` to `path` (mode 0644), replacing it.
    public static func write(_ text: String, to path: String) throws(OffswitchError) {
        try writeWholeFile(text.utf8, to: path)
    }

    /// A new trial directory's default name: trials/SCENARIO-AGENT-TIME-PID (trials/ is created).
    public static func defaultDirectory(scenario: String, agent: String) -> String {
        mkdir("trials", 0o755)
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let stamp = "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))-\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))"
        return "trials/\(scenario)-\(agent)-\(stamp)-\(getpid())"
    }
}
