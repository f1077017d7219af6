/// How much one layer may unpack to. A layer over either limit is refused as a decompression bomb.
public struct UnpackLimits: Sendable {
    /// Uncompressed bytes of the whole tar stream (headers, padding and trailing bytes included).
    public var bytes: Int64
    /// Entries (files, directories, links, whiteouts; extended headers not counted).
    public var entries: Int

    public init(bytes: Int64, entries: Int) {
        self.bytes = bytes
        self.entries = entries
    }

    /// 32 GiB and two million entries: above any real image layer.
    public static let standard = UnpackLimits(bytes: 32 << 30, entries: 2_000_000)
}
