import COffswitch
import FoundationEssentials
import Glibc
public import OffswitchCore

/// Importing images from files: an OCI image layout (a directory, or a tar of one, as
/// `skopeo copy ... oci-archive:` writes it) and a `docker save` archive (or its directory).
/// Every digest is verified on the way in: the manifest against the index, the configuration
/// against the manifest (or, for `docker save`, against its file name), each layer's blob against
/// the manifest and its uncompressed tar against the configuration's `diff_ids`.
extension ImageStore {
    /// What one imported image became, and what the import did for each layer.
    public struct Imported: Sendable {
        public var record: ImageRecord
        /// Per layer, bottom first: true when it was unpacked now, false when the store had it.
        public var unpacked: [Bool]
    }

    /// Imports every image in `path`, naming it by `tags` (only when there is one image) besides
    /// the names the archive gives. `progress` receives one line per step; `shownAs` names the
    /// archive in messages (an upload's work file is not the client's name for it).
    /// `quota`: the most the store may hold (its layers' and blobs' bytes) once this import is in;
    /// nil for none (the CLI, as root, decides for itself).
    public func importImages(from path: String, tags: [String] = [], limits: UnpackLimits = .standard, shownAs: String? = nil,
                             quota: Int64? = nil, progress: (String) -> Void = { _ in }) throws(OffswitchError) -> [Imported] {
        let shown = shownAs ?? path
        let serialized = try quotaLock(quota)
        defer { withExtendedLifetime(serialized) {} }
        var budget = ImportBudget(left: quota.map { $0 - usedBytes() }, quota: quota)
        if let left = budget.left, left <= 0 {
            throw OffswitchError(.capacityReached, "image import \(shown): the image store holds \(usedBytes()) bytes, its quota is \(quota!) (remove images and prune)")
        }
        let references = try tags.map { (tag) throws(OffswitchError) in try ImageReference(parsing: tag).description }
        let lock = try storeLock(exclusive: false)
        defer { withExtendedLifetime(lock) {} }
        var info = stat()
        guard stat(path, &info) == 0 else { throw OffswitchError.system("image import: stat(\(shown))", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR || info.st_mode & S_IFMT == S_IFREG else {
            throw OffswitchError(.invalidArgument, "image import \(shown): neither a directory nor a regular file (an archive); a FIFO or a device is not read")
        }
        var work: String?
        defer { if let work { removeTree(work) } }
        var directory = path
        if info.st_mode & S_IFMT != S_IFDIR {
            // A tar (maybe compressed) of a layout or of `docker save`: unpacked with the same
            // rules as a layer, so that its names cannot leave the work directory either.
            let unpacked = try workDirectory("archive")
            work = unpacked
            let fd = try systemCall("image import: open(\(shown))") { open(path, O_RDONLY | O_CLOEXEC) }
            defer { close(fd) }
            progress("reading \(shown)")
            _ = try LayerUnpacker.unpack(from: fd, compression: try LayerCompression.sniff(fd), into: unpacked, limits: limits,
                                         label: "archive \(shown)")
            directory = unpacked
        }
        let source = ArchiveDirectory(path: directory, shownAs: shown)
        let found: [Imported]
        if source.exists("oci-layout") {
            found = try importLayout(source, progress: progress, limits: limits, budget: &budget)
        } else if source.exists("manifest.json") {
            found = try importDockerArchive(source, progress: progress, limits: limits, budget: &budget)
        } else {
            throw OffswitchError(.invalidArgument, "image import \(shown): neither an OCI image layout (no oci-layout file) nor a docker save archive (no manifest.json)")
        }
        guard !references.isEmpty else { return found }
        guard found.count == 1 else {
            throw OffswitchError(.invalidArgument, "image import \(shown): holds \(found.count) images; --tag names one (they were imported without it)")
        }
        var named = found[0]
        named.record.references = Array(Set(named.record.references).union(references)).sorted()
        try save(named.record)
        return [named]
    }

    // MARK: OCI image layout

    private func importLayout(_ layout: ArchiveDirectory, progress: (String) -> Void, limits: UnpackLimits, budget: inout ImportBudget) throws(OffswitchError) -> [Imported] {
        struct LayoutFile: Codable { var imageLayoutVersion: String }
        let version = try OCI.decode(LayoutFile.self, try layout.read("oci-layout"), what: "\(layout.shownAs)/oci-layout")
        guard version.imageLayoutVersion.hasPrefix("1.") else {
            throw OffswitchError(.invalidArgument, "\(layout.shownAs)/oci-layout: imageLayoutVersion \(version.imageLayoutVersion) is not 1.x")
        }
        let index = try OCI.decode(OCI.Index.self, try layout.read("index.json"), what: "\(layout.shownAs)/index.json")
        var imported: [Imported] = []
        for descriptor in index.manifests {
            let name = descriptor.annotations?[OCI.refName]
            let manifest = try manifest(descriptor, in: layout, depth: 0)
            var references: [String] = []
            // A full reference names the image; a bare tag (what skopeo and umoci write) does not
            // say which repository, so the image is named by --tag, or stays unnamed.
            if let name, name.contains("/") || name.contains(":"), let reference = try? ImageReference(parsing: name) {
                references.append(reference.description)
            }
            imported.append(try commit(manifest: manifest.manifest, manifestDigest: manifest.digest, references: references,
                                       source: "oci-layout \(layout.shownAs)", blob: { (digest) throws(OffswitchError) in
                                           try layout.openBlob(digest)
                                       }, progress: progress, limits: limits, budget: &budget))
        }
        guard !imported.isEmpty else { throw OffswitchError(.invalidArgument, "\(layout.shownAs)/index.json: names no manifest") }
        return imported
    }

    /// The manifest a descriptor names, through image indexes, for this host's platform.
    private func manifest(_ descriptor: OCI.Descriptor, in layout: ArchiveDirectory, depth: Int) throws(OffswitchError) -> (manifest: OCI.Manifest, digest: String) {
        guard depth < 4 else { throw OffswitchError(.invalidArgument, "\(layout.shownAs): image indexes nested deeper than 4") }
        let bytes = try layout.readBlob(descriptor, limit: 4 << 20)
        let type = descriptor.mediaType ?? mediaType(of: bytes)
        if OCI.indexTypes.contains(type) {
            let index = try OCI.decode(OCI.Index.self, bytes, what: "image index \(descriptor.digest)")
            let chosen = try index.forHost(what: "image index \(descriptor.digest)")
            return try manifest(chosen, in: layout, depth: depth + 1)
        }
        guard OCI.manifestTypes.contains(type) else {
            throw OffswitchError(.invalidArgument, "\(descriptor.digest): media type \(type) is neither an image manifest nor an index")
        }
        return (try OCI.decode(OCI.Manifest.self, bytes, what: "image manifest \(descriptor.digest)"), descriptor.digest)
    }

    func mediaType(of bytes: [UInt8]) -> String {
        struct Typed: Codable { var mediaType: String?; var manifests: [OCI.Descriptor]? }
        let typed = try? OCI.decode(Typed.self, bytes, what: "document")
        return typed?.mediaType ?? (typed?.manifests != nil ? "application/vnd.oci.image.index.v1+json" : "application/vnd.oci.image.manifest.v1+json")
    }

    // MARK: docker save

    private func importDockerArchive(_ archive: ArchiveDirectory, progress: (String) -> Void, limits: UnpackLimits, budget: inout ImportBudget) throws(OffswitchError) -> [Imported] {
        let entries = try OCI.decode([OCI.DockerArchiveEntry].self, try archive.read("manifest.json"), what: "\(archive.shownAs)/manifest.json")
        guard !entries.isEmpty else { throw OffswitchError(.invalidArgument, "\(archive.shownAs)/manifest.json: names no image") }
        var imported: [Imported] = []
        for entry in entries {
            let configBytes = try archive.read(entry.Config, limit: 4 << 20)
            let configDigest = "sha256:" + SHA256.hex(configBytes)
            // Docker names the configuration by its digest (`HEX.json`, or `blobs/sha256/HEX`).
            let stem = entry.Config.hasSuffix(".json") ? String(entry.Config.dropLast(5)) : entry.Config
            let named = stem.split(separator: "/").last.map(String.init) ?? stem
            if named.utf8.count == 64, "sha256:" + named != configDigest {
                throw OffswitchError(.invalidArgument, "\(archive.shownAs): \(entry.Config) holds content of digest \(configDigest), not the one its name says")
            }
            let references = (entry.RepoTags ?? []).compactMap { try? ImageReference(parsing: $0).description }
            let manifest = OCI.Manifest(
                schemaVersion: 2, mediaType: nil,
                config: OCI.Descriptor(mediaType: nil, digest: configDigest, size: Int64(configBytes.count)),
                layers: entry.Layers.map { OCI.Descriptor(mediaType: "docker-save:" + $0, digest: "", size: 0) })
            imported.append(try commit(manifest: manifest, manifestDigest: nil, references: references,
                                       source: "docker-archive \(archive.shownAs)", configBytes: configBytes, blob: { (descriptor) throws(OffswitchError) in
                                           try archive.open(String(descriptor.dropFirst("docker-save:".count)))
                                       }, progress: progress, limits: limits, budget: &budget))
        }
        return imported
    }

    // MARK: the common part

    /// Stores the configuration (and manifest), unpacks each layer the store lacks, and writes
    /// the record. `blob` opens a layer blob by the manifest's digest (or, for `docker save`, by
    /// the path carried in its media type).
    func commit(manifest: OCI.Manifest, manifestDigest: String?, references: [String], source: String,
                        configBytes given: [UInt8]? = nil, blob: (String) throws(OffswitchError) -> Int32,
                        progress: (String) -> Void, limits: UnpackLimits, budget: inout ImportBudget) throws(OffswitchError) -> Imported {
        let configBytes: [UInt8]
        if let given { configBytes = given } else { configBytes = try readBlobOf(manifest.config, blob: blob) }
        let config = try OCI.decode(OCI.ImageConfig.self, configBytes, what: "image configuration \(manifest.config.digest)")
        let host = OCI.Platform.host
        if let os = config.os, let architecture = config.architecture, os != host.os || architecture != host.architecture {
            throw OffswitchError(.invalidArgument, "image \(manifest.config.digest): built for \(os)/\(architecture), this host is \(host.description)")
        }
        guard manifest.layers.count <= Self.layerLimit else {
            throw OffswitchError(.invalidArgument, "image \(manifest.config.digest): \(manifest.layers.count) layers; a sandbox's root stacks at most \(Self.layerLimit) (Docker's bound as well)")
        }
        guard config.rootfs.diff_ids.count == manifest.layers.count else {
            throw OffswitchError(.invalidArgument, "image \(manifest.config.digest): the manifest has \(manifest.layers.count) layers, the configuration \(config.rootfs.diff_ids.count) diff ids")
        }
        let label = references.first.map { "image \($0)" } ?? "image \(manifest.config.digest.prefix(19))"
        var layers: [ImageRecord.Layer] = []
        var unpacked: [Bool] = []
        for (index, (descriptor, diffID)) in zip(manifest.layers, config.rootfs.diff_ids).enumerated() {
            let isDockerSave = descriptor.mediaType?.hasPrefix("docker-save:") ?? false
            if let type = descriptor.mediaType, !isDockerSave, type.contains("nondistributable") || type.contains("foreign") {
                progress("layer \(index + 1)/\(manifest.layers.count) \(diffID.prefix(19)): \(String(type.unicodeScalars.prefix(120).filter { $0.value >= 0x20 && $0.value != 0x7f })), taken like any other layer")
            }
            var layerLimits = limits
            if let left = budget.left { layerLimits.bytes = min(limits.bytes, left) }
            let meta: LayerMeta, made: Bool
            do throws(OffswitchError) {
                (meta, made) = try commitLayer(diffID: diffID, digest: isDockerSave ? nil : descriptor.digest,
                                               label: "\(label) layer \(isDockerSave ? diffID : descriptor.digest)", limits: layerLimits) { () throws(OffswitchError) in
                    try blob(isDockerSave ? descriptor.mediaType! : descriptor.digest)
                }
            } catch {
                if let left = budget.left, let quota = budget.quota, left < limits.bytes, error.message.contains("decompression bomb") {
                    throw OffswitchError(.capacityReached, "\(label): the image store's quota of \(quota) bytes has \(left) left, and this layer needs more (remove images and prune)")
                }
                throw error
            }
            if made, let left = budget.left { budget.left = left - meta.bytes }
            progress("layer \(index + 1)/\(manifest.layers.count) \(diffID.prefix(19)): \(made ? "unpacked, \(meta.entries) entries, \(meta.bytes >> 20) MiB" : "already in the store")")
            layers.append(ImageRecord.Layer(diff_id: diffID, digest: isDockerSave ? nil : descriptor.digest, size: meta.bytes))
            unpacked.append(made)
        }
        try storeBlob(configBytes, digest: manifest.config.digest)
        if let manifestDigest, let bytes = try? blobBytes(manifestDigest, blob: blob) { try storeBlob(bytes, digest: manifestDigest) }
        let platform = OCI.Platform(architecture: config.architecture ?? host.architecture, os: config.os ?? host.os, variant: config.variant)
        let record = ImageRecord(format: ImageRecord.formatName, id: manifest.config.digest, references: references.sorted(),
                                 manifest: manifestDigest, platform: platform.description, layers: layers, config: config.config,
                                 created: config.created, source: source, imported: Date.now.formatted(.iso8601))
        try save(record)
        return Imported(record: self.record(hex: record.hex) ?? record, unpacked: unpacked)
    }

    private func readBlobOf(_ descriptor: OCI.Descriptor, blob: (String) throws(OffswitchError) -> Int32) throws(OffswitchError) -> [UInt8] {
        let bytes = try blobBytes(descriptor.digest, blob: blob)
        guard "sha256:" + SHA256.hex(bytes) == descriptor.digest else {
            throw OffswitchError(.invalidArgument, "blob \(descriptor.digest): its content has digest sha256:\(SHA256.hex(bytes))")
        }
        return bytes
    }

    private func blobBytes(_ digest: String, blob: (String) throws(OffswitchError) -> Int32) throws(OffswitchError) -> [UInt8] {
        let fd = try blob(digest)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw OffswitchError.system("read(blob \(digest))", errno: errno) }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > 4 << 20 { throw OffswitchError(.invalidArgument, "blob \(digest): a manifest or configuration over 4 MiB") }
        }
        return bytes
    }

