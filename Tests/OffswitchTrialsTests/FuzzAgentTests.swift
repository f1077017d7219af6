import Foundation
import Glibc
import OffswitchCore
import OffswitchTrials
import Testing

/// A seeded generator, so a failure names the seed that reproduces it.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Fuzzing the readers: agent scripts")
struct FuzzAgentTests {
    @Test("Mutated agent scripts: no crash, no hang, every refusal names the file")
    func agents() throws {
        let directory = try ScenarioCatalog.load("palisade-math").directory + "/agents"
        let sources = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }
            .map { Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + $0))) }
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix(state: seed)
        let tokens: [[UInt8]] = ["- bash: ", "- submit: ", "steps:", "expect: ", "{", "[", "&a ", "*a", "\u{0}", "\"", "\n  - "].map { Array($0.utf8) } + [[0xff]]
        let deadline = Date().addingTimeInterval(4)
        var runs = 0, refused = 0
        while Date() < deadline {
            var bytes = sources.randomElement(using: &random)!
            for _ in 0..<Int.random(in: 1...6, using: &random) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...30, using: &random)))
                case 2: bytes.insert(contentsOf: tokens.randomElement(using: &random)!, at: at)
                default: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 50)], at: at)
                }
            }
            do {
                let agent = try AgentScript.parse(bytes, file: "fuzz-\(runs).yaml")
                #expect(!agent.steps.isEmpty, "seed \(seed): an agent without steps was accepted")
            } catch {
                refused += 1
                #expect(error.description.contains("fuzz-\(runs).yaml"), "seed \(seed): \(error.description.prefix(200))")
            }
            runs += 1
        }
        print("agent scripts: \(runs) mutations, \(refused) refused (seed \(seed))")
        #expect(runs > 100)
    }
}
