import Foundation
import Glibc
@testable import OffswitchEvidence
import Testing

/// The recorder's walk of a path a call named, without root: this process's own root stands for
/// a sandbox's, and a tree of directories and symlinks under a temporary directory for its files.
@Suite("Recorder: the walk of a call's path")
struct PathWalkTests {
    /// base/home/user/{file, d/}, base/other/, base/links/{home -> base/home/user, up -> base/other,
    /// loop -> loop, file -> base/home/user/file, rel -> ../home/user}.
    static func tree() throws -> String {
        let base = NSTemporaryDirectory() + "offswitch-walk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let files = FileManager.default
        try files.createDirectory(atPath: base + "/home/user/d", withIntermediateDirectories: true)
        try files.createDirectory(atPath: base + "/other", withIntermediateDirectories: true)
        try files.createDirectory(atPath: base + "/links", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: base + "/home/user/file"))
        try files.createSymbolicLink(atPath: base + "/links/home", withDestinationPath: base + "/home/user")
        try files.createSymbolicLink(atPath: base + "/links/up", withDestinationPath: base + "/other")
        try files.createSymbolicLink(atPath: base + "/links/loop", withDestinationPath: "loop")
        try files.createSymbolicLink(atPath: base + "/links/file", withDestinationPath: base + "/home/user/file")
        try files.createSymbolicLink(atPath: base + "/links/rel", withDestinationPath: "../home/user")
        return base
    }

    @Test("Paths without a link are walked by name; links, climbs from a link's target and /proc/self are walked as the kernel walks them; what cannot be walked is unknown")
    func walks() throws {
        let base = try Self.tree()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let walk = PathWalk(root: try RecorderRoot(initPID: getpid()), pid: getpid())
        // No link on the way: the name is the path, a new name included, a climb through directories too.
        #expect(walk.walk(base + "/home/user/file", followLast: true) == .byName)
        #expect(walk.walk(base + "/home/user/new", followLast: true) == .byName)
        #expect(walk.walk(base + "/home/user/d/../file", followLast: true) == .byName)
        #expect(walk.walk(base + "/links/file", followLast: false) == .byName)  // the link itself (unlink)
        // Through links.
        #expect(walk.walk(base + "/links/home/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walk.walk(base + "/links/home/file", followLast: false) == .resolved(base + "/home/user/file"))
        #expect(walk.walk(base + "/links/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walk.walk(base + "/links/rel/file", followLast: true) == .resolved(base + "/home/user/file"))
        // `..` after a link climbs from where the link led: by name this would be base/links/file.
        #expect(walk.walk(base + "/links/up/../home/user/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walk.walk(base + "/links/home/../../other/x", followLast: false) == .resolved(base + "/other/x"))
        // The caller's own /proc entries: its root, and its directory as recorded.
        #expect(walk.walk("/proc/self/root" + base + "/home/user/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walk.walk("/proc/self/cwd/file", followLast: true, cwd: base + "/home/user") == .resolved(base + "/home/user/file"))
        #expect(walk.walk("/proc/thread-self/cwd/d/../file", followLast: false, cwd: base + "/links/home") == .resolved(base + "/home/user/file"))
        // Nothing certain: a loop, a missing directory on the way, a file taken for a directory.
        #expect(walk.walk(base + "/links/loop/x", followLast: true) == .unknown)
        #expect(walk.walk(base + "/links/missing/../home/user/file", followLast: true) == .unknown)
        #expect(walk.walk(base + "/links/file/x", followLast: true) == .unknown)
        // Past the walk's budget: a link whose target climbs in and out 600 times.
        let long = String(repeating: "d/../", count: 600) + "file"
        try FileManager.default.createSymbolicLink(atPath: base + "/home/user/long", withDestinationPath: long)
        #expect(walk.walk(base + "/home/user/long", followLast: true) == .cut)
        #expect(walk.walk(base + "/home/user/long", followLast: false) == .byName)
    }
}