    /// Writes a verified manifest or configuration into blobs/sha256.
    func storeBlob(_ bytes: [UInt8], digest: String) throws(OffswitchError) {
        let hex = try OCI.hexOfDigest(digest, what: "blob")
        guard SHA256.hex(bytes) == hex else { throw OffswitchError(.invalidArgument, "blob \(digest): its content has digest sha256:\(SHA256.hex(bytes))") }
        let target = "\(blobs)/\(hex)"
        if access(target, F_OK) == 0 { return }
        // Named for this call alone: two imports of one image in one process (the daemon's) write
        // the same blob at once, and each renames its own complete copy into place.
        let staged = "\(temporary)/\(getpid())-blob-\(hex)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        try writeWholeFile(bytes, to: staged)
        try systemCall("rename(\(staged), \(target))") { rename(staged, target) }
    }

    /// One layer into layers/sha256/HEX, unless it is there already; unpacked once however many
    /// imports want it at the same time (the layer's lock), and renamed into place only when
    /// complete and verified.
    func commitLayer(diffID: String, digest: String?, label: String, limits: UnpackLimits,
                     open: () throws(OffswitchError) -> Int32) throws(OffswitchError) -> (LayerMeta, Bool) {
        let hex = try OCI.hexOfDigest(diffID, what: label)
        let target = "\(layers)/\(hex)"
        func present() -> LayerMeta? {
            guard access(target, F_OK) == 0 else { return nil }
            return readSmallBytes(target + ".json").flatMap { try? OCI.decode(LayerMeta.self, $0, what: target + ".json") }
        }
        if let meta = present() { return (meta, false) }
        let lock = try Lock("\(locks)/\(hex).lock", LOCK_EX)
        defer { withExtendedLifetime(lock) {} }
        if let meta = present() { return (meta, false) }
        // A directory without its record is what an interrupted prune left: it goes first.
        if access(target, F_OK) == 0 {
            removeTree(target)
            guard access(target, F_OK) != 0 else { throw OffswitchError(.system, "\(label): \(target) is left from before and cannot be removed") }
        }
        let work = try workDirectory("layer")
        defer { removeTree(work) }
        let directory = work + "/layer"
        try systemCall("mkdir(\(directory))") { mkdir(directory, 0o755) }
        let fd = try open()
        defer { close(fd) }
        let result = try LayerUnpacker.unpack(from: fd, compression: try LayerCompression.sniff(fd), into: directory, limits: limits, label: label)
        guard result.diffID == diffID else {
            throw OffswitchError(.invalidArgument, "\(label): its uncompressed content has digest \(result.diffID), the configuration says \(diffID)")
        }
        if let digest, result.digest != digest {
            throw OffswitchError(.invalidArgument, "\(label): the blob's content has digest \(result.digest), the manifest says \(digest)")
        }
        let meta = LayerMeta(diff_id: diffID, digest: digest, entries: result.entries, bytes: result.bytes, unpacked: Date.now.formatted(.iso8601))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try writeWholeFile(Array((try? encoder.encode(meta)) ?? Data()), to: target + ".json")
        // The directory last: a layer is visible only complete.
        try systemCall("rename(\(directory), \(target))") { rename(directory, target) }
        return (meta, true)
    }
}

