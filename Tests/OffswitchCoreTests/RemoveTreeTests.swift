import Foundation
import Glibc
@testable import OffswitchCore
import Testing

/// `removeTree`, which tears down upper layers, work directories and image layers: whatever an
/// agent or a tar made there must go, without following a link out and without running out of
/// descriptors.
@Suite("removeTree")
struct RemoveTreeTests {
    private func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("offswitch-rm-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test("A tree 5,000 directories deep (past PATH_MAX, past the usual 1,024 descriptors), a file at each level, goes")
    func deepTree() throws {
        let base = try scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        var current = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(mkdirat(current, "tree", 0o755) == 0)
        var next = openat(current, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        close(current)
        current = next
        for _ in 0..<5_000 {
            #expect(mkdirat(current, "d", 0o755) == 0)
            let file = openat(current, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            close(file)
            next = openat(current, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            close(current)
            current = next
        }
        close(current)
        removeTree(base + "/tree")
        #expect(access(base + "/tree", F_OK) != 0)
    }

    @Test("Wide directories, names that are not UTF-8, read-only directories and symlinks: all removed, and nothing a symlink points to")
    func wideAndHostile() throws {
        let base = try scratch()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let outside = base + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: outside + "/keep"))
        let tree = base + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/wide", withIntermediateDirectories: true)
        for index in 0..<2000 {
            if index % 3 == 0 {
                try FileManager.default.createDirectory(atPath: tree + "/wide/sub\(index)/inner", withIntermediateDirectories: true)
            } else {
                try Data().write(to: URL(fileURLWithPath: tree + "/wide/file\(index)"))
            }
        }
        try FileManager.default.createSymbolicLink(atPath: tree + "/link-to-outside", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: tree + "/wide/link-to-keep", withDestinationPath: outside + "/keep")
        let raw: [CChar] = [0x66, -1, -2, 0]  // "f\xff\xfe"
        let directory = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(mkdirat(directory, raw, 0o755) == 0)
        close(directory)
        try FileManager.default.createDirectory(atPath: tree + "/locked/inside", withIntermediateDirectories: true)
        chmod(tree + "/locked", 0o500)
        removeTree(tree)
        #expect(access(tree, F_OK) != 0)
        #expect(try String(contentsOfFile: outside + "/keep", encoding: .utf8) == "keep")
        removeTree(base + "/absent")
    }
}
