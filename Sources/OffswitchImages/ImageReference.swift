public import OffswitchCore

/// A reference to an image as container tools write it (`alpine`, `alpine:3.20`,
/// `ghcr.io/org/app:v1`, `localhost:5000/x@sha256:...`), normalised as Docker does: the
/// default registry `docker.io`, `library/` for its single-name repositories, the tag `latest`.
public struct ImageReference: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    public static let defaultRegistry = "docker.io"

    public init(parsing text: String) throws(OffswitchError) {
        func fail(_ why: String) -> OffswitchError { OffswitchError(.invalidArgument, "image reference \"\(text.prefix(200))\": \(why)") }
        guard !text.isEmpty, text.utf8.count <= 512 else { throw fail("must be 1 to 512 characters") }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            _ = try OCI.hexOfDigest(digest, what: "image reference \"\(text)\"")
            self.digest = digest
            rest = rest[..<at]
        } else {
            digest = nil
        }
        // A tag follows the last colon after the last slash (a colon before it is a registry port).
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let tag = String(rest[rest.index(after: colon)...])
            guard !tag.isEmpty, tag.utf8.count <= 128,
                  tag.utf8.allSatisfy({ Self.isAlphanumeric($0) || $0 == 0x5f || $0 == 0x2e || $0 == 0x2d }),
                  tag.utf8.first != 0x2e, tag.utf8.first != 0x2d else {
                throw fail("tag \"\(tag)\" must be letters, digits, '_', '.' and '-', not starting with '.' or '-'")
            }
            self.tag = tag
            rest = rest[..<colon]
        } else {
            tag = digest == nil ? "latest" : nil
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        // The first component is a registry when it has a dot or a port, or is localhost.
        if components.count > 1, let first = components.first, first.contains(".") || first.contains(":") || first == "localhost" {
            registry = first
            components.removeFirst()
        } else {
            registry = Self.defaultRegistry
        }
        guard !components.isEmpty, components.allSatisfy({ Self.validComponent($0) }) else {
            throw fail("repository path components must be lowercase letters, digits and single separators (. _ __ -)")
        }
        if registry == Self.defaultRegistry && components.count == 1 { components.insert("library", at: 0) }
        repository = components.joined(separator: "/")
    }

    /// `docker.io/library/alpine:3.20`, the form the store keeps.
    public var description: String {
        "\(registry)/\(repository)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    /// The short form people type: `alpine:3.20` for Docker Hub's library images.
    public var familiar: String {
        var name = "\(registry)/\(repository)"
        if registry == Self.defaultRegistry {
            name = repository.hasPrefix("library/") ? String(repository.dropFirst(8)) : repository
        }
        return name + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
    }

    private static func validComponent(_ component: String) -> Bool {
        let bytes = Array(component.utf8)
        guard let first = bytes.first, let last = bytes.last, bytes.count <= 128 else { return false }
        func lowerAlnum(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) || (0x61...0x7a).contains(b) }
        guard lowerAlnum(first), lowerAlnum(last) else { return false }
        var previousSeparator = false
        for (index, byte) in bytes.enumerated() {
            if lowerAlnum(byte) { previousSeparator = false; continue }
            guard byte == 0x2e || byte == 0x5f || byte == 0x2d else { return false }
            // `__` is one separator; `-` may repeat; `.` and `_` may not.
            if previousSeparator && !(byte == 0x2d || (byte == 0x5f && bytes[index - 1] == 0x5f)) { return false }
            previousSeparator = true
        }
        return true
    }
}
