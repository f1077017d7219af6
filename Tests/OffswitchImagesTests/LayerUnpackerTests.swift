import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchTestSupport
import Testing

@Suite("Unpacking a layer")
struct LayerUnpackerTests {
    /// cap_net_bind_service+ep as the kernel stores it (VFS_CAP_REVISION_2).
    static let capability: [UInt8] = [0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    @Test(
        "A normal layer: files, directories, setuid, owners, times, a symlink kept unresolved, a hard link, file capabilities",
        .enabled(if: isRoot, "needs root: chowns to other users and sets security.capability"))
    func normalLayer() throws {
        let scratch = try Scratch()
        let longName = "deep/" + String(repeating: "long-directory-name/", count: 8) + "file"
        let gnuName = "gnu/" + String(repeating: "another-long-name/", count: 7) + "file"
        var tar = TarBuilder()
        tar.directory("./", mode: 0o751, uid: 0, gid: 0, mtime: 1_500_000_000)
        tar.directory("etc/", mode: 0o755, uid: 0, gid: 0, mtime: 1_600_000_000)
        tar.file("etc/motd", "hello\n", uid: 0, gid: 0, mtime: 1_650_000_000)
        tar.file("usr/bin/su", "#!/bin/false\n", mode: 0o4755, uid: 0, gid: 0)
        tar.file("home/user/notes", "mine", mode: 0o600, uid: 1234, gid: 5678)
        tar.file("tmp-like", "sticky", mode: 0o1777, uid: 0, gid: 0)
        tar.file("big-ids", "base-256", uid: 3_000_000, gid: 3_000_001)
        tar.symlink("etc/passwd-link", to: "/etc/passwd", uid: 1234, gid: 5678)
        tar.hardLink("usr/bin/su-again", to: "./usr/bin/su")
        tar.pax([
            ("SCHILY.xattr.security.capability", Self.capability), ("SCHILY.xattr.user.note", Array("kept".utf8)),
            ("mtime", Array("1700000000.25".utf8)), ("uid", Array("42".utf8)), ("uname", Array("ignored".utf8)),
        ])
        tar.file("usr/bin/ping", "ping", mode: 0o755, uid: 0, gid: 0)
        tar.pax([("path", Array(longName.utf8))])
        tar.file("placeholder", "pax name")
        tar.gnuLong(gnuName)
        tar.file("placeholder", "gnu name")
        tar.header("split-name", type: "0", size: 5, prefix: "ustar/prefix")
        tar.data(Array("split".utf8))
        // A directory entry over an existing directory updates it.
        tar.directory("etc", mode: 0o700, uid: 0, gid: 0, mtime: 1_600_000_001)
        tar.end()
        let file = try scratch.write("layer.tar", tar.bytes)
        let layer = scratch.path + "/layer"
        let result = try unpack(file, into: layer)

        #expect(result.entries == 14)
        #expect(result.bytes == Int64(tar.bytes.count))
        #expect(result.diffID == (try sha256sum(file)))
        #expect(result.digest == result.diffID)

        let top = try #require(lstatInfo(layer))
        #expect(top.st_mode & 0o7777 == 0o751)
        #expect(top.st_mtim.tv_sec == 1_500_000_000)
        let etc = try #require(lstatInfo(layer + "/etc"))
        #expect(etc.st_mode & 0o7777 == 0o700)
        // Directory times are set last, after the entries written into them.
        #expect(etc.st_mtim.tv_sec == 1_600_000_001)
        let motd = try #require(lstatInfo(layer + "/etc/motd"))
        #expect(readSmallFile(layer + "/etc/motd") == "hello\n")
        #expect(motd.st_mode & 0o7777 == 0o644 && motd.st_mtim.tv_sec == 1_650_000_000)
        let su = try #require(lstatInfo(layer + "/usr/bin/su"))
        #expect(su.st_mode & 0o7777 == 0o4755)
        #expect(su.st_uid == 0 && su.st_nlink == 2)
        #expect(lstatInfo(layer + "/usr/bin/su-again")?.st_ino == su.st_ino)
        for missing in ["/usr", "/usr/bin", "/home", "/home/user"] {
            let directory = try #require(lstatInfo(layer + missing))
            #expect(directory.st_mode & 0o7777 == 0o755 && directory.st_uid == 0, "\(missing), made for its entries")
        }
        let notes = try #require(lstatInfo(layer + "/home/user/notes"))
        #expect(notes.st_uid == 1234 && notes.st_gid == 5678 && notes.st_mode & 0o7777 == 0o600)
        #expect((lstatInfo(layer + "/tmp-like")?.st_mode ?? 0) & 0o7777 == 0o1777)
        let big = try #require(lstatInfo(layer + "/big-ids"))
        #expect(big.st_uid == 3_000_000 && big.st_gid == 3_000_001)
        let link = try #require(lstatInfo(layer + "/etc/passwd-link"))
        #expect(link.st_mode & S_IFMT == S_IFLNK && link.st_uid == 1234 && link.st_gid == 5678)
        #expect(try readLink(layer + "/etc/passwd-link") == "/etc/passwd")
        let ping = try #require(lstatInfo(layer + "/usr/bin/ping"))
        #expect(ping.st_uid == 42 && ping.st_mtim.tv_sec == 1_700_000_000 && ping.st_mtim.tv_nsec == 250_000_000)
        #expect(xattr(layer + "/usr/bin/ping", "security.capability") == Self.capability)
        #expect(xattr(layer + "/usr/bin/ping", "user.note") == Array("kept".utf8))
        #expect(readSmallFile(layer + "/" + longName) == "pax name")
        #expect(readSmallFile(layer + "/" + gnuName) == "gnu name")
        #expect(readSmallFile(layer + "/ustar/prefix/split-name") == "split")
        #expect(lstatInfo(layer + "/placeholder") == nil)
    }

    /// A tree with a file bigger than every buffer, so reads cross their edges.
    private static func sampleTar() -> [UInt8] {
        var random: UInt64 = 0x5eed
        let big = (0..<(3 << 20) + 77).map { _ -> UInt8 in
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: random >> 33)
        }
        var tar = TarBuilder()
        tar.directory("./")
        tar.directory("bin/")
        tar.directory("data/")
        tar.file("bin/tool", "#!/bin/sh\n", mode: 0o755)
        tar.file("data/big", big)
        tar.symlink("data/link", to: "big")
        tar.hardLink("data/again", to: "data/big")
        tar.file("data/empty", [])
        tar.end()
        // Zero padding after the end blocks belongs to the stream and to its diffID.
        return tar.bytes + [UInt8](repeating: 0, count: 10 * 1024)
    }

