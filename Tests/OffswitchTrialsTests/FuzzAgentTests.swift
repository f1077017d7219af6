import Foundation
import Glibc
import OffswitchCore
import OffswitchTrials
import OffswitchTestSupport
import Testing


@Suite("Fuzzing the readers: agent scripts")
struct FuzzAgentTests {
    @Test("Mutated agent scripts: no crash, no hang, every refusal names the file")
    func agents() throws {
        let directory = try ScenarioCatalog.load("palisade-math").directory + "/agents"
        let sources = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".yaml") }
            .map { Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + $0))) }
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let tokens: [[UInt8]] = ["- bash: ", "- submit: ", "steps:", "expect: ", "{", "[", "&a ", "*a", "\u{0}", "\"", "\n  - "].map { Array($0.utf8) } + [[0xff]]
        let deadline = Date().addingTimeInterval(4)
        var runs = 0, refused = 0
        while Date() < deadline {
            let bytes = mutate(sources.randomElement(using: &random)!, tokens: tokens, &random)
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
