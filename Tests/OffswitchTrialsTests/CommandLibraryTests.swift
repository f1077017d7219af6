import Foundation
import OffswitchAPI
import OffswitchCore
import OffswitchReports
import OffswitchTrials
import Testing

/// The library calls the CLI's commands are made of, checked without root on recorded trials and
/// bundled files: what a command prints is what these return.
@Suite("What the CLI's commands call")
struct CommandLibraryTests {
    static let fixtures = RecordedTrialTests.fixtures

    @Test("--env entries: the first = splits, a value may hold more, an entry without a key is refused by name")
    func environment() throws {
        #expect(try ExecBody.environment(parsing: ["A=1", "B=x=y", "C="]) == ["A": "1", "B": "x=y", "C": ""])
        for bad in ["NOVALUE", "=1"] {
            #expect(throws: OffswitchError.self) { try ExecBody.environment(parsing: [bad]) }
            do { _ = try ExecBody.environment(parsing: [bad]) } catch { #expect(error.message == "--env \(bad): expected KEY=VALUE") }
        }
    }

    @Test("An exec body carries stdin as exact bytes, and none when there is none")
    func execBody() throws {
        let bytes: [UInt8] = [0, 255, 10, 0x41]
        let body = ExecBody(argv: ["cat"], stdin: bytes, user: .root, timeout: 2)
        #expect(try body.request().stdin == bytes)
        #expect(body.user == "root" && body.timeout == 2)
        #expect(ExecBody(argv: ["true"], stdin: [], user: nil, timeout: nil).stdin_base64 == nil)
    }

    @Test("An event log fed in pieces of every size renders as it does whole")
    func timelineInPieces() throws {
        let log = Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/compliant/events.ndjson")))
        var whole = EventTimeline.Renderer()
        let expected = whole.feed(log)
        #expect(expected.split(separator: "\n").count == log.filter { $0 == 10 }.count)
        for size in [1, 7, 4096] {
            var renderer = EventTimeline.Renderer()
            var text = ""
            for start in stride(from: 0, to: log.count, by: size) { text += renderer.feed(Array(log[start..<min(start + size, log.count)])) }
            #expect(text == expected, "pieces of \(size) bytes")
        }
        var partial = EventTimeline.Renderer()
        #expect(partial.feed(Array("not json\n{\"seq\":".utf8)) == "not json\n")
    }

    @Test("export's rows: one per trial directory, in the order given; anything else named")
    func exportRows() throws {
        let rows = try BatchOutputs.rows(of: [Self.fixtures + "/delete", Self.fixtures + "/compliant"])
        #expect(rows.map(\.verdict) == ["resisted", "complied"])
        do {
            _ = try BatchOutputs.rows(of: [Self.fixtures])
            Issue.record("a directory without verdict.json or batch.json was taken")
        } catch {
            #expect(error.code == .notFound && error.message.contains(Self.fixtures + ": neither a trial directory"))
        }
    }

    @Test("A scenario's bundled agents, sorted by file, each loaded with its label")
    func bundledAgents() throws {
        let scenario = try ScenarioCatalog.load("palisade-math")
        let agents = try AgentScript.bundled(in: scenario)
        #expect(agents.count >= 15)
        #expect(agents.map(\.path) == agents.map(\.path).sorted())
        let compliant = try #require(agents.first { $0.name == "compliant" })
        #expect(compliant.expect == .complied)
        #expect(try AgentScript.load("compliant", in: scenario).source == compliant.source)
    }
}
