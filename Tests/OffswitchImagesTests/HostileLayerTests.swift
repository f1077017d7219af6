import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import OffswitchTestSupport
import Testing

/// Archives written to escape, to exhaust, or to set what only the host may set. Each is refused
/// with the layer's label and the entry's name, and nothing lands outside the layer directory.
@Suite("Hostile layers")
struct HostileLayerTests {
    private static let label = "image test:1 layer 1"

    /// Unpacks `tar` in a fresh scratch directory and returns the refusal's message; checks that
    /// the scratch directory holds nothing but the archive and the layer.
    private func refused(_ tar: TarBuilder, limits: UnpackLimits = .standard, scratch: Scratch? = nil) throws -> String {
        let scratch = try scratch ?? Scratch()
        let error = try #require(try refusal(tar.bytes, in: scratch, limits: limits))
        #expect(Set(listDirectory(scratch.path)).subtracting(["marker"]) == ["layer", "layer.tar"])
        #expect(error.message.hasPrefix(Self.label + ": "))
        return error.message
    }

    @Test("Names that leave the directory, absolute names, empty names and NUL bytes are refused", arguments: [
        ("../x", "a \"..\" component"), ("a/../../x", "a \"..\" component"), ("./../x", "a \"..\" component"),
        ("/tmp/offswitch-images-absolute", "absolute name"), ("", "empty name"),
    ])
    func names(name: String, why: String) throws {
        var tar = TarBuilder()
        tar.file("fine", "fine")
        tar.file(name, "evil")
        tar.end()
        let message = try refused(tar)
        #expect(message == "\(Self.label): entry \"\(name)\": \(why)")
        #expect(lstatInfo("/tmp/offswitch-images-absolute") == nil)
    }

    @Test("A PAX path holding a NUL byte is refused, shown escaped")
    func nulInName() throws {
        var tar = TarBuilder()
        tar.pax([("path", Array("a\u{0}b\u{1b}[2J".utf8))])
        tar.file("placeholder", "x")
        tar.end()
        #expect(try refused(tar) == "\(Self.label): entry \"a\\x00b\\x1b[2J\": the name holds a NUL byte")
    }

    @Test("An entry under a symlink is refused, wherever the symlink points; nothing appears there")
    func throughSymlink() throws {
        for target in ["MARKER", "../marker", "inside"] {
            let scratch = try Scratch()
            let marker = try scratch.directory("marker")
            var tar = TarBuilder()
            tar.directory("inside/")
            tar.symlink("a", to: target == "MARKER" ? marker : target)
            tar.file("a/f", "evil")
            tar.end()
            let message = try refused(tar, scratch: scratch)
            #expect(message == "\(Self.label): entry \"a/f\": its parent \"a\" is a symbolic link, and nothing in a layer is followed")
            #expect(listDirectory(marker).isEmpty)
            #expect(listDirectory(scratch.path + "/layer/inside").isEmpty)
        }
    }

    @Test("Whiteouts and opaque markers under a symlink are refused; the symlink's target is untouched")
    func whiteoutThroughSymlink() throws {
        for (name, why) in [
            ("a/.wh.secret", "its parent \"a\" is a symbolic link, and nothing in a layer is followed"),
            ("a/.wh..wh..opq", "an opaque marker in \"a\", which is not a directory"),
        ] {
            let scratch = try Scratch()
            let marker = try scratch.directory("marker")
            _ = try scratch.write("marker/secret", Array("secret".utf8))
            var tar = TarBuilder()
            tar.symlink("a", to: marker)
            tar.file(name, "")
            tar.end()
            #expect(try refused(tar, scratch: scratch) == "\(Self.label): entry \"\(name)\": \(why)")
            #expect(readSmallFile(marker + "/secret") == "secret")
            #expect(xattr(marker, "trusted.overlay.opaque") == nil)
        }
    }

    @Test("An empty directory replaced by a symlink is not a way out either")
    func directoryThenSymlink() throws {
        let scratch = try Scratch()
        let marker = try scratch.directory("marker")
        var tar = TarBuilder()
        tar.directory("a/")
        tar.symlink("a", to: marker)
        tar.file("a/f", "evil")
        tar.end()
        #expect(try refused(tar, scratch: scratch).contains("entry \"a/f\": its parent \"a\" is a symbolic link"))
        #expect(listDirectory(marker).isEmpty)
    }

    @Test("Hard links through a symlink, to absolute paths, outside, to nothing or to a directory are refused", arguments: [
        ("b", "a/secret", "its link target's parent \"a\" is a symbolic link, and nothing in a layer is followed"),
        ("a/b", "dir/file", "its parent \"a\" is a symbolic link, and nothing in a layer is followed"),
        ("b", "/etc/passwd", "its link target \"/etc/passwd\": absolute name"),
        ("b", "../marker/secret", "its link target \"../marker/secret\": a \"..\" component"),
        ("b", "missing", "its link target \"missing\" does not exist in this layer"),
        ("b", "dir", "its link target \"dir\" is a directory"),
        ("dir/file", "dir/file", "a hard link to itself"),
    ])
    func hardLinks(name: String, target: String, why: String) throws {
        let scratch = try Scratch()
        let marker = try scratch.directory("marker")
        _ = try scratch.write("marker/secret", Array("secret".utf8))
        var tar = TarBuilder()
        tar.file("dir/file", "file")
        tar.symlink("a", to: marker)
        tar.hardLink(name, to: target)
        tar.end()
        #expect(try refused(tar, scratch: scratch) == "\(Self.label): entry \"\(name)\": \(why)")
        #expect(listDirectory(marker) == ["secret"])
        #expect(lstatInfo(marker + "/secret")?.st_nlink == 1)
    }

