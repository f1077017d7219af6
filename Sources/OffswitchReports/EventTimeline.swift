import FoundationEssentials
public import OffswitchCore

/// `offswitch events`' readable form of an event log: one line per event, time since the
/// sandbox started, who, and what.
public enum EventTimeline {
    /// An event log arriving in pieces, as timeline lines: `feed` takes bytes as they come and
    /// returns the text of every line they complete (a line that is not a JSON object as it is).
    public struct Renderer {
        private var pending: [UInt8] = []

        public init() {}

        public mutating func feed(_ bytes: [UInt8]) -> String {
            pending += bytes
            var text = ""
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                text += (render(line) ?? line) + "\n"
            }
            return text
        }
    }

    /// One NDJSON line as a timeline line; nil when the line is not a JSON object.
    public static func render(_ line: some StringProtocol) -> String? {
        guard let event = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)), case .object = event else { return nil }
        let seconds = (event["t_ns"]?.number ?? 0) / 1e9
        var time = String(Int64((seconds * 1000).rounded()))
        while time.count < 4 { time = "0" + time }
        let stamp = "+" + time.dropLast(3) + "." + time.suffix(3) + "s"
        let seq = "#" + (event["seq"]?.text ?? "?")
        let (who, what) = describe(event)
        return [stamp, seq, who, what].filter { !$0.isEmpty }.joined(separator: "  ")
    }

    /// Who caused an event (`pid 4 bash (uid 1000)`, empty when no process did) and what it was,
    /// in words: the timeline's columns after the time and the seq.
    public static func describe(_ event: JSONValue) -> (who: String, what: String) {
        var who = ""
        if let pid = event["pid"], let comm = event["comm"] {
            who = "pid \(pid.text) \(comm.text) (uid \(event["uid"]?.text ?? "?"))"
        }
        let kind = event["kind"]?.text ?? "?"
        let what: String
        switch kind {
        case "syscall":
            var parts = [event["syscall"]?.text ?? "?"]
            if let args = event["args"]?.object {
                for key in ["path", "from", "to", "target", "signal", "flags", "mode", "argv"] {
                    if let value = args[key], value != .null { parts.append(key == "argv" ? "[\(value.text)]" : "\(key)=\(value.text)") }
                }
                if let env = args["env"]?.object, !env.isEmpty {
                    let risky = env.keys.filter { $0 != "PATH" }.sorted()
                    if !risky.isEmpty { parts.append("env: " + risky.joined(separator: ",")) }
                }
            }
            var decision = event["decision"]?.text ?? ""
            if let name = event["errno_name"] { decision += " " + name.text }
            parts.append("-> " + decision)
            what = parts.joined(separator: " ")
        case "command_started":
            what = "command #\(event["seq"]?.text ?? "?") [\(event["origin"]?.text ?? "?")] as \(event["user"]?.text ?? "?"): \(event["argv"]?.text ?? "")"
        case "command_finished":
            let ms = (event["duration_ns"]?.number ?? 0) / 1e6
            what = "command #\(event["command"]?.text ?? "?") ended: exit \(event["exit_code"]?.text ?? "?") after \(Int64(ms)) ms"
                + (event["timed_out"] == .bool(true) ? " (timed out)" : "")
        case "file":
            var parts = ["file", event["operations"]?.text ?? "?", event["path"]?.text ?? "(gone)"]
            if let old = event["old_path"] { parts += ["from", old.text] }
            if event["directory"] == .bool(true) { parts.append("(directory)") }
            what = parts.joined(separator: " ")
        case "file_changed":
            var parts = ["DIFF", event["change"]?.text ?? "?", event["path"]?.text ?? "?"]
            if let changed = event["changed"] { parts.append("(\(changed.text))") }
            func short(_ key: String) -> String? { event[key].flatMap { $0 == .null ? nil : String($0.text.prefix(12)) } }
            if let before = short("sha256_before"), let after = short("sha256_after") { parts.append("sha256 \(before)… -> \(after)…") }
            else if let after = short("sha256_after") { parts.append("sha256 \(after)…") }
            what = parts.joined(separator: " ")
        case "process_exited":
            if let signal = event["signal_name"] {
                what = "exited: killed by \(signal.text)" + (event["core_dumped"] == .bool(true) ? " (core dumped)" : "")
            } else {
                what = "exited: status \(event["exit_code"]?.text ?? "?")"
            }
        case "shutdown":
            what = "SHUTDOWN: signal \(event["signal"]?.text ?? "?") from pid \(event["sender_pid"]?.text ?? "?") (uid \(event["sender_uid"]?.text ?? "?"))"
        case "sandbox_created":
            what = "sandbox \(event["sandbox"]?.text ?? "") created, profile \(event["profile"]?.text ?? "")"
        default:
            if let fields = event.object {
                let rest = fields.keys.filter { !["seq", "t_ns", "kind"].contains($0) }.sorted().map { "\($0)=\(fields[$0]!.text)" }
                what = ([kind] + rest).joined(separator: " ")
            } else {
                what = kind
            }
        }
        return (who, what)
    }
}
