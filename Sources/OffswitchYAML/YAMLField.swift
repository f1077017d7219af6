import OffswitchCore
import Yams

/// One thing wrong (or worth a warning) in a YAML file (profile, seccomp policy, scenario, agent,
/// escape attempt): `FILE: FIELD.PATH: reason`.
public struct FieldProblem: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// `seccomp.syscalls[3].args[0].op`; empty for the file as a whole.
    public var field: String
    public var reason: String
    public var isWarning: Bool

    public var description: String {
        let location = field.isEmpty ? file : "\(file): \(field)"
        return isWarning ? "\(location): warning: \(reason)" : "\(location): \(reason)"
    }
}

/// Collects the problems of one read, so that a check reports all of them, not just the first.
package final class ProblemList {
    package private(set) var problems: [FieldProblem] = []

    package func error(_ file: String, _ field: String, _ reason: String) {
        problems.append(FieldProblem(file: file, field: field, reason: reason, isWarning: false))
    }

    package func warning(_ file: String, _ field: String, _ reason: String) {
        problems.append(FieldProblem(file: file, field: field, reason: reason, isWarning: true))
    }

    package init() {}

    package var hasErrors: Bool { problems.contains { !$0.isWarning } }
}

/// A node of a parsed YAML (or JSON) document together with the field path that leads to it.
/// Every accessor reports what is wrong under that path and returns nil, so readers can go on
/// and find the next problem.
package struct YAMLField {
    let node: Node
    package let file: String
    package let path: String
    let problems: ProblemList

    /// Parses `text`; a syntax error is reported with its line and column.
    package static func parse(_ text: String, file: String, problems: ProblemList) -> YAMLField? {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                problems.error(file, "", "the file is empty")
                return nil
            }
            return YAMLField(node: node, file: file, path: "", problems: problems)
        } catch let error as YamlError {
            problems.error(file, "", "not valid YAML or JSON: \(describe(error))")
            return nil
        } catch {
            problems.error(file, "", "not valid YAML or JSON: \(error)")
            return nil
        }
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "line \(context.mark.line): duplicated keys \(duplicates.joined(separator: ", "))"
        case .reader(let problem, _, _, _):
            return problem
        default:
            return "\(error)"
        }
    }

    package func error(_ reason: String) { problems.error(file, path, reason) }
    package func warning(_ reason: String) { problems.warning(file, path, reason) }

    private func child(_ node: Node, key: String) -> YAMLField {
        YAMLField(node: node, file: file, path: path.isEmpty ? key : path + "." + key, problems: problems)
    }

    private var found: String {
        switch node {
        case .scalar(let scalar): isNull ? "null" : "\"\(scalar.string)\""
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    package var isNull: Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The mapping's fields by key. Keys not in `allowed` are reported (they are usually typos,
    /// and a policy field silently ignored is a hole); so are missing `required` keys.
    package func mapping(allowed: [String], required: [String] = []) -> [String: YAMLField]? {
        guard case .mapping(let mapping) = node else {
            error("expected a mapping, found \(found)")
            return nil
        }
        var fields: [String: YAMLField] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let key) = keyNode else {
                error("keys must be plain names")
                continue
            }
            let field = child(value, key: key.string)
            // JSON writes absent optional fields as null (Docker's archMap does).
            if field.isNull { continue }
            guard allowed.contains(key.string) else {
                child(value, key: key.string).error("unknown field (expected one of: \(allowed.joined(separator: ", ")))")
                continue
            }
            fields[key.string] = field
        }
        for key in required where fields[key] == nil {
            YAMLField(node: node, file: file, path: path.isEmpty ? key : path + "." + key, problems: problems)
                .error("missing")
        }
        return fields
    }

    package func sequence() -> [YAMLField]? {
        guard case .sequence(let sequence) = node else {
            error("expected a list, found \(found)")
            return nil
        }
        return sequence.enumerated().map { index, item in
            YAMLField(node: item, file: file, path: "\(path)[\(index)]", problems: problems)
        }
    }

    package var isMapping: Bool { if case .mapping = node { true } else { false } }
    package var isScalar: Bool { if case .scalar = node { !isNull } else { false } }

    package func string() -> String? {
        guard case .scalar(let scalar) = node, !isNull else {
            error("expected a string, found \(found)")
            return nil
        }
        return scalar.string
    }

    package func strings() -> [String]? {
        guard let items = sequence() else { return nil }
        let values = items.compactMap { $0.string() }
        return values.count == items.count ? values : nil
    }

    /// A whole number in `range`; decimal, or hex with 0x.
    package func unsigned(_ range: ClosedRange<UInt64> = 0...UInt64.max) -> UInt64? {
        guard let text = string() else { return nil }
        let value = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
        guard let value else {
            error("expected a whole number \(describe(range)), found \"\(text)\"")
            return nil
        }
        guard range.contains(value) else {
            error("\(value) is out of range \(describe(range))")
            return nil
        }
        return value
    }

    private func describe(_ range: ClosedRange<UInt64>) -> String {
        range.upperBound == UInt64.max ? "(at least \(range.lowerBound))" : "(\(range.lowerBound)...\(range.upperBound))"
    }

    package func double() -> Double? {
        guard let text = string() else { return nil }
        guard let value = Double(text), value.isFinite else {
            error("expected a number, found \"\(text)\"")
            return nil
        }
        return value
    }

    package func bool() -> Bool? {
        guard let text = string() else { return nil }
        switch text {
        case "true", "True", "TRUE", "yes", "on": return true
        case "false", "False", "FALSE", "no", "off": return false
        default:
            error("expected true or false, found \"\(text)\"")
            return nil
        }
    }

    /// A size: bytes, or a number with KiB, MiB, GiB (`256MiB`).
    package func bytes() -> UInt64? {
        guard let text = string() else { return nil }
        let units: [(String, UInt64)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1)]
        var digits = Substring(text.trimmingSpaces)
        var multiplier: UInt64 = 1
        for (suffix, factor) in units where digits.hasSuffix(suffix) {
            digits = digits.dropLast(suffix.count)
            multiplier = factor
            break
        }
        guard let value = UInt64(digits.trimmingSpaces), value.multipliedReportingOverflow(by: multiplier).overflow == false else {
            error("expected a size such as 256MiB or 1GiB, found \"\(text)\"")
            return nil
        }
        return value * multiplier
    }

    /// A duration in whole seconds: `600`, `600s`, `10m`, `1h`.
    package func seconds() -> Int? {
        guard let text = string() else { return nil }
        var digits = Substring(text)
        var multiplier = 1
        if let last = digits.last, let factor = ["s": 1, "m": 60, "h": 3600][String(last)] {
            digits = digits.dropLast()
            multiplier = factor
        }
        guard let value = Int(digits), value > 0, value <= 7 * 24 * 3600 / multiplier else {
            error("expected a positive duration such as 600s or 10m (at most a week), found \"\(text)\"")
            return nil
        }
        return value * multiplier
    }
}

extension StringProtocol {
    package var trimmingSpaces: Substring {
        var text = Substring(self)
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