    @Test("gzip, multi-member gzip and zstd give the plain tar's tree, its diffID, and the blob's digest")
    func compressions() throws {
        let scratch = try Scratch()
        let tar = try scratch.write("layer.tar", Self.sampleTar())
        let count = Self.sampleTar().count
        try shell("gzip -n -c \(tar) > \(scratch.path)/layer.tar.gz")
        try shell("head -c 700001 \(tar) | gzip -n -c > \(scratch.path)/multi.gz")
        try shell("tail -c +700002 \(tar) | gzip -n -1 -c >> \(scratch.path)/multi.gz")
        try shell("zstd -q -c \(tar) > \(scratch.path)/layer.tar.zst")

        let plain = try unpack(tar, into: scratch.path + "/plain")
        let expected = snapshot(scratch.path + "/plain")
        let diffID = try sha256sum(tar)
        #expect(plain.diffID == diffID)
        #expect(plain.digest == diffID)
        #expect(plain.bytes == Int64(count) && plain.entries == 8)
        #expect(expected.count == 8)
        for (blob, compression) in [("layer.tar.gz", LayerCompression.gzip), ("multi.gz", .gzip), ("layer.tar.zst", .zstd)] {
            let path = scratch.path + "/" + blob
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            #expect(try LayerCompression.sniff(fd) == compression, "\(blob)")
            #expect(lseek(fd, 0, SEEK_CUR) == 0, "sniffing leaves the offset where it was")
            let result = try LayerUnpacker.unpack(from: fd, compression: compression, into: try scratch.directory(blob + ".d"), label: "image t layer \(blob)")
            #expect(result.diffID == diffID, "\(blob)")
            #expect(result.digest == (try sha256sum(path)), "\(blob)")
            #expect(result.blobBytes == Int64(lstatInfo(path)?.st_size ?? -1), "\(blob)")
            #expect(result.bytes == Int64(count), "\(blob)")
            #expect(snapshot(scratch.path + "/" + blob + ".d") == expected, "\(blob)")
        }
    }

