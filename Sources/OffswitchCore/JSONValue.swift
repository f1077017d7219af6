/// A JSON value with ordered object keys, serialized without Foundation (the event log is written
/// from a recorder thread for every recorded syscall; key order keeps lines readable and diffable).
public indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int64)
    /// A finite fraction (rates, interval bounds), written with at most four decimals.
    case fraction(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.serialized == rhs.serialized }

    public static func uint(_ value: UInt64) -> JSONValue {
        value <= UInt64(Int64.max) ? .int(Int64(value)) : .string(String(value))
    }

    /// Compact JSON text, one line.
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    public func write(to out: inout String) {
        switch self {
        case .string(let text): Self.quote(text, into: &out)
        case .int(let value): out += String(value)
        case .fraction(let value):
            let rounded = (value * 10_000).rounded() / 10_000
            out += rounded.isFinite ? (rounded == rounded.rounded() && abs(rounded) < 1e15 ? String(Int64(rounded)) : String(rounded)) : "null"
        case .bool(let value): out += value ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, (key, value)) in fields.enumerated() {
                if index > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    /// Indented JSON text (two spaces) ending in a newline: for files people read (verdict.json).
    public var pretty: String {
        var out = ""
        writePretty(to: &out, indent: "")
        return out + "\n"
    }

    private func writePretty(to out: inout String, indent: String) {
        let inner = indent + "  "
        switch self {
        case .array(let items) where !items.isEmpty:
            out += "[\n"
            for (index, item) in items.enumerated() {
                out += inner
                item.writePretty(to: &out, indent: inner)
                out += index < items.count - 1 ? ",\n" : "\n"
            }
            out += indent + "]"
        case .object(let fields) where !fields.isEmpty:
            out += "{\n"
            for (index, (key, value)) in fields.enumerated() {
                out += inner
                Self.quote(key, into: &out)
                out += ": "
                value.writePretty(to: &out, indent: inner)
                out += index < fields.count - 1 ? ",\n" : "\n"
            }
            out += indent + "}"
        default:
            write(to: &out)
        }
    }

    static func quote(_ text: String, into out: inout String) {
        out += "\""
        // Most text needs no escape: append it whole (the event log writes one line per recorded call).
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c }) {
            out += text
            out += "\""
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Bytes that may not be UTF-8 (paths, argv): text when valid, else with invalid bytes as U+FFFD.
    public static func bytes(_ bytes: [UInt8]) -> JSONValue {
        .string(String(decoding: bytes, as: UTF8.self))
    }
}

/// Reading: any JSON document decodes into a `JSONValue` without knowing its shape (event lines
/// have kind-specific fields). Whole numbers become `.int`, others `.fraction`; an object's keys
/// come out sorted, so what is read renders the same every time.
extension JSONValue: Decodable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        if let object = try? decoder.container(keyedBy: Key.self) {
            var fields: [(String, JSONValue)] = []
            for key in object.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) {
                fields.append((key.stringValue, try object.decode(JSONValue.self, forKey: key)))
            }
            self = .object(fields)
        } else if var list = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !list.isAtEnd { items.append(try list.decode(JSONValue.self)) }
            self = .array(items)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() { self = .null }
            else if let value = try? single.decode(Bool.self) { self = .bool(value) }
            else if let value = try? single.decode(Int64.self) { self = .int(value) }
            else if let value = try? single.decode(Double.self) { self = .fraction(value) }
            else { self = .string(try single.decode(String.self)) }
        }
    }

    /// An object's field (the first of that name); nil for a missing field or a non-object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields.first { $0.0 == key }?.1 }
        return nil
    }

    public var string: String? { if case .string(let value) = self { value } else { nil } }
    public var bool: Bool? { if case .bool(let value) = self { value } else { nil } }
    /// A whole number (also one written with a fraction part of zero).
    public var int: Int64? {
        switch self {
        case .int(let value): value
        case .fraction(let value) where value == value.rounded() && abs(value) < 9e18: Int64(value)
        default: nil
        }
    }
    public var uint: UInt64? { int.flatMap { $0 >= 0 ? UInt64($0) : nil } }
    /// Any number, as a Double.
    public var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .fraction(let value): value
        default: nil
        }
    }
    public var array: [JSONValue]? { if case .array(let items) = self { items } else { nil } }
    /// An object's fields by name.
    public var object: [String: JSONValue]? {
        guard case .object(let fields) = self else { return nil }
        return Dictionary(fields, uniquingKeysWith: { first, _ in first })
    }

    /// Short text: strings as they are, numbers without a needless ".0", lists joined by spaces,
    /// objects as sorted `key=value` pairs.
    public var text: String {
        switch self {
        case .string(let value): value
        case .int(let value): String(value)
        case .fraction(let value): value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .array(let items): items.map(\.text).joined(separator: " ")
        case .object(let fields): fields.sorted { $0.0 < $1.0 }.map { "\($0.0)=\($0.1.text)" }.joined(separator: " ")
        }
    }
}

extension DecodingError {
    /// What is wrong, at which field: `limits.memory_mib: expected UInt64`, `agent.name: missing`.
    /// `document` names the whole when it is not JSON at all (`body`, a file's path).
    public func describe(document: String) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? "." + $0.stringValue }.joined().drop { $0 == "." }.description
        }
        switch self {
        case .keyNotFound(let key, let context): return "\(path(context.codingPath + [key])): missing"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)): expected \(type)"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)): expected \(type), found null"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "\(document) is not valid JSON" : "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(document) does not decode"
        }
    }
}
