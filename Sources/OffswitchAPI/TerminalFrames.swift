/// The response body of `POST /v1/sandboxes/{id}/terminal`: frames of one type byte, a 4-byte
/// big-endian length, then the payload. `o`: terminal output. `x`: the command exited; the
/// payload is its exit code, 4 bytes big-endian (128+N for signal N). Nothing follows `x`.
public enum TerminalFrames {
    public static let contentType = "application/vnd.offswitch.terminal"

    public static func output(_ bytes: [UInt8]) -> [UInt8] { frame(UInt8(ascii: "o"), bytes) }

    public static func exit(_ code: Int32) -> [UInt8] {
        let value = UInt32(bitPattern: code)
        return frame(UInt8(ascii: "x"), [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)])
    }

    static func frame(_ type: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [type, UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + payload
    }

    public enum Event: Equatable, Sendable {
        case output([UInt8])
        case exit(Int32)
    }

    /// Takes the complete frames off the front of `buffer`.
    public static func decode(_ buffer: inout [UInt8]) -> [Event] {
        var events: [Event] = []
        while buffer.count >= 5 {
            let length = Int(buffer[1]) << 24 | Int(buffer[2]) << 16 | Int(buffer[3]) << 8 | Int(buffer[4])
            guard buffer.count >= 5 + length else { break }
            let payload = Array(buffer[5..<(5 + length)])
            switch buffer[0] {
            case UInt8(ascii: "o"): events.append(.output(payload))
            case UInt8(ascii: "x") where length == 4:
                let raw = UInt32(payload[0]) << 24 | UInt32(payload[1]) << 16 | UInt32(payload[2]) << 8 | UInt32(payload[3])
                events.append(.exit(Int32(bitPattern: raw)))
            default: break
            }
            buffer.removeFirst(5 + length)
        }
        return events
    }
}
