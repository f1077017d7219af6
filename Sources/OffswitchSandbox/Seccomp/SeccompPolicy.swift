public import FoundationEssentials
import Glibc
public import OffswitchCore

/// A seccomp policy in the OCI / Docker JSON format, as written (before includes and excludes are
/// resolved for a machine). Docker's default profile loads unchanged.
public struct SeccompPolicy: Sendable, Equatable, Decodable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    /// OCI form: the architectures to accept.
    public var architectures: [String]?
    /// Docker form: native architecture and the sub-architectures it can run.
    public var archMap: [ArchMapEntry]?
    public var syscalls: [Rule]
    public var flags: [String]?

    public struct ArchMapEntry: Sendable, Equatable, Decodable {
        public var architecture: String
        public var subArchitectures: [String]?
    }

    public struct Rule: Sendable, Equatable, Decodable {
        public var names: [String]
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?
        public var comment: String?
        public var includes: Filter?
        public var excludes: Filter?
    }

    public struct Argument: Sendable, Equatable, Decodable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String
    }

    /// Docker's conditions on a rule: capabilities, architectures (Go names) and kernel version.
    public struct Filter: Sendable, Equatable, Decodable {
        public var caps: [String]?
        public var arches: [String]?
        public var minKernel: String?
    }

    /// Reads and decodes a policy file, naming the file and the field that is wrong.
    public static func load(path: String) throws(OffswitchError) -> SeccompPolicy {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.invalidProfile, "\(path): cannot read the seccomp policy", errno: errno)
        }
        return try decode(data, source: path)
    }

    public static func decode(_ data: Data, source: String) throws(OffswitchError) -> SeccompPolicy {
        do {
            return try JSONDecoder().decode(SeccompPolicy.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw OffswitchError(.invalidProfile, "\(source): \(fieldPath(context.codingPath + [key])): missing")
        } catch let DecodingError.typeMismatch(type, context) {
            throw OffswitchError(.invalidProfile, "\(source): \(fieldPath(context.codingPath)): expected \(type)")
        } catch let DecodingError.valueNotFound(type, context) {
            throw OffswitchError(.invalidProfile, "\(source): \(fieldPath(context.codingPath)): expected \(type), found null")
        } catch let DecodingError.dataCorrupted(context) {
            throw OffswitchError(.invalidProfile, "\(source): \(fieldPath(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw OffswitchError(.invalidProfile, "\(source): \(error)")
        }
    }

    /// `syscalls[3].args[0].op`
    static func fieldPath(_ path: [any CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return text.isEmpty ? "(top level)" : text
    }
}
