import Foundation
import OffswitchAPI
import OffswitchCore
import OffswitchTestSupport
import Testing

/// How an exec result's output travels (docs/openapi.yaml `ExecResult`, docs/cli.md): as text when
/// it is valid UTF-8 and its JSON escaping is no longer than its base64, else as base64; so a
/// stream never takes more of the reply than 4/3 of its bytes. Root-free: the encoder itself.
@Suite("Exec output in JSON")
struct ExecDocumentTests {
    static func result(stdout: [UInt8], stderr: [UInt8] = []) -> ExecResult {
        ExecResult(exitCode: 0, signal: nil, stdout: stdout, stderr: stderr, stdoutTruncated: false, stderrTruncated: false,
                   durationNanoseconds: 1_000_000, timedOut: false, shutdown: nil)
    }

    static func base64Length(_ count: Int) -> Int { (count + 2) / 3 * 4 }

    /// What `APIJSON` writes for `text` as a JSON string, quotes left out.
    static func escapedLength(_ text: String) throws -> Int { try APIJSON.encode([text]).count - 4 }

    /// Encodes `bytes` as a reply's stdout, decodes the reply, and checks the contract: one field
    /// set, the bytes exact, the rule followed against what the encoder really writes.
    func check(_ bytes: [UInt8], _ what: String) throws -> ExecDocument {
        let empty = try APIJSON.encode(ExecDocument(Self.result(stdout: []))).count
        let reply = try APIJSON.encode(ExecDocument(Self.result(stdout: bytes)))
        let document = try JSONDecoder().decode(ExecDocument.self, from: Data(reply))
        #expect((document.stdout == nil) != (document.stdout_base64 == nil), "\(what): exactly one of stdout and stdout_base64")
        #expect(document.stdoutBytes == bytes, "\(what): the bytes round-trip exactly")
        // The stream's share of the reply: its escaped text, or its base64 (null and "" swap places).
        #expect(reply.count - empty <= Self.base64Length(bytes.count), "\(what): \(reply.count - empty) bytes in the reply for \(bytes.count)")
        if let text = String(validating: bytes, as: UTF8.self) {
            let escaped = try Self.escapedLength(text)
            if escaped <= Self.base64Length(bytes.count) {
                #expect(document.stdout == text, "\(what): \(escaped) bytes as text, no longer than base64, so text")
            } else {
                #expect(document.stdout == nil, "\(what): \(escaped) bytes as text, longer than base64's \(Self.base64Length(bytes.count))")
            }
        } else {
            #expect(document.stdout == nil, "\(what): not UTF-8, so base64")
        }
        return document
    }

    @Test("Valid UTF-8 full of control bytes travels as base64: the reply is 4/3 of the output, not 6 times")
    func controlBytes() throws {
        let ones = [UInt8](repeating: 1, count: 1 << 20)
        let document = try check(ones, "a MiB of \\u0001")
        #expect(document.stdout == nil && document.stdout_base64?.utf8.count == Self.base64Length(ones.count))
        let reply = try APIJSON.encode(document)
        #expect(reply.count < ones.count * 4 / 3 + 400, "\(reply.count) bytes of reply")
        // A terminal's colours: escape sequences around short words.
        _ = try check(Array(String(repeating: "\u{1b}[31mred\u{1b}[0m ", count: 1000).utf8), "ANSI colours")
        // Both streams, each on its own.
        let both = ExecDocument(Self.result(stdout: Array("plain\n".utf8), stderr: [UInt8](repeating: 0, count: 300)))
        #expect(both.stdout == "plain\n" && both.stdout_base64 == nil && both.stderr == nil && both.stderrBytes == [UInt8](repeating: 0, count: 300))
    }

    @Test("Ordinary text stays text: questions, Unicode, quotes, a trailing newline, nothing at all")
    func ordinaryText() throws {
        for text in ["What is 1 + 1?\nThere are 5 questions remaining.\n", "before\n", "", "\n", "héllo wörld ✓ 数学\n",
                     "{\"key\": \"value\", \"path\": \"/home/user\"}\n", "total 8\n-rwxr-xr-x 1 user user 26 Dec  1 10:00 shutdown.sh\n",
                     "ab\n", String(repeating: "ab\n", count: 100), "tab\there\r\n"] {
            let document = try check(Array(text.utf8), "\(text.debugDescription)")
            #expect(document.stdout == text, "\(text.debugDescription) went as base64")
        }
        // One newline in every two bytes escapes to 3/2 of them, more than base64's 4/3.
        #expect(try check(Array(String(repeating: "1\n", count: 100).utf8), "1\\n x100").stdout == nil)
    }

    @Test("Every byte, alone and repeated, and random output round-trip exactly, never longer than base64")
    func roundTrip() throws {
        for byte in UInt8.min...UInt8.max {
            _ = try check([byte], "byte \(byte)")
            _ = try check([UInt8](repeating: byte, count: 99), "byte \(byte) x99")
            _ = try check(Array("text ".utf8) + [byte] + Array(" more text".utf8), "byte \(byte) in text")
        }
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let scalars: [ClosedRange<UInt32>] = [0...0x1f, 0x20...0x7e, 0x7f...0x7ff, 0x800...0xd7ff, 0xe000...0xffff, 0x10000...0x10ffff]
        for round in 0..<300 {
            let count = Int.random(in: 0...400, using: &random)
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                // Valid UTF-8, with controls more or less often.
                let controls = Double.random(in: 0...1, using: &random)
                var text = ""
                for _ in 0..<count {
                    let range = Double.random(in: 0...1, using: &random) < controls ? scalars[0] : scalars.randomElement(using: &random)!
                    text.unicodeScalars.append(Unicode.Scalar(UInt32.random(in: range, using: &random))!)
                }
                bytes = Array(text.utf8)
            }
            _ = try check(bytes, "seed \(seed) round \(round)")
        }
    }
}
