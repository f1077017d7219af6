/// Which network namespace a sandbox lives in. The profile's `network: none` says what every
/// namespace holds (loopback alone, no route anywhere); this says whose it is.
public enum SandboxNetwork: Sendable, Equatable, Codable, CustomStringConvertible {
    /// A namespace of its own, owned by its user namespace (`none`, the default).
    case own
    /// The namespace of the running sandbox of this id (`sandbox:ID`), Docker compose's pod model:
    /// services share one loopback and reach each other at 127.0.0.1. The namespace stays the first
    /// sandbox's (its user namespace owns it), so root in the joining one has no network
    /// capabilities there.
    case sandbox(String)

    /// Longest id accepted in `sandbox:ID` (ids are 12 hex digits; this only bounds the message).
    static let maxIDLength = 64

    /// Parses `none` or `sandbox:ID`; errors name the field `network`.
    public init(parsing text: String) throws(OffswitchError) {
        if text == "none" {
            self = .own
            return
        }
        guard text.hasPrefix("sandbox:") else {
            throw OffswitchError(.invalidArgument, "network \"\(text.prefix(80))\": expected none or sandbox:ID")
        }
        let id = String(text.dropFirst("sandbox:".count))
        guard !id.isEmpty, id.utf8.count <= Self.maxIDLength else {
            throw OffswitchError(.invalidArgument, "network: sandbox:ID needs the id of a running sandbox (1 to \(Self.maxIDLength) characters)")
        }
        self = .sandbox(id)
    }

    public var description: String {
        switch self {
        case .own: "none"
        case .sandbox(let id): "sandbox:\(id)"
        }
    }

    public init(from decoder: any Decoder) throws {
        self = try SandboxNetwork(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
