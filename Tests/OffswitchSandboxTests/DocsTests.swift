import Foundation
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Documented formats")
struct DocsTests {
    static func docsDirectory() -> String {
        var url = URL(fileURLWithPath: productsDirectory)
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("docs/cli.md").path) {
                return url.appendingPathComponent("docs").path
            }
            url.deleteLastPathComponent()
        }
        return "docs"
    }

    @Test("The --json example in docs/cli.md has exactly the fields the CLI prints", needsRoot)
    func jsonExample() throws {
        let text = try String(contentsOfFile: Self.docsDirectory() + "/cli.md", encoding: .utf8)
        let block = try #require(text.components(separatedBy: "```json\n").dropFirst().first?.components(separatedBy: "\n```").first)
        let documented = try #require(try JSONSerialization.jsonObject(with: Data(block.utf8)) as? [String: Any])
        let run = try runCLI(["sandbox", "run", "--json", "--", "bash", "-c", "echo before; kill -s TERM 1; sleep 5; echo survived"])
        let actual = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        #expect(Set(documented.keys) == Set(actual.keys))
        #expect(Set((documented["shutdown"] as? [String: Any] ?? [:]).keys) == Set((actual["shutdown"] as? [String: Any] ?? [:]).keys))
        #expect(Set((documented["truncated"] as? [String: Any] ?? [:]).keys) == Set((actual["truncated"] as? [String: Any] ?? [:]).keys))
        #expect(documented["exit_code"] as? Int == actual["exit_code"] as? Int)
        #expect(documented["stdout"] as? String == actual["stdout"] as? String)
    }

    @Test("The full example in docs/profiles.md is a valid profile, and its docker fields match docker.yaml")
    func profileExample() throws {
        let text = try String(contentsOfFile: Self.docsDirectory() + "/profiles.md", encoding: .utf8)
        let block = try #require(text.components(separatedBy: "```yaml\n").dropFirst().first?.components(separatedBy: "\n```").first)
        let outcome = ProfileReader.read(text: block, file: try ProfileCatalog.directory() + "/example.yaml")
        let example = try #require(outcome.profile, "\(outcome.errors)")
        let docker = try ProfileCatalog.load("docker")
        #expect(example.record.contains(RecordedSyscall(name: "kill", args: [SeccompPolicy.Argument(index: 0, value: 1, op: "SCMP_CMP_EQ")])))
        #expect(example.commandTimeoutSeconds == 600)
        #expect(example.capabilities == docker.capabilities && example.limits == docker.limits && example.seccomp == docker.seccomp)
        #expect(example.description == docker.description && example.user == docker.user && example.rootfs == docker.rootfs)
        #expect(example.noNewPrivileges == docker.noNewPrivileges)
    }
}
