import Glibc
public import OffswitchCore

/// How a layer blob is compressed. The raw values are the names of the OCI media-type suffixes
/// (`application/vnd.oci.image.layer.v1.tar+gzip`), with `none` for a plain tar.
public enum LayerCompression: String, Sendable {
    case none, gzip, zstd

    /// From the first bytes: 1f 8b gzip, 28 b5 2f fd zstd, else none. Reads with pread at
    /// offset 0, so the descriptor's offset does not move.
    public static func sniff(_ fd: Int32) throws(OffswitchError) -> LayerCompression {
        var magic = [UInt8](repeating: 0, count: 4)
        var have = 0
        // A short read is not the end of a file: keep reading until 4 bytes or EOF.
        while have < magic.count {
            let n = try systemCall("pread(fd \(fd), layer magic)") {
                magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + have, $0.count - have, off_t(have)) }
            }
            if n == 0 { break }
            have += n
        }
        return detect(magic[0..<have])
    }

    /// The compression the bytes at a blob's start name.
    static func detect(_ prefix: ArraySlice<UInt8>) -> LayerCompression {
        if prefix.starts(with: [0x1f, 0x8b]) { return .gzip }
        if prefix.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return .zstd }
        return .none
    }
}
