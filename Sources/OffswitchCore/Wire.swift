/// A small, explicit binary encoding for the control channel between the host and PID 1.
/// Little-endian integers, length-prefixed byte strings. It exists because PID 1 must not link
/// Foundation (it runs single-threaded from a sealed memfd), so JSON is not an option there.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    public mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }
    public mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }

    public mutating func data(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ value: String) { data(Array(value.utf8)) }

    public mutating func strings(_ values: [String]) {
        u32(UInt32(values.count))
        for value in values { string(value) }
    }
}

/// Reads what `WireWriter` wrote; every read checks bounds and throws a protocol error.
public struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ count: Int) throws(OffswitchError) -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count - offset >= count else {
            throw OffswitchError(.protocolError, "control message truncated at byte \(offset)")
        }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    public mutating func u8() throws(OffswitchError) -> UInt8 { try take(1).first! }
    public mutating func bool() throws(OffswitchError) -> Bool { try u8() != 0 }

    public mutating func u32() throws(OffswitchError) -> UInt32 {
        try take(4).reversed().reduce(0) { ($0 << 8) | UInt32($1) }
    }

    public mutating func u64() throws(OffswitchError) -> UInt64 {
        try take(8).reversed().reduce(0) { ($0 << 8) | UInt64($1) }
    }

    public mutating func i32() throws(OffswitchError) -> Int32 { Int32(bitPattern: try u32()) }
    public mutating func i64() throws(OffswitchError) -> Int64 { Int64(bitPattern: try u64()) }

    public mutating func data() throws(OffswitchError) -> [UInt8] {
        Array(try take(Int(try u32())))
    }

    public mutating func string() throws(OffswitchError) -> String {
        let raw = try data()
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw OffswitchError(.protocolError, "control message holds invalid UTF-8 at byte \(offset)")
        }
        return text
    }

    public mutating func strings() throws(OffswitchError) -> [String] {
        let count = Int(try u32())
        guard count <= bytes.count - offset else {
            throw OffswitchError(.protocolError, "control message list count \(count) exceeds its size")
        }
        var values: [String] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try string()) }
        return values
    }
}
