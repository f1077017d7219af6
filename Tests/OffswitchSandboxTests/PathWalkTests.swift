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
        // The caller: this process, as if its leader made the call.
        let walk = PathWalk(root: try RecorderRoot(initPID: getpid()), group: { getpid() }, thread: getpid())
        func walked(_ path: String, followLast: Bool, cwd: String? = nil) -> PathWalk.Outcome {
            walk.walk(Array(path.utf8), followLast: followLast, cwd: cwd)
        }
        // No link on the way: the name is the path, a new name included, a climb through directories too.
        #expect(walked(base + "/home/user/file", followLast: true) == .byName)
        #expect(walked(base + "/home/user/new", followLast: true) == .byName)
        #expect(walked(base + "/home/user/d/../file", followLast: true) == .byName)
        #expect(walked(base + "/links/file", followLast: false) == .byName)  // the link itself (unlink)
        // Through links.
        #expect(walked(base + "/links/home/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walked(base + "/links/home/file", followLast: false) == .resolved(base + "/home/user/file"))
        #expect(walked(base + "/links/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walked(base + "/links/rel/file", followLast: true) == .resolved(base + "/home/user/file"))
        // `..` after a link climbs from where the link led: by name this would be base/links/file.
        #expect(walked(base + "/links/up/../home/user/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walked(base + "/links/home/../../other/x", followLast: false) == .resolved(base + "/other/x"))
        // The caller's own /proc entries: its root, and its directory as recorded.
        #expect(walked("/proc/self/root" + base + "/home/user/file", followLast: true) == .resolved(base + "/home/user/file"))
        #expect(walked("/proc/self/cwd/file", followLast: true, cwd: base + "/home/user") == .resolved(base + "/home/user/file"))
        #expect(walked("/proc/thread-self/cwd/d/../file", followLast: false, cwd: base + "/links/home") == .resolved(base + "/home/user/file"))
        // Nothing certain: a loop, a missing directory on the way, a file taken for a directory.
        #expect(walked(base + "/links/loop/x", followLast: true) == .unknown)
        #expect(walked(base + "/links/missing/../home/user/file", followLast: true) == .unknown)
        #expect(walked(base + "/links/file/x", followLast: true) == .unknown)
        // Past the walk's budget: a link whose target climbs in and out 600 times.
        let long = String(repeating: "d/../", count: 600) + "file"
        try FileManager.default.createSymbolicLink(atPath: base + "/home/user/long", withDestinationPath: long)
        #expect(walked(base + "/home/user/long", followLast: true) == .cut)
        #expect(walked(base + "/home/user/long", followLast: false) == .byName)
        // A link at the bottom of 300 directories: each step opens its prefix from the root, so
        // the lookups are bounded rather than the steps alone (quadratic in the depth).
        let deep = base + String(repeating: "/a", count: 300)
        try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: deep + "/l", withDestinationPath: base + "/home/user")
        #expect(walked(deep + "/l/file", followLast: true) == .cut)
        #expect(walked(base + String(repeating: "/a", count: 20) + String(repeating: "/..", count: 20) + "/links/home/file", followLast: true) == .resolved(base + "/home/user/file"))
        // A name that is not UTF-8 is walked as the kernel takes it, not as a decoder would
        // replace it (U+FFFD, whose own link leads elsewhere).
        let odd = Array((base + "/links/").utf8) + [0xff]
        #expect(symlink(base + "/other", String(decoding: odd, as: UTF8.self)) == 0)
        #expect((odd + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { symlink(base + "/home/user", $0.baseAddress!) } } == 0)
        #expect(walk.walk(odd + Array("/file".utf8), followLast: true) == .resolved(base + "/home/user/file"))
    }

    @Test("The caller's own /proc directory once it has exited: through its cwd, root or a descriptor's directory is not known; its descriptor itself is a link not read")
    func exitedCaller() throws {
        let walk = PathWalk(root: try RecorderRoot(initPID: getpid()), group: { 999_999 }, thread: 999_999)
        #expect(walk.walk(Array("/proc/self/fd/3/next_question".utf8), followLast: true) == .cut)
        #expect(walk.walk(Array("/proc/self/cwd/next_question".utf8), followLast: true) == .cut)
        #expect(walk.walk(Array("/proc/thread-self/cwd/next_question".utf8), followLast: false) == .cut)
        #expect(walk.walk(Array("/proc/self/fd/2".utf8), followLast: true) == .unknown)
        // Recorded at the call: the directory it named then.
        #expect(walk.walk(Array("/proc/self/cwd/tmp".utf8), followLast: true, cwd: "/") == .resolved("/tmp"))
        #expect(walk.walk(Array("/proc/self/root/tmp".utf8), followLast: true) == .resolved("/tmp"))
    }
}
