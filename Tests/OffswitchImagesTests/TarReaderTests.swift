import COffswitch
import Foundation
import Glibc
import OffswitchCore
@testable import OffswitchImages
import Testing

@Suite("Reading tar streams")
struct TarReaderTests {
    /// The entries of a plain tar (names, kinds, data), read the way the unpacker reads them.
    private func entries(_ bytes: [UInt8], limits: UnpackLimits = .standard) throws -> [(entry: TarEntry, data: [UInt8])] {
        let scratch = try Scratch()
        let fd = open(try scratch.write("layer.tar", bytes), O_RDONLY)
        defer { close(fd) }
        let reader = TarReader(source: try Decompressor(input: fd, compression: .none), limits: limits, label: "layer L", bufferSize: 2048)
        var found: [(TarEntry, [UInt8])] = []
        while let entry = try reader.next() {
            var data: [UInt8] = []
            while let chunk = try reader.nextChunk() { data += chunk }
            found.append((entry, data))
        }
        try reader.finish()
        #expect(reader.bytes == Int64(bytes.count))
        return found
    }

    @Test("Numeric fields: octal with any padding, GNU base-256 both signs; anything else is malformed")
    func numbers() {
        #expect(TarReader.number(Array("0000644\0".utf8)[...]) == 0o644)
        #expect(TarReader.number(Array("  644 \0\0".utf8)[...]) == 0o644)
        #expect(TarReader.number(Array("\0\0\0\0".utf8)[...]) == 0)
        #expect(TarReader.number(Array("77777777777\0".utf8)[...]) == 0o77777777777)
        #expect(TarReader.number([0x80, 0, 0, 0, 0, 0x2d, 0xc6, 0xc0][...]) == 3_000_000)
        #expect(TarReader.number([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][...]) == -1)
        #expect(TarReader.number([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][...]) == nil)
        #expect(TarReader.number(Array("0009\0".utf8)[...]) == nil)
        #expect(TarReader.number(Array("12 34\0".utf8)[...]) == nil)
    }

    @Test("PAX times keep their fraction, negative ones too")
    func times() {
        func seconds(_ text: String) -> [Int]? { TarReader.time(Array(text.utf8)).map { [$0.tv_sec, $0.tv_nsec] } }
        #expect(seconds("1700000000") == [1_700_000_000, 0])
        #expect(seconds("1.000000001999") == [1, 1])
        #expect(seconds("12.25") == [12, 250_000_000])
        #expect(seconds("-1.5") == [-2, 500_000_000])
        #expect(seconds("-3") == [-3, 0])
        #expect(seconds("1.2.3") == nil)
        #expect(seconds("") == nil)
    }

