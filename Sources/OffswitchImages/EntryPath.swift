/// A tar entry's name as a path beneath the layer directory: relative, no `..`, no empty or `.`
/// components (a leading `./` and doubled or trailing slashes fall away). Kept as bytes: names in
/// an archive need not be UTF-8, and the file must get exactly the name the archive gave.
struct EntryPath: Hashable {
    /// Why a name was refused, for the unpacker's error.
    struct Refusal: Error {
        var reason: String
    }

    static let maxLength = 4096
    static let maxComponent = 255

    /// The components, each non-empty, without `/` or NUL, never `.` or `..`.
    let components: [[UInt8]]

    init(_ raw: [UInt8]) throws(Refusal) {
        if raw.isEmpty { throw Refusal(reason: "empty name") }
        if raw.contains(0) { throw Refusal(reason: "the name holds a NUL byte") }
        if raw.first == UInt8(ascii: "/") { throw Refusal(reason: "absolute name") }
        // PATH_MAX: no real file has a longer name, and a 1 MiB name of `a/a/a...` would make half
        // a million directories for one entry.
        if raw.count > Self.maxLength { throw Refusal(reason: "a name longer than \(Self.maxLength) bytes") }
        var components: [[UInt8]] = []
        for component in raw.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if component.elementsEqual([UInt8(ascii: ".")]) { continue }
            if component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { throw Refusal(reason: "a \"..\" component") }
            if component.count > Self.maxComponent { throw Refusal(reason: "a component longer than \(Self.maxComponent) bytes") }
            components.append(Array(component))
        }
        self.components = components
    }

    private init(components: [[UInt8]]) { self.components = components }

    /// `.` or `./`: the layer directory itself.
    var isRoot: Bool { components.isEmpty }

    var parent: EntryPath { EntryPath(components: components.dropLast()) }

    /// The last component (empty for the root).
    var name: [UInt8] { components.last ?? [] }

    /// `a/b/c`, or `.` for the root: what openat2 resolves beneath the layer directory.
    var relative: [UInt8] {
        isRoot ? [UInt8(ascii: ".")] : Array(components.joined(separator: [UInt8(ascii: "/")]))
    }

    /// The path of `component` inside this one.
    func appending(_ component: [UInt8]) -> EntryPath { EntryPath(components: components + [component]) }

    /// Whether `self` is `other` or lies inside it.
    func isWithin(_ other: EntryPath) -> Bool { components.starts(with: other.components) }

    /// A name for errors: UTF-8 where it is, control characters escaped, so that a hostile name
    /// cannot write terminal escapes into a log.
    static func display(_ raw: [UInt8]) -> String {
        var shown = ""
        for scalar in String(decoding: raw, as: UTF8.self).unicodeScalars {
            if scalar.properties.generalCategory == .control {
                shown += "\\x" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                shown.unicodeScalars.append(scalar)
            }
        }
        return shown
    }
}

extension Array where Element == UInt8 {
    /// The bytes NUL-terminated, for a C path argument (none of them is NUL: `EntryPath` refuses it).
    var cString: [CChar] { map { CChar(bitPattern: $0) } + [0] }
}
