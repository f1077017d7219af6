// COffswitch: timespec reaches Swift through its headers (pthread.h), so its members need that import.
import COffswitch
import Glibc
import OffswitchCore

/// One entry of a tar stream, with its extended headers (PAX `x`/`g`, GNU `L`/`K`) applied.
/// Names are bytes, as in the archive: they need not be UTF-8.
struct TarEntry {
    enum Kind: Equatable {
        case regular, hardLink, symbolicLink, characterDevice, blockDevice, directory, fifo
    }

    var kind: Kind
    var name: [UInt8]
    /// A hard link's target entry, a symlink's target text.
    var linkName: [UInt8]
    /// Data bytes that follow the header (0 for every kind but `regular`).
    var size: Int64
    /// Permission bits with setuid, setgid and sticky (07777); the header's type bits are dropped.
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var modified: timespec
    /// `SCHILY.xattr.NAME` records: NAME and the raw value.
    var xattrs: [(name: [UInt8], value: [UInt8])]

    /// The name as errors show it.
    var displayName: String { EntryPath.display(name) }
}

/// Reads a tar stream from a decompressor through one fixed buffer: ustar, GNU (long names and
/// links, base-256 numbers) and PAX (`x` and `g` headers). Checks every header's checksum and
/// stops at two zero blocks or at the end of the stream. Counts bytes and entries against the
/// limits as they pass, hashes every uncompressed byte (the diffID), and names the layer and the
/// entry in every error.
final class TarReader {
    /// Extended headers (PAX, GNU long names) bigger than this are refused.
    static let metadataLimit = 1 << 20
    private static let block = 512

    private let source: Decompressor
    private let limits: UnpackLimits
    private let label: String

    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var streamEnded = false

    private var streamHash = SHA256()
    private(set) var bytes: Int64 = 0
    private(set) var entries = 0

    /// Data bytes of the current entry not yet read, and the padding after them.
    private var remaining: Int64 = 0
    private var padding = 0
    /// The current entry's name for errors; nil before the first.
    private var current: String?
    /// PAX `g` records, which apply to every later entry, and their total size.
    private var globals: [String: [UInt8]] = [:]
    private var globalBytes = 0

    init(source: Decompressor, limits: UnpackLimits, label: String, bufferSize: Int = 1 << 20) {
        self.source = source
        self.limits = limits
        self.label = label
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// "sha256:<hex>" of every uncompressed byte read; complete after `finish`.
    func diffID() -> String {
        var copy = streamHash
        return "sha256:" + copy.finish()
    }

    /// An error about `entry`, in the form every refusal takes.
    func refusal(_ entry: String, _ why: String, code: OffswitchError.Code = .invalidArgument) -> OffswitchError {
        OffswitchError(code, "\(label): entry \"\(entry)\": \(why)")
    }

    /// Where the stream stands, for errors: the entry being read, or the header after the last one.
    private var context: String {
        guard let current else { return "the first header" }
        return remaining > 0 ? "entry \"\(current)\"" : "the header after entry \"\(current)\""
    }

    private func failure(_ why: String) -> OffswitchError {
        OffswitchError(.invalidArgument, "\(label): \(context): \(why)")
    }

    // MARK: The byte stream

    /// Reads more into the buffer (after what is there); false at the end of the stream.
    private func pull() throws(OffswitchError) -> Bool {
        if streamEnded { return false }
        if start == end {
            start = 0
            end = 0
        } else if end == buffer.count {
            let kept = end - start
            buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: kept)
            start = 0
            end = kept
        }
        let n: Int
        do {
            n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
        } catch {
            throw OffswitchError(error.code, "\(label): \(context): \(error.message)", errno: error.errno)
        }
        if n == 0 {
            streamEnded = true
            return false
        }
        streamHash.update(UnsafeRawBufferPointer(rebasing: buffer[end..<(end + n)]))
        end += n
        bytes += Int64(n)
        if bytes > limits.bytes {
            throw failure("decompression bomb: the layer's uncompressed size passes its limit of \(limits.bytes) bytes")
        }
        return true
    }

    /// The next 512-byte block, nil at the end of the stream; a partial block is a truncation.
    private func readBlock() throws(OffswitchError) -> UnsafeRawBufferPointer? {
        while end - start < Self.block {
            if try !pull() {
                if start == end { return nil }
                throw failure("truncated: the stream ends inside a header")
            }
        }
        defer { start += Self.block }
        return UnsafeRawBufferPointer(rebasing: buffer[start..<(start + Self.block)])
    }

