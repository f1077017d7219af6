import Foundation
import Glibc
import OffswitchContainment
import OffswitchCore
import OffswitchYAML
import OffswitchSandbox
import OffswitchTestSupport
import Testing


/// Tokens that YAML and the readers care about: anchors, tags, deep nesting, huge numbers, NUL,
/// invalid UTF-8.
let readerTokens: [[UInt8]] = ["- ", ": ", "{", "}", "[", "]", "&a ", "*a", "!!binary ", "\n  ", "\t", "\"", "'", "#", "null", "~",
                               "99999999999999999999", "-1", "0x", "1e309", "\u{0}", "[[[[[[[[[[[[[[[[", "{a: {b: {c: {d: "]
    .map { Array($0.utf8) } + [[0xff, 0xfe], [0xc3]]

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
            let text = String(decoding: mutate(source.text, tokens: readerTokens, &random), as: UTF8.self)
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
            try Data(mutate(Array(original), tokens: readerTokens, &random)).write(to: URL(fileURLWithPath: path))
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
