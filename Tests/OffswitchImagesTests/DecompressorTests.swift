import Foundation
import Glibc
import OffswitchCore
@testable import OffswitchImages
import Testing

@Suite("Layer blobs decompressed as streams")
struct DecompressorTests {
    /// Bytes that compress poorly, so compressed blobs span several input buffers.
    static let sample: [UInt8] = {
        var random: UInt64 = 42
        return (0..<(1 << 20) + 1234).map { index -> UInt8 in
            random = random &* 6_364_136_223_846_793_005 &+ 1
            return index % 3 == 0 ? 0 : UInt8(truncatingIfNeeded: random >> 40)
        }
    }()

    /// Everything `file` decompresses to, read through a small output buffer, and the blob's digest.
    private func decompress(_ file: String, _ compression: LayerCompression) throws -> (bytes: [UInt8], digest: String) {
        let fd = open(file, O_RDONLY)
        defer { close(fd) }
        let decompressor = try Decompressor(input: fd, compression: compression, bufferSize: 4096)
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 10_000)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buffer throws(OffswitchError) in try decompressor.read(into: buffer) }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return (out, decompressor.blobDigest())
    }

    @Test("The first bytes name the compression; the descriptor's offset stays")
    func sniff() throws {
        let scratch = try Scratch()
        let cases: [([UInt8], LayerCompression)] = [
            ([0x1f, 0x8b, 8, 0], .gzip), ([0x28, 0xb5, 0x2f, 0xfd, 0], .zstd), (Array("ustar".utf8), .none), ([], .none), ([0x1f], .none),
        ]
        for (index, (bytes, expected)) in cases.enumerated() {
            let fd = open(try scratch.write("blob\(index)", bytes), O_RDONLY)
            defer { close(fd) }
            #expect(try LayerCompression.sniff(fd) == expected)
            #expect(lseek(fd, 0, SEEK_CUR) == 0)
        }
    }

    @Test("gzip (one member or several), zstd (one frame or several) and none give the same bytes")
    func formats() throws {
        let scratch = try Scratch()
        let plain = try scratch.write("plain", Self.sample)
        let p = scratch.path
        try shell("gzip -n -c \(plain) > \(p)/one.gz")
        try shell("head -c 300000 \(plain) | gzip -n -c > \(p)/multi.gz && tail -c +300001 \(plain) | gzip -n -c >> \(p)/multi.gz")
        try shell("zstd -q -c \(plain) > \(p)/one.zst")
        try shell("head -c 300000 \(plain) | zstd -q -c > \(p)/multi.zst && tail -c +300001 \(plain) | zstd -q -c >> \(p)/multi.zst")
        for (blob, compression) in [("plain", LayerCompression.none), ("one.gz", .gzip), ("multi.gz", .gzip), ("one.zst", .zstd), ("multi.zst", .zstd)] {
            let (bytes, digest) = try decompress(p + "/" + blob, compression)
            #expect(bytes == Self.sample, "\(blob)")
            #expect(digest == (try sha256sum(p + "/" + blob)), "\(blob)")
        }
    }

    @Test("A blob cut short, empty, or followed by garbage is an error", arguments: [
        ("gzip -n -c SRC | head -c 5000", LayerCompression.gzip, "gzip stream ends inside member 1: truncated"),
        ("zstd -q -c SRC | head -c 5000", .zstd, "zstd stream ends inside frame 1: truncated"),
        ("true", .gzip, "gzip stream is empty: truncated"),
        ("true", .zstd, "zstd stream is empty: truncated"),
        ("gzip -n -c SRC; printf 'garbage!'", .gzip, "gzip stream, member 2: incorrect header check"),
        ("zstd -q -c SRC; printf 'garbage!'", .zstd, "zstd stream, frame 2: Unknown frame descriptor"),
    ])
    func broken(command: String, compression: LayerCompression, message: String) throws {
        let scratch = try Scratch()
        let plain = try scratch.write("plain", Self.sample)
        try shell("(\(command.replacingOccurrences(of: "SRC", with: plain))) > \(scratch.path)/blob")
        let error = try #require(throws: OffswitchError.self) { _ = try decompress(scratch.path + "/blob", compression) }
        #expect(error.message == message)
        #expect(error.code == .invalidArgument)
    }
}