    /// Drops `count` bytes of the stream.
    private func skip(_ count: Int64, truncated: String) throws(OffswitchError) {
        var left = count
        while left > 0 {
            if start == end, try !pull() { throw failure(truncated) }
            let n = Int(min(left, Int64(end - start)))
            start += n
            left -= Int64(n)
        }
    }

    /// The current entry's next bytes, straight from the buffer (valid until the next call); nil
    /// once all are read.
    func nextChunk() throws(OffswitchError) -> UnsafeRawBufferPointer? {
        if remaining == 0 {
            try skipPadding()
            return nil
        }
        if start == end, try !pull() { throw failure("truncated: the stream ends inside the entry's data") }
        let n = Int(min(remaining, Int64(end - start)))
        defer {
            start += n
            remaining -= Int64(n)
        }
        return UnsafeRawBufferPointer(rebasing: buffer[start..<(start + n)])
    }

    private func skipPadding() throws(OffswitchError) {
        let count = padding
        padding = 0
        try skip(Int64(count), truncated: "truncated: the stream ends inside the padding after the entry's data")
    }

    /// An extended header's data (its size already checked against `metadataLimit`).
    private func readMetadata(_ size: Int64) throws(OffswitchError) -> [UInt8] {
        var data: [UInt8] = []
        data.reserveCapacity(Int(size))
        var left = Int(size)
        while left > 0 {
            if start == end, try !pull() { throw failure("truncated: the stream ends inside an extended header") }
            let n = min(left, end - start)
            data.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[start..<(start + n)]))
            start += n
            left -= n
        }
        try skip(Self.padding(after: size), truncated: "truncated: the stream ends inside an extended header")
        return data
    }

    private static func padding(after size: Int64) -> Int64 { (Int64(block) - size % Int64(block)) % Int64(block) }

    /// Reads the rest of the stream after the end-of-archive blocks (it counts toward the diffID
    /// and the byte limit), so that the digests cover the whole blob.
    func finish() throws(OffswitchError) {
        start = end
        while try pull() { start = end }
    }

    // MARK: Headers

    /// The next entry, its data left to `nextChunk`; nil at the end of the archive. Data of the
    /// previous entry not read is skipped.
    func next() throws(OffswitchError) -> TarEntry? {
        try skip(remaining, truncated: "truncated: the stream ends inside the entry's data")
        remaining = 0
        try skipPadding()

        var local: [String: [UInt8]] = [:]
        var longName: [UInt8]?
        var longLink: [UInt8]?
        var metadataBytes = 0
        while true {
            guard let block = try readBlock() else { return nil }
            if block.allSatisfy({ $0 == 0 }) {
                // The end: two zero blocks, or one at the very end of the stream.
                guard let second = try readBlock(), !second.allSatisfy({ $0 == 0 }) else { return nil }
                throw failure("a zero block followed by a header: not a tar stream this reader trusts")
            }
            let header = Array(block)
            let rawName = Self.string(header[0..<100])
            let shownName = EntryPath.display(rawName)
            try verifyChecksum(header, name: shownName)

            let type = header[156]
            guard let headerSize = Self.number(header[124..<136]), headerSize >= 0 else {
                throw refusal(shownName, "invalid size field")
            }
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
                metadataBytes += Int(clamping: headerSize)
                guard headerSize <= Int64(Self.metadataLimit), metadataBytes <= Self.metadataLimit else {
                    throw failure("an extended header of \(headerSize) bytes: extended headers may hold at most \(Self.metadataLimit) bytes an entry")
                }
                let data = try readMetadata(headerSize)
                switch type {
                case UInt8(ascii: "x"):
                    for (key, value) in try parsePAX(data) { local[key] = value }
                case UInt8(ascii: "g"):
                    for (key, value) in try parsePAX(data) {
                        globalBytes += key.utf8.count + value.count
                        globals[key] = value
                    }
                    guard globalBytes <= Self.metadataLimit else {
                        throw failure("global PAX headers hold more than \(Self.metadataLimit) bytes")
                    }
                case UInt8(ascii: "L"): longName = Self.string(data[...])
                default: longLink = Self.string(data[...])
                }
                continue
            default:
                let entry = try makeEntry(header, type: type, size: headerSize, local: local, longName: longName, longLink: longLink)
                entries += 1
                current = entry.displayName
                if entries > limits.entries {
                    throw refusal(entry.displayName, "decompression bomb: the layer has more entries than its limit of \(limits.entries)")
                }
                remaining = entry.size
                padding = Int(Self.padding(after: entry.size))
                return entry
            }
        }
    }

    private func verifyChecksum(_ header: [UInt8], name: String) throws(OffswitchError) {
        guard let stored = Self.number(header[148..<156]) else { throw refusal(name, "invalid header checksum field") }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        // Old tars summed signed chars; both sums are accepted, as GNU tar and Go do.
        guard stored == unsigned || stored == signed else {
            throw refusal(name, "bad header checksum (stored \(stored), computed \(unsigned))")
        }
    }

    private func makeEntry(
        _ header: [UInt8], type: UInt8, size headerSize: Int64, local: [String: [UInt8]], longName: [UInt8]?, longLink: [UInt8]?
    ) throws(OffswitchError) -> TarEntry {
        // POSIX ustar ("ustar\0" "00") splits long names into prefix and name; GNU ("ustar  \0")
        // keeps other fields where the prefix would be.
        var name = Self.string(header[0..<100])
        if header[257..<263].elementsEqual("ustar\0".utf8) {
            let prefix = Self.string(header[345..<500])
            if !prefix.isEmpty { name = prefix + [UInt8(ascii: "/")] + name }
        }
        // Path and link come from the entry's own headers only; a global path or size would give
        // every entry the same one. Owners, times and xattrs fall back to the global headers.
        // An empty value undoes a global record (POSIX), except for an xattr, whose value may be empty.
        let records = globals.filter { !["path", "linkpath", "size"].contains($0.key) }.merging(local) { $1 }
            .filter { !$0.value.isEmpty || $0.key.hasPrefix("SCHILY.xattr.") }
        name = records["path"] ?? longName ?? name
        let shown = EntryPath.display(name)
        let linkName = records["linkpath"] ?? longLink ?? Self.string(header[157..<257])

        let kind: TarEntry.Kind
        switch type {
        case UInt8(ascii: "0"), UInt8(ascii: "7"): kind = .regular
        // Pre-POSIX archives mark directories only by a trailing slash.
        case 0: kind = name.last == UInt8(ascii: "/") ? .directory : .regular
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symbolicLink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        default:
            let shownType = (0x21..<0x7f).contains(type) ? "'\(Character(UnicodeScalar(type)))'" : "0x\(String(type, radix: 16))"
            throw refusal(shown, "unsupported entry type \(shownType)")
        }
        if records.keys.contains(where: { $0.hasPrefix("GNU.sparse.") }) {
            throw refusal(shown, "sparse files are not supported")
        }

        var size = headerSize
        if let value = records["size"] {
            guard let parsed = Self.decimal(value) else { throw refusal(shown, "invalid PAX size") }
            size = parsed
        }
        // Only regular files carry data; for the other kinds the size field is ignored, as Go's
        // archive/tar (which wrote most layers) reads it. Reading it differently would make the
        // same blob unpack to another tree here than there.
        if kind != .regular { size = 0 }

        guard let mode = Self.number(header[100..<108]), mode >= 0 else { throw refusal(shown, "invalid mode field") }
        let uid = try id(records["uid"], field: header[108..<116], what: "uid", entry: shown)
        let gid = try id(records["gid"], field: header[116..<124], what: "gid", entry: shown)
        var modified = timespec(tv_sec: 0, tv_nsec: 0)
        if let value = records["mtime"] {
            guard let time = Self.time(value) else { throw refusal(shown, "invalid PAX mtime") }
            modified = time
        } else {
            guard let seconds = Self.number(header[136..<148]) else { throw refusal(shown, "invalid mtime field") }
            modified.tv_sec = Int(seconds)
        }

        let xattrPrefix = "SCHILY.xattr."
        let xattrs = records.filter { $0.key.hasPrefix(xattrPrefix) }.sorted { $0.key < $1.key }.map {
            (name: Array($0.key.utf8.dropFirst(xattrPrefix.utf8.count)), value: $0.value)
        }
        return TarEntry(
            kind: kind, name: name, linkName: linkName, size: size, mode: UInt32(mode & 0o7777), uid: uid, gid: gid,
            modified: modified, xattrs: xattrs)
    }

    /// A uid or gid: the PAX record if there is one, else the header field. (uid_t)-1 means
    /// "leave unchanged" to chown, so it is refused too.
    private func id(_ record: [UInt8]?, field: ArraySlice<UInt8>, what: String, entry: String) throws(OffswitchError) -> UInt32 {
        let value = record.map { Self.decimal($0) } ?? Self.number(field)
        guard let value, value >= 0, value < Int64(UInt32.max) else { throw refusal(entry, "invalid \(what)") }
        return UInt32(value)
    }

    /// PAX records, `LENGTH KEY=VALUE\n` each; LENGTH counts the whole record.
    private func parsePAX(_ data: [UInt8]) throws(OffswitchError) -> [(String, [UInt8])] {
        var records: [(String, [UInt8])] = []
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                let length = Self.decimal(data[index..<space]), length > 0, length <= Int64(data.count - index)
            else { throw failure("malformed PAX record (its length)") }
            let record = data[(space + 1)..<(index + Int(length))]
            guard record.last == UInt8(ascii: "\n"), let equals = record.firstIndex(of: UInt8(ascii: "=")),
                let key = String(validating: record[record.startIndex..<equals], as: UTF8.self)
            else { throw failure("malformed PAX record") }
            records.append((key, Array(record[(equals + 1)..<(record.endIndex - 1)])))
            index += Int(length)
        }
        return records
    }

    // MARK: Fields

    /// A NUL-terminated field's bytes (all of it when it has no NUL).
    static func string(_ field: ArraySlice<UInt8>) -> [UInt8] {
        Array(field.prefix { $0 != 0 })
    }

    /// A numeric header field: octal (space- or NUL-padded), or GNU base-256 (high bit of the first
    /// byte set; the next bit is the sign, as Go's archive/tar reads it). nil when malformed or
    /// too big.
    static func number(_ field: ArraySlice<UInt8>) -> Int64? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            let invert: UInt8 = first & 0x40 != 0 ? 0xff : 0
            var value: UInt64 = 0
            for (index, byte) in field.enumerated() {
                let digit = index == 0 ? (byte ^ invert) & 0x7f : byte ^ invert
                guard value >> 56 == 0 else { return nil }
                value = value << 8 | UInt64(digit)
            }
            guard value <= UInt64(Int64.max) else { return nil }
            return invert == 0xff ? ~Int64(value) : Int64(value)
        }
        let trimmed = field.drop { $0 == UInt8(ascii: " ") || $0 == 0 }
        let digits = trimmed.prefix { $0 != UInt8(ascii: " ") && $0 != 0 }
        guard trimmed.dropFirst(digits.count).allSatisfy({ $0 == UInt8(ascii: " ") || $0 == 0 }) else { return nil }
        var value: Int64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(digit), value >> 60 == 0 else { return nil }
            value = value << 3 | Int64(digit - UInt8(ascii: "0"))
        }
        return value
    }

    /// A non-negative decimal (PAX sizes and ids).
    static func decimal(_ text: some Collection<UInt8>) -> Int64? {
        guard !text.isEmpty, text.count <= 18 else { return nil }
        var value: Int64 = 0
        for digit in text {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            value = value * 10 + Int64(digit - UInt8(ascii: "0"))
        }
        return value
    }

    /// A PAX time: `[-]SECONDS[.FRACTION]`.
    static func time(_ text: [UInt8]) -> timespec? {
        var rest = text[...]
        let negative = rest.first == UInt8(ascii: "-")
        if negative { rest = rest.dropFirst() }
        let whole = rest.prefix { $0 != UInt8(ascii: ".") }
        guard let seconds = decimal(whole) else { return nil }
        var nanoseconds = 0
        let fraction = rest.dropFirst(whole.count + 1)
        if whole.count < rest.count {
            guard fraction.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
            for (place, digit) in fraction.prefix(9).enumerated() {
                nanoseconds += Int(digit - UInt8(ascii: "0")) * [100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1][place]
            }
        }
        if !negative { return timespec(tv_sec: Int(seconds), tv_nsec: nanoseconds) }
        if nanoseconds == 0 { return timespec(tv_sec: -Int(seconds), tv_nsec: 0) }
        return timespec(tv_sec: -Int(seconds) - 1, tv_nsec: 1_000_000_000 - nanoseconds)
    }
}
