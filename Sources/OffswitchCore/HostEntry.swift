import Glibc

/// One extra line of a sandbox's /etc/hosts (Docker's `--add-host`, compose's `extra_hosts`).
/// Both parts are checked so that neither can add a line or a field of its own.
public struct HostEntry: Sendable, Equatable, Codable {
    /// 1 to 253 characters of `A-Z a-z 0-9 . _ -`, not starting with `-` or `.`.
    public var name: String
    /// An IPv4 or IPv6 address as inet_ntop writes it.
    public var address: String

    public static let maxEntries = 64
    static let maxNameLength = 253

    /// The line written to /etc/hosts.
    public var line: String { "\(address)\t\(name)\n" }

    /// Checks a `hosts` object (name to address) and returns its entries sorted by name; an error
    /// names the field `hosts.NAME`.
    public static func parse(_ hosts: [String: String]) throws(OffswitchError) -> [HostEntry] {
        guard hosts.count <= maxEntries else {
            throw OffswitchError(.invalidArgument, "hosts: \(hosts.count) entries, at most \(maxEntries)")
        }
        var entries: [HostEntry] = []
        for (name, address) in hosts.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            let field = "hosts.\(Self.printable(name))"
            try checkName(name, field: field)
            guard let canonical = canonicalAddress(address) else {
                throw OffswitchError(.invalidArgument, "\(field): \"\(Self.printable(address))\" is not an IPv4 or IPv6 address")
            }
            entries.append(HostEntry(name: name, address: canonical))
        }
        return entries
    }

    /// Checks entries made or changed by other means than `parse` (a library caller's), so that
    /// what reaches /etc/hosts is always one line each.
    public static func check(_ entries: [HostEntry]) throws(OffswitchError) {
        guard entries.count <= maxEntries else {
            throw OffswitchError(.invalidArgument, "hosts: \(entries.count) entries, at most \(maxEntries)")
        }
        for entry in entries {
            let field = "hosts.\(Self.printable(entry.name))"
            try checkName(entry.name, field: field)
            guard canonicalAddress(entry.address) == entry.address else {
                throw OffswitchError(.invalidArgument, "\(field): \"\(Self.printable(entry.address))\" is not an address as inet_ntop writes it")
            }
        }
    }

    static func checkName(_ name: String, field: String) throws(OffswitchError) {
        let bytes = Array(name.utf8)
        let allowed = bytes.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
        guard !bytes.isEmpty, bytes.count <= maxNameLength, allowed, bytes[0] != 0x2D, bytes[0] != 0x2E else {
            throw OffswitchError(.invalidArgument, "\(field): a host name is 1 to \(maxNameLength) letters, digits, '.', '_' or '-', not starting with '-' or '.'")
        }
    }

    /// The address as inet_ntop writes it, or nil when inet_pton takes it as neither family.
    static func canonicalAddress(_ text: String) -> String? {
        guard !text.utf8.contains(0) else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        for family in [AF_INET, AF_INET6] where inet_pton(family, text, &bytes) == 1 {
            guard inet_ntop(family, bytes, &out, socklen_t(out.count)) != nil else { return nil }
            return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return nil
    }

    /// `text` for an error message, control characters written as `\u{N}` and cut at 80 characters.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(80) {
            out += scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
        }
        return out
    }
}