    @Test("The unpacker reads from the descriptor's offset, and the digest covers what it read")
    func readsFromOffset() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file("a", "a")
        tar.end()
        let file = try scratch.write("blob", Array("junk".utf8) + tar.bytes)
        _ = try scratch.write("plain", tar.bytes)
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        #expect(lseek(fd, 4, SEEK_SET) == 4)
        let result = try LayerUnpacker.unpack(from: fd, compression: .none, into: try scratch.directory("layer"), label: "image t layer 1")
        #expect(result.digest == (try sha256sum(scratch.path + "/plain")))
        #expect(readSmallFile(scratch.path + "/layer/a") == "a")
    }

    @Test("Archives from GNU tar, gnu and pax formats, unpack to the tree they were made from")
    func gnuTar() throws {
        let scratch = try Scratch()
        let source = try scratch.directory("source")
        let long = String(repeating: "name-longer-than-a-ustar-field-", count: 5)
        try shell(
            """
            cd \(source) && mkdir -p sub/empty \(long) && printf one > sub/one && printf two > \(long)/\(long) \
            && chmod 640 sub/one && ln -s ../sub/one \(long)/link && ln sub/one sub/hard && mkfifo sub/pipe \
            && find . -depth -exec touch -h -d @1700000000 {} +
            """)
        for format in ["gnu", "pax"] {
            let archive = scratch.path + "/\(format).tar"
            try shell("tar --format=\(format) --numeric-owner -C \(source) -cf \(archive) .")
            let result = try unpack(archive, into: scratch.path + "/\(format)")
            #expect(snapshot(scratch.path + "/\(format)") == snapshot(source), "\(format)")
            #expect(result.diffID == (try sha256sum(archive)))
        }
    }

    @Test("A later entry replaces an earlier one; a non-empty directory is not replaced")
    func replacement() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file("a", "one")
        tar.file("a", "two")
        tar.directory("e/")
        tar.symlink("e", to: "elsewhere")
        tar.symlink("s", to: "x")
        tar.file("s", "file now")
        tar.file("f", "file first")
        tar.directory("f/")
        tar.file("f/inside", "in")
        tar.end()
        let layer = scratch.path + "/layer"
        _ = try unpack(try scratch.write("layer.tar", tar.bytes), into: layer)
        #expect(readSmallFile(layer + "/a") == "two")
        #expect(try readLink(layer + "/e") == "elsewhere")
        #expect(readSmallFile(layer + "/s") == "file now")
        #expect(lstatInfo(layer + "/x") == nil)
        #expect(readSmallFile(layer + "/f/inside") == "in")

        var refused = TarBuilder()
        refused.file("d/x", "x")
        refused.file("d", "not over a full directory")
        refused.end()
        let again = try Scratch()
        let error = try #require(try refusal(refused.bytes, in: again))
        #expect(error.message == "image test:1 layer 1: entry \"d\": it would replace a directory that is not empty")
        #expect(readSmallFile(again.path + "/layer/d/x") == "x")
    }

    @Test("The directory must be empty")
    func nonEmptyDirectory() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file("a", "a")
        tar.end()
        let file = try scratch.write("layer.tar", tar.bytes)
        _ = try scratch.directory("layer")
        _ = try scratch.write("layer/old", [])
        let error = try #require(throws: OffswitchError.self) { _ = try unpack(file, into: scratch.path + "/layer") }
        #expect(error.message == "image test:1 layer 1: unpack into \(scratch.path)/layer: the directory is not empty")
    }
}
