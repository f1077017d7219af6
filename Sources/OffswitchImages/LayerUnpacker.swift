import Glibc
public import OffswitchCore

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

/// What unpacking a layer found.
public struct UnpackResult: Sendable {
    /// "sha256:<hex>" of the uncompressed tar stream: every byte read, end blocks and any padding
    /// after them included (the image config's `rootfs.diff_ids`).
    public var diffID: String
    /// "sha256:<hex>" of the bytes read from the descriptor: the blob as stored (the manifest's
    /// layer digest).
    public var digest: String
    public var entries: Int
    /// Uncompressed bytes.
    public var bytes: Int64
    /// Bytes read from the descriptor.
    public var blobBytes: Int64
}

/// Unpacks an OCI image layer (a tar, gzip or zstd blob) into a directory that becomes an overlayfs
/// lower layer. The archive is treated as hostile: see `unpack`.
public enum LayerUnpacker {
    /// Reads the layer blob from `input` (its current offset to EOF), decompresses it as a stream,
    /// and writes its entries into `directory`, which must exist and be empty.
    ///
    /// Nothing is ever written outside `directory`: names are relative and without `..`, every
    /// path is resolved beneath the directory without following any symlink (an entry whose parent
    /// is a symlink is refused), and hard links only join entries of this layer. Device nodes are
    /// refused; OCI whiteouts become overlayfs whiteouts (character devices 0:0) and opaque
    /// directories (`trusted.overlay.opaque=y`). Of the xattrs only `user.*` (not `user.overlay.*`)
    /// and `security.capability` are kept, on files and directories; any other refuses the entry.
    /// Owners are the numeric uid and gid of the headers.
    ///
    /// `label` names the image and layer in every error (`image alpine:3 layer sha256:abc...`);
    /// errors also name the entry. The first refused entry throws, leaving `directory` partly
    /// written: the caller removes it.
    public static func unpack(
        from input: Int32, compression: LayerCompression, into directory: String, limits: UnpackLimits = .standard, label: String
    ) throws(OffswitchError) -> UnpackResult {
        let tree = try LayerTree(directory: directory, label: label)
        let source = try Decompressor(input: input, compression: compression)
        let reader = TarReader(source: source, limits: limits, label: label)
        while let entry = try reader.next() {
            try write(entry, reader: reader, tree: tree)
        }
        try reader.finish()
        try tree.applyDirectoryTimes()
        return UnpackResult(
            diffID: reader.diffID(), digest: source.blobDigest(), entries: reader.entries, bytes: reader.bytes,
            blobBytes: source.blobBytes)
    }

    private static let whiteoutPrefix = Array(".wh.".utf8)
    private static let opaqueMarker = Array(".wh..wh..opq".utf8)
    private static let aufsPrefix = Array(".wh..wh.".utf8)

    private static func write(_ entry: TarEntry, reader: TarReader, tree: LayerTree) throws(OffswitchError) {
        let shown = entry.displayName
        let path: EntryPath
        do {
            path = try EntryPath(entry.name)
        } catch {
            throw reader.refusal(shown, error.reason)
        }
        for xattr in entry.xattrs {
            if let problem = xattrProblem(xattr.name) { throw reader.refusal(shown, problem) }
        }
        if path.components.dropLast().contains(where: { $0.starts(with: whiteoutPrefix) }) {
            throw reader.refusal(shown, "an entry inside a whiteout name")
        }

        if path.name.starts(with: whiteoutPrefix) {
            if path.name == opaqueMarker { return try tree.markOpaque(path.parent, entry: shown) }
            // aufs's own metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image; Docker skips it.
            if path.name.starts(with: aufsPrefix) { return }
            let hidden = Array(path.name.dropFirst(whiteoutPrefix.count))
            if hidden.isEmpty || hidden == [UInt8(ascii: ".")] || hidden == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                throw reader.refusal(shown, "a whiteout of \"\(EntryPath.display(hidden))\"")
            }
            return try tree.makeWhiteout(path.parent.appending(hidden), entry, entry: shown)
        }

        if path.isRoot && entry.kind != .directory {
            throw reader.refusal(shown, "only a directory can stand for the layer directory itself")
        }
        // Xattrs apply to files and directories. On symlinks the kernel allows none that are kept
        // here; a hard link's and a FIFO's are not taken (the link shares its target's inode).
        let xattrs = entry.xattrs
        switch entry.kind {
        case .regular:
            let fd = try tree.createFile(path, entry: shown)
            defer { close(fd) }
            while let chunk = try reader.nextChunk() { try tree.write(fd, chunk, entry: shown) }
            try tree.finishFile(fd, entry, xattrs: xattrs, entry: shown)
        case .directory:
            try tree.makeDirectory(path, entry, xattrs: xattrs, entry: shown)
        case .symbolicLink:
            if entry.linkName.isEmpty { throw reader.refusal(shown, "a symlink with an empty target") }
            if entry.linkName.contains(0) { throw reader.refusal(shown, "a symlink target holding a NUL byte") }
            try tree.makeSymlink(path, target: entry.linkName, entry, entry: shown)
        case .hardLink:
            let target: EntryPath
            do {
                target = try EntryPath(entry.linkName)
            } catch {
                throw reader.refusal(shown, "its link target \"\(EntryPath.display(entry.linkName))\": \(error.reason)")
            }
            try tree.makeHardLink(path, target: target, entry: shown)
        case .fifo:
            try tree.makeFIFO(path, entry, entry: shown)
        case .characterDevice, .blockDevice:
            let kind = entry.kind == .characterDevice ? "character" : "block"
            throw reader.refusal(shown, "a \(kind) device: device nodes are refused (only whiteouts are made)")
        }
    }

    /// Why an xattr may not be set from a layer, or nil when it may.
    static func xattrProblem(_ name: [UInt8]) -> String? {
        guard !name.isEmpty, !name.contains(0), let text = String(validating: name, as: UTF8.self) else {
            return "an xattr name that is not text"
        }
        if text == "security.capability" { return nil }
        // overlayfs reads its own metadata from user.overlay.* on a `userxattr` mount.
        if text.hasPrefix("user.overlay.") { return "xattr \(text) refused: user.overlay.* is overlayfs metadata" }
        if text.hasPrefix("user.") { return nil }
        if text.hasPrefix("trusted.") {
            return "xattr \(text) refused: trusted.* belongs to the host (overlayfs keeps its whiteouts and opaque directories there)"
        }
        if text.hasPrefix("security.") {
            return "xattr \(text) refused: of security.* only security.capability is kept (labels are the host's policy)"
        }
        return "xattr \(EntryPath.display(name)) refused: only user.* and security.capability are kept"
    }
}
