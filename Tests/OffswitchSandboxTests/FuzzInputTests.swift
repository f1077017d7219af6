import Foundation
import Glibc
import OffswitchContainment
import OffswitchCore
import OffswitchSandbox
import Testing

/// A seeded generator, so a failure names the seed that reproduces it.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random edits of a valid text: byte flips, deletions, duplications, and tokens that YAML and
/// the readers care about (anchors, tags, deep nesting, huge numbers, NUL, invalid UTF-8).
func mutate(_ text: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
    var bytes = text
    let tokens: [[UInt8]] = ["- ", ": ", "{", "}", "[", "]", "&a ", "*a", "!!binary ", "\n  ", "\t", "\"", "'", "#", "null", "~",
                             "99999999999999999999", "-1", "0x", "1e309", "\u{0}", "[[[[[[[[[[[[[[[[", "{a: {b: {c: {d: "]
        .map { Array($0.utf8) } + [[0xff, 0xfe], [0xc3]]
    for _ in 0..<Int.random(in: 1...6, using: &random) {
        guard !bytes.isEmpty else { bytes = tokens.randomElement(using: &random)!; continue }
        let at = Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<5, using: &random) {
        case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
        case 1: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...40, using: &random)))
        case 2: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 60)], at: at)
        case 3: bytes.insert(contentsOf: tokens.randomElement(using: &random)!, at: at)
        default: bytes = Array(bytes[..<at])
        }
    }
    return bytes
}

/// Bad input never crashes a reader or hangs it: every mutation of the bundled files is read
/// for a bounded time, and each either reads or fails with problems that name the file.
@Suite("Fuzzing the readers: profiles, escape attempts")
struct FuzzReaderTests {
    static let seconds = 4.0

    @Test("Mutated profiles: no crash, no hang, every refusal names the file")
    func profiles() throws {
        let directory = try ProfileCatalog.directory()
        let sources = try ProfileCatalog.names().map { (name: $0, text: Array(try String(contentsOfFile: directory + "/" + $0 + ".yaml", encoding: .utf8).utf8)) }
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let deadline = Date().addingTimeInterval(Self.seconds)
        var runs = 0, refused = 0
        while Date() < deadline {
            let source = sources.randomElement(using: &random)!
            let text = String(decoding: mutate(source.text, &random), as: UTF8.self)
            // Relative seccomp paths resolve beside the file: keep it in the bundled directory.
            let file = directory + "/fuzz-\(source.name).yaml"
            let outcome = ProfileReader.read(text: text, file: file)
            runs += 1
            if outcome.profile == nil {
                refused += 1
                #expect(!outcome.errors.isEmpty, "seed \(seed): refused without a reason")
                #expect(outcome.errors.allSatisfy { $0.description.hasPrefix(file) }, "seed \(seed): \(outcome.errors.prefix(2))")
            }
        }
        print("profiles: \(runs) mutations in \(Self.seconds) s, \(refused) refused (seed \(seed))")
        #expect(runs > 100)
    }

    @Test("Mutated escape attempts: no crash, no hang, every refusal names the file")
    func attempts() throws {
        let suite = try EscapeBattery.suiteDirectory()
        let names = try FileManager.default.contentsOfDirectory(atPath: suite).filter { $0.hasSuffix(".yaml") }
        let directory = NSTemporaryDirectory() + "offswitch-fuzz-attempts-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let deadline = Date().addingTimeInterval(Self.seconds)
        var runs = 0
        while Date() < deadline {
            let name = names.randomElement(using: &random)!
            let original = try Data(contentsOf: URL(fileURLWithPath: suite + "/" + name))
            let path = directory + "/" + name
            try Data(mutate(Array(original), &random)).write(to: URL(fileURLWithPath: path))
            do {
                _ = try EscapeAttempt.load(path)
            } catch {
                #expect(error.description.contains(path), "seed \(seed): \(error.description.prefix(200))")
            }
            runs += 1
        }
        print("escape attempts: \(runs) mutations (seed \(seed))")
        #expect(runs > 100)
    }
}