extension ImageStore {
    /// Imports and pulls under a quota run one at a time (an exclusive lock of the store's), so
    /// that each measures what the store holds with no other one's layers half-counted; nil when
    /// there is no quota.
    func quotaLock(_ quota: Int64?) throws(OffswitchError) -> Lock? {
        guard quota != nil else { return nil }
        try ensure()
        return try Lock("\(locks)/quota.lock", LOCK_EX)
    }
}

/// What an import may still unpack under the store's quota.
struct ImportBudget {
    var left: Int64?
    let quota: Int64?
}

/// A directory holding an image layout or an unpacked `docker save`, read with every path
/// resolved inside it (a symlink planted in the archive cannot make the import read host files).
struct ArchiveDirectory {
    let path: String
    /// The path the user gave (the archive, not its work directory), for messages.
    let shownAs: String

    func exists(_ name: String) -> Bool { access(path + "/" + name, F_OK) == 0 }

    func open(_ relative: String) throws(OffswitchError) -> Int32 {
        guard !relative.isEmpty, !relative.hasPrefix("/"), !relative.split(separator: "/").contains("..") else {
            throw OffswitchError(.invalidArgument, "\(shownAs): path \"\(relative.prefix(200))\" leaves the archive")
        }
        let directory = try systemCall("open(\(path))") { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(directory) }
        // O_NONBLOCK: a FIFO planted in the archive must not hang the import in open(); it is
        // refused just below like anything else that is not a regular file.
        let fd = ofs_open_in_root(directory, relative, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0)
        if fd < 0 { throw OffswitchError.system("\(shownAs): open(\(relative))", errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw OffswitchError(.invalidArgument, "\(shownAs): \(relative) is not a regular file")
        }
        return fd
    }

    func read(_ relative: String, limit: Int = 4 << 20) throws(OffswitchError) -> [UInt8] {
        let fd = try open(relative)
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw OffswitchError.system("\(shownAs): read(\(relative))", errno: errno) }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
            if bytes.count > limit { throw OffswitchError(.invalidArgument, "\(shownAs): \(relative) is over \(limit >> 20) MiB") }
        }
    }

    func openBlob(_ digest: String) throws(OffswitchError) -> Int32 {
        try open("blobs/sha256/" + (try OCI.hexOfDigest(digest, what: shownAs)))
    }

    /// A manifest or index blob, verified against its descriptor.
    func readBlob(_ descriptor: OCI.Descriptor, limit: Int) throws(OffswitchError) -> [UInt8] {
        let bytes = try read("blobs/sha256/" + (try OCI.hexOfDigest(descriptor.digest, what: shownAs)), limit: limit)
        guard "sha256:" + SHA256.hex(bytes) == descriptor.digest else {
            throw OffswitchError(.invalidArgument, "\(shownAs): blob \(descriptor.digest) holds content of digest sha256:\(SHA256.hex(bytes))")
        }
        return bytes
    }
}