    @Test("Names lose a leading ./, doubled slashes and . components; .. and absolute names are refused")
    func names() throws {
        func parts(_ name: String) throws -> [String] {
            try EntryPath(Array(name.utf8)).components.map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(try parts("./a//b/./c/") == ["a", "b", "c"])
        #expect(try parts("././a") == ["a"])
        #expect(try EntryPath(Array("./".utf8)).isRoot)
        #expect(try EntryPath(Array(".".utf8)).isRoot)
        #expect(try parts("..a/b..") == ["..a", "b.."])
        let tooLong = String(repeating: "a/", count: 2049)
        let longComponent = "dir/" + String(repeating: "c", count: 256)
        #expect(try parts(String(repeating: "c", count: 255)).count == 1)
        for bad in ["../a", "a/..", "/a", "", "a\u{0}b", tooLong, longComponent] {
            #expect(throws: EntryPath.Refusal.self) { try EntryPath(Array(bad.utf8)) }
        }
        #expect(EntryPath.display(Array("tab\there\u{1b}[31m".utf8)) == "tab\\x09here\\x1b[31m")
        #expect(EntryPath.display([0x66, 0xff, 0x6f]) == "f\u{fffd}o")
    }

    @Test("PAX x and g headers, GNU long names and links, a ustar prefix")
    func extendedHeaders() throws {
        let long = String(repeating: "x", count: 300)
        var tar = TarBuilder()
        tar.pax([("mtime", Array("1234567890".utf8)), ("SCHILY.xattr.user.global", Array("g".utf8))], global: true)
        tar.file("first", "1")
        tar.pax([("mtime", Array("99.5".utf8)), ("path", Array(long.utf8)), ("size", Array("3".utf8)), ("gid", Array("77".utf8))])
        tar.header("short", type: "0", size: 1)
        tar.data(Array("abc".utf8))
        // An empty value undoes the global record for this entry.
        tar.pax([("mtime", []), ("SCHILY.xattr.user.global", Array("local".utf8))])
        tar.file("third", "3", mtime: 5)
        tar.gnuLong("gnu/" + long)
        tar.gnuLong("target/" + long, link: true)
        tar.header("ignored", type: "2", link: "ignored")
        tar.header("name", type: "0", prefix: "the/prefix")
        tar.end()
        let found = try entries(tar.bytes)
        #expect(found.map { $0.entry.displayName } == ["first", long, "third", "gnu/" + long, "the/prefix/name"])
        #expect(found[0].entry.modified.tv_sec == 1_234_567_890)
        #expect(found[0].entry.xattrs.map { $0.value } == [Array("g".utf8)])
        #expect(found[1].data == Array("abc".utf8))
        #expect(found[1].entry.modified.tv_sec == 99 && found[1].entry.modified.tv_nsec == 500_000_000)
        #expect(found[1].entry.gid == 77)
        #expect(found[2].entry.modified.tv_sec == 5)
        #expect(found[2].entry.xattrs.map { $0.value } == [Array("local".utf8)])
        #expect(found[3].entry.kind == .symbolicLink)
        #expect(found[3].entry.linkName == Array(("target/" + long).utf8))
    }

    @Test("Only regular files carry data; other kinds' size fields are ignored, as Go's archive/tar does")
    func headerOnlyKinds() throws {
        var tar = TarBuilder()
        tar.header("link", type: "2", size: 600, link: "target")
        tar.header("dir", type: "5", size: 512)
        tar.file("after", "data")
        tar.header("old-style-dir/", type: "\0")
        tar.end()
        let found = try entries(tar.bytes)
        #expect(found.map { $0.entry.displayName } == ["link", "dir", "after", "old-style-dir/"])
        #expect(found.map { $0.entry.size } == [0, 0, 4, 0])
        #expect(found[2].data == Array("data".utf8))
        #expect(found[3].entry.kind == .directory)
    }

    @Test("The archive ends at two zero blocks, at one before the stream's end, or at the end; a zero block before a header is refused")
    func ends() throws {
        var tar = TarBuilder()
        tar.file("a", "a")
        #expect(try entries(tar.bytes).count == 1)
        #expect(try entries(tar.bytes + [UInt8](repeating: 0, count: 512)).count == 1)
        var trailing = tar
        trailing.end()
        #expect(try entries(trailing.bytes + Array("trailing bytes".utf8)).count == 1)
        var zeroInside = tar
        zeroInside.data([UInt8](repeating: 0, count: 512))
        zeroInside.file("b", "b")
        let error = try #require(throws: OffswitchError.self) { try entries(zeroInside.bytes) }
        #expect(error.message == "layer L: the header after entry \"a\": a zero block followed by a header: not a tar stream this reader trusts")
    }

    @Test("Unknown PAX records are ignored; a malformed one is refused; sparse files are refused")
    func paxRecords() throws {
        var tar = TarBuilder()
        tar.pax([("comment", Array("anything".utf8)), ("LIBARCHIVE.xattr.trusted.x", Array("eQ==".utf8)), ("atime", Array("1".utf8))])
        tar.file("a", "a")
        tar.end()
        let found = try entries(tar.bytes)
        #expect(found.count == 1 && found[0].entry.xattrs.isEmpty)

        var malformed = TarBuilder()
        malformed.header("PaxHeaders/a", type: "x", size: 12)
        malformed.data(Array("99 path=abc\n".utf8))
        malformed.file("a", "a")
        let error = try #require(throws: OffswitchError.self) { try entries(malformed.bytes) }
        #expect(error.message == "layer L: the first header: malformed PAX record (its length)")

        var sparse = TarBuilder()
        sparse.pax([("GNU.sparse.major", Array("1".utf8))])
        sparse.file("holes", "")
        let refused = try #require(throws: OffswitchError.self) { try entries(sparse.bytes) }
        #expect(refused.message == "layer L: entry \"holes\": sparse files are not supported")
    }
}