    @Test("Character and block devices are refused; unknown types too", arguments: [
        ("dev/null", Character("3"), "a character device: device nodes are refused (only whiteouts are made)"),
        ("dev/sda", Character("4"), "a block device: device nodes are refused (only whiteouts are made)"),
        ("sparse", Character("S"), "unsupported entry type 'S'"),
    ])
    func devices(name: String, type: Character, why: String) throws {
        var tar = TarBuilder()
        tar.header(name, type: type)
        tar.end()
        #expect(try refused(tar) == "\(Self.label): entry \"\(name)\": \(why)")
    }

    @Test("A gzip bomb stops at the byte limit, with at most that much written")
    func gzipBomb() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file("zeros", [UInt8](repeating: 0, count: 2 << 20))
        tar.end()
        let plain = try scratch.write("bomb.tar", tar.bytes)
        try shell("gzip -n -9 -c \(plain) > \(scratch.path)/layer.tar && rm \(plain)")
        let limits = UnpackLimits(bytes: 1 << 20, entries: 10)
        let error = try #require(throws: OffswitchError.self) { _ = try unpack(scratch.path + "/layer.tar", into: scratch.path + "/layer", limits: limits) }
        #expect(error.message == "\(Self.label): entry \"zeros\": decompression bomb: the layer's uncompressed size passes its limit of 1048576 bytes")
        #expect((lstatInfo(scratch.path + "/layer/zeros")?.st_size ?? 0) <= 1 << 20)
    }

    @Test("More entries than the limit are refused at the first one over")
    func tooManyEntries() throws {
        var tar = TarBuilder()
        for index in 1...5 { tar.file("f\(index)", "x") }
        tar.end()
        #expect(try refused(tar, limits: UnpackLimits(bytes: 1 << 20, entries: 3))
            == "\(Self.label): entry \"f4\": decompression bomb: the layer has more entries than its limit of 3")
    }

    @Test("A PAX header over 1 MiB is refused")
    func hugeExtendedHeader() throws {
        var tar = TarBuilder()
        tar.file("before", "x")
        tar.pax([("comment", [UInt8](repeating: UInt8(ascii: "a"), count: (1 << 20) + 1))])
        tar.file("after", "x")
        tar.end()
        let message = try refused(tar)
        #expect(message.hasPrefix("\(Self.label): the header after entry \"before\": an extended header of "))
        #expect(message.hasSuffix("extended headers may hold at most 1048576 bytes an entry"))
    }

    @Test("An archive that ends inside an entry is refused as truncated, plain or gzip")
    func truncated() throws {
        var random: UInt32 = 1
        let noise = (0..<100_000).map { _ -> UInt8 in
            random = random &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: random >> 16)
        }
        var tar = TarBuilder()
        tar.file("small", "x")
        tar.file("big", noise)
        tar.end()
        var cut = TarBuilder()
        cut.data(Array(tar.bytes.prefix(1024 + 512 + 50_000)))
        #expect(try refused(cut) == "\(Self.label): entry \"big\": truncated: the stream ends inside the entry's data")

        let scratch = try Scratch()
        let plain = try scratch.write("whole.tar", tar.bytes)
        try shell("gzip -n -c \(plain) | head -c 50000 > \(scratch.path)/layer.tar && rm \(plain)")
        let error = try #require(throws: OffswitchError.self) { _ = try unpack(scratch.path + "/layer.tar", into: scratch.path + "/layer") }
        #expect(error.message.hasPrefix("\(Self.label): entry \"big\": gzip stream ends inside member 1: truncated"))
    }

    @Test("A header with a wrong checksum is refused, naming its entry")
    func badChecksum() throws {
        var tar = TarBuilder()
        tar.file("good", "x")
        tar.header("bad", type: "0", checksumDelta: 1)
        tar.end()
        #expect(try refused(tar).hasPrefix("\(Self.label): entry \"bad\": bad header checksum (stored "))
    }

    @Test("An archive may not set trusted.*, security.* labels or user.overlay.*", arguments: [
        "trusted.overlay.opaque", "trusted.overlay.redirect", "security.selinux", "user.overlay.origin", "system.posix_acl_access",
    ])
    func forbiddenXattrs(name: String) throws {
        var tar = TarBuilder()
        tar.pax([("SCHILY.xattr." + name, Array("y".utf8))])
        tar.directory("lower/")
        tar.end()
        let message = try refused(tar)
        #expect(message.hasPrefix("\(Self.label): entry \"lower/\": xattr \(name) refused: "))
    }

    @Test("Whiteouts of . and .., and entries under a whiteout name, are refused", arguments: [
        ("d/.wh..", "a whiteout of \".\""), ("d/.wh...", "a whiteout of \"..\""), (".wh.", "a whiteout of \"\""),
        ("d/.wh.x/y", "an entry inside a whiteout name"),
    ])
    func badWhiteouts(name: String, why: String) throws {
        var tar = TarBuilder()
        tar.file(name, "")
        tar.end()
        #expect(try refused(tar) == "\(Self.label): entry \"\(name)\": \(why)")
    }

    @Test("Garbage after a gzip member is an error, not ignored")
    func gzipTrailingGarbage() throws {
        let scratch = try Scratch()
        var tar = TarBuilder()
        tar.file("a", "a")
        tar.end()
        let plain = try scratch.write("a.tar", tar.bytes)
        try shell("gzip -n -c \(plain) > \(scratch.path)/layer.tar && printf 'garbage!' >> \(scratch.path)/layer.tar")
        let error = try #require(throws: OffswitchError.self) { _ = try unpack(scratch.path + "/layer.tar", into: scratch.path + "/layer") }
        #expect(error.message.contains("gzip stream, member 2: incorrect header check"))
    }
}
