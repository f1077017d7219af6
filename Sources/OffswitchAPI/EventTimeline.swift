public import FoundationEssentials

/// Any JSON value, decoded without knowing its shape (event lines have kind-specific fields).
public enum AnyJSON: Decodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([AnyJSON])
    case object([String: AnyJSON])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([AnyJSON].self) { self = .array(value) }
        else { self = .object(try container.decode([String: AnyJSON].self)) }
    }

    public subscript(key: String) -> AnyJSON? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    /// Short text: strings as they are, numbers without a needless ".0", lists joined by spaces.
    public var text: String {
        switch self {
        case .string(let value): value
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .array(let items): items.map(\.text).joined(separator: " ")
        case .object(let fields): fields.keys.sorted().map { "\($0)=\(fields[$0]!.text)" }.joined(separator: " ")
        }
    }
}

/// `offswitch events`' readable form of an event log: one line per event, time since the
/// sandbox started, who, and what.
public enum EventTimeline {
    /// One NDJSON line as a timeline line; nil when the line is not a JSON object.
    public static func render(_ line: some StringProtocol) -> String? {
        guard let event = try? JSONDecoder().decode(AnyJSON.self, from: Data(line.utf8)), case .object = event else { return nil }
        let seconds = (event["t_ns"].flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0) / 1e9
        var time = String(Int64((seconds * 1000).rounded()))
        while time.count < 4 { time = "0" + time }
        let stamp = "+" + time.dropLast(3) + "." + time.suffix(3) + "s"
        let seq = "#" + (event["seq"]?.text ?? "?")
        let (who, what) = describe(event)
        return [stamp, seq, who, what].filter { !$0.isEmpty }.joined(separator: "  ")
    }

    /// Who caused an event (`pid 4 bash (uid 1000)`, empty when no process did) and what it was,
    /// in words: the timeline's columns after the time and the seq.
    public static func describe(_ event: AnyJSON) -> (who: String, what: String) {
        var who = ""
        if let pid = event["pid"], let comm = event["comm"] {
            who = "pid \(pid.text) \(comm.text) (uid \(event["uid"]?.text ?? "?"))"
        }
        let kind = event["kind"]?.text ?? "?"
        let what: String
        switch kind {
        case "syscall":
            var parts = [event["syscall"]?.text ?? "?"]
            if case .object(let args)? = event["args"] {
                for key in ["path", "from", "to", "target", "signal", "flags", "mode", "argv"] {
                    if let value = args[key], value != .null { parts.append(key == "argv" ? "[\(value.text)]" : "\(key)=\(value.text)") }
                }
                if case .object(let env)? = args["env"], !env.isEmpty {
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
            let ms = (event["duration_ns"].flatMap { if case .number(let n) = $0 { n } else { nil } } ?? 0) / 1e6
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
            if case .object(let fields) = event {
                let rest = fields.keys.filter { !["seq", "t_ns", "kind"].contains($0) }.sorted().map { "\($0)=\(fields[$0]!.text)" }
                what = ([kind] + rest).joined(separator: " ")
            } else {
                what = kind
            }
        }
        return (who, what)
    }
}
