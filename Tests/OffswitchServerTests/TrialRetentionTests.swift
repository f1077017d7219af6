import Foundation
import Glibc
import OffswitchCore
@testable import OffswitchServer
import OffswitchTestSupport
import Testing

/// `--keep-trials` and `--trial-retention` (docs/daemon.md): which finished trial directories go,
/// root-free on a directory fixture; `TrialAPITests` holds a real daemon to them.
@Suite("Trial directories are retained by a bound")
struct TrialRetentionTests {
    static let day = 86_400

    @Test("--trial-retention takes a count and a unit, or forever; anything else is refused naming the option")
    func ages() throws {
        #expect(try TrialRetention.parseAge("90s") == 90)
        #expect(try TrialRetention.parseAge("30m") == 1800)
        #expect(try TrialRetention.parseAge("12h") == 43_200)
        #expect(try TrialRetention.parseAge("7d") == 7 * Self.day)
        #expect(try TrialRetention.parseAge("forever") == nil)
        for bad in ["", "7", "d", "0d", "-1h", "7w", "1.5h", "7 d", "99999999999999999999d"] {
            #expect(throws: OffswitchError.self, "\(bad)") { try TrialRetention.parseAge(bad) }
            do { _ = try TrialRetention.parseAge(bad) } catch { #expect(error.message.contains("--trial-retention \(bad)")) }
        }
    }

    @Test("Older than the age go first, then the oldest beyond the count; ties by id")
    func selection() {
        let now = 100 * Self.day * 1_000_000_000
        func trial(_ id: String, daysAgo: Double) -> TrialRetention.Finished {
            .init(id: id, finishedNanoseconds: now - Int(daysAgo * Double(Self.day) * 1e9))
        }
        let trials = [trial("e", daysAgo: 0.1), trial("a", daysAgo: 9), trial("c", daysAgo: 2), trial("b", daysAgo: 2), trial("d", daysAgo: 1)]
        let picked = TrialRetention(keep: 2, maxAgeSeconds: 7 * Self.day).select(trials, nowNanoseconds: now)
        #expect(picked.map { "\($0.0.id) \($0.1.rawValue)" } == ["a age", "b count", "c count"])
        #expect(TrialRetention(keep: 10, maxAgeSeconds: nil).select(trials, nowNanoseconds: now).isEmpty)
        #expect(TrialRetention(keep: 1, maxAgeSeconds: nil).select(trials, nowNanoseconds: now).map(\.0.id) == ["a", "b", "c", "d"])
        #expect(TrialRetention.forever.select(trials, nowNanoseconds: now).isEmpty)
    }

    @Test("A sweep removes finished trial directories past the bounds, never a running trial's, nothing that is not a trial directory")
    func sweep() throws {
        let root = "/tmp/offswitch-retention-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let now = Date()
        func make(_ id: String, daysAgo: Double, verdict: Bool = true) throws {
            let directory = root + "/" + id
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data("{}".utf8).write(to: URL(fileURLWithPath: directory + "/events.ndjson"))
            let stamp = now.addingTimeInterval(-daysAgo * Double(Self.day))
            if verdict {
                try Data("{}".utf8).write(to: URL(fileURLWithPath: directory + "/verdict.json"))
                try FileManager.default.setAttributes([.modificationDate: stamp], ofItemAtPath: directory + "/verdict.json")
                // The directory's own time says nothing once verdict.json is there.
                try FileManager.default.setAttributes([.modificationDate: now], ofItemAtPath: directory)
            } else {
                try FileManager.default.setAttributes([.modificationDate: stamp], ofItemAtPath: directory)
            }
        }
        try make("00000000000a", daysAgo: 30)                 // finished long ago: age
        try make("00000000000b", daysAgo: 40, verdict: false) // left unfinished by a crashed daemon, old: age
        try make("00000000000c", daysAgo: 3)                  // beyond the count
        try make("00000000000d", daysAgo: 2)
        try make("00000000000e", daysAgo: 1)
        try make("0000000000ff", daysAgo: 50, verdict: false) // running, the oldest of all
        try make("not-a-trial", daysAgo: 60)
        try Data().write(to: URL(fileURLWithPath: root + "/0000000000aa"))  // a file with a trial's name
        try FileManager.default.createSymbolicLink(atPath: root + "/0000000000bb", withDestinationPath: root + "/00000000000e")

        let directories = TrialDirectories(directory: root, retention: TrialRetention(keep: 2, maxAgeSeconds: 7 * Self.day))
        directories.started("0000000000ff")
        let removed = directories.sweep()
        #expect(removed.map { "\($0.id) \($0.reason.rawValue)" } == ["00000000000b age", "00000000000a age", "00000000000c count"])
        #expect(Set(listDirectory(root)) == ["00000000000d", "00000000000e", "0000000000ff", "not-a-trial", "0000000000aa", "0000000000bb"])
        #expect(directories.removedCount(.age) == 2 && directories.removedCount(.count) == 1)
        #expect(directories.sweep().isEmpty, "a second sweep finds nothing more")

        // Once it has ended, the running trial is judged by its time like the others: 50 days, so age.
        directories.ended("0000000000ff")
        #expect(directories.sweep().map(\.id) == ["0000000000ff"])
        #expect(FileManager.default.fileExists(atPath: root + "/00000000000e/verdict.json"), "the symlink's target stays")
    }
}
