import COffswitch
import FoundationEssentials
import Glibc
public import OffswitchCore
import Synchronization

/// The image store (docs/images.md): content-addressed and root-only.
///
///     ROOT/                  0700: unpacked layers keep their setuid files, which no host user may reach
///       store.lock           imports hold it shared, prune exclusive
///       blobs/sha256/HEX     manifests and configurations, verified against their digest
///       layers/sha256/HEX/   one unpacked layer per diff id, an overlay lower of every sandbox using it
///       layers/sha256/HEX.json  what the unpack found (entries, bytes, when)
///       images/HEX.json      one record per image (ImageRecord), replaced whole by rename
///       images/HEX.lock      held shared by every sandbox using the image; `rm` needs it exclusive
///       locks/HEX.lock       held while a layer is unpacked, so concurrent imports unpack it once
///       tmp/PID-RANDOM       work in progress; nothing there is visible as a layer or an image
public final class ImageStore: Sendable {
    /// The most layers an image may have: overlayfs stacks a few hundred at most, and Docker
    /// refuses images of more than about 125.
    public static let layerLimit = 127

    public let root: String
    /// What chose `root`, for errors (`OFFSWITCH_IMAGE_STORE`, `--image-store`).
    public let source: String

    /// `OFFSWITCH_IMAGE_STORE`, or `/var/lib/offswitch/images`: on disk, since images outlive a reboot
    /// and may be large (the state directory is under /run).
    public static var standard: ImageStore {
        if let value = getenv("OFFSWITCH_IMAGE_STORE") { return ImageStore(root: String(cString: value), source: "OFFSWITCH_IMAGE_STORE") }
        return ImageStore(root: "/var/lib/offswitch/images", source: "image store")
    }

    public init(root: String, source: String = "image store") {
        self.root = root
        self.source = source
    }

    var blobs: String { root + "/blobs/sha256" }
    var layers: String { root + "/layers/sha256" }
    var images: String { root + "/images" }
    var locks: String { root + "/locks" }
    var temporary: String { root + "/tmp" }

    public func layerDirectory(_ diffID: String) throws(OffswitchError) -> String {
        layers + "/" + (try OCI.hexOfDigest(diffID, what: "layer"))
    }

    /// Creates the store's directories (root-only) and removes work left by dead importers.
    func ensure() throws(OffswitchError) {
        guard root.hasPrefix("/"), !root.split(separator: "/").contains("..") else {
            throw OffswitchError(.invalidArgument, "\(source) \(root): needs an absolute path without '..'")
        }
        // Every directory on the way must be root's, and none writable by another account unless
        // sticky (/tmp): someone who could rename or pre-create the store's directories could swap
        // in their own and reach the setuid files of its layers.
        var path = ""
        for component in root.split(separator: "/") {
            path += "/" + component
            if mkdir(path, path == root ? 0o700 : 0o755) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(path))", errno: errno) }
            try Self.checkOwned(path, store: path == root, source: source)
        }
        for directory in [root + "/blobs", blobs, root + "/layers", layers, images, locks, temporary] {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
            try Self.checkOwned(directory, store: true, source: source)
        }
        for name in listDirectory(temporary) {
            guard let pid = name.split(separator: "-").first.flatMap({ Int32($0) }), kill(pid, 0) != 0, errno == ESRCH else { continue }
            removeTree(temporary + "/" + name)
        }
    }

    /// A real directory (not a link) owned by root; the store's own are made 0700, an ancestor
    /// may be shared only with the sticky bit.
    static func checkOwned(_ path: String, store: Bool, source: String) throws(OffswitchError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw OffswitchError.system("\(source): lstat(\(path))", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw OffswitchError(.permissionDenied, "\(source) \(path): not a directory (a symlink?); the image store's path must be real directories")
        }
        guard info.st_uid == 0 else {
            throw OffswitchError(.permissionDenied, "\(source) \(path): owned by uid \(info.st_uid), not root; another account could swap the store's layers (their setuid files)")
        }
        if store {
            if info.st_mode & 0o7777 != 0o700 { try systemCall("chmod(\(path), 0700)") { chmod(path, 0o700) } }
        } else if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
            throw OffswitchError(.permissionDenied, "\(source) \(path): writable by other accounts without the sticky bit; put the image store elsewhere")
        }
    }

    // MARK: locks

    /// An flock on `path`, released by closing the descriptor.
    final class Lock: Sendable {
        let fd: Int32
        init(_ path: String, _ operation: Int32) throws(OffswitchError) {
            let fd = try systemCall("open(\(path))") { open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
            while flock(fd, operation) != 0 {
                if errno == EINTR { continue }
                let error = errno
                close(fd)
                throw OffswitchError.system("flock(\(path))", errno: error)
            }
            self.fd = fd
        }
        deinit { close(fd) }
    }

    func storeLock(exclusive: Bool) throws(OffswitchError) -> Lock {
        try ensure()
        return try Lock(root + "/store.lock", exclusive ? LOCK_EX : LOCK_SH)
    }

    /// A fresh directory under tmp/, named after this process so that a dead one's is recognised.
    func workDirectory(_ what: String) throws(OffswitchError) -> String {
        let path = "\(temporary)/\(getpid())-\(what)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        try systemCall("mkdir(\(path))") { mkdir(path, 0o700) }
        return path
    }

    /// A new file in the store's work directory (an upload, before it is imported), open for
    /// writing; the caller removes it.
    public func stagingFile(_ what: String) throws(OffswitchError) -> (path: String, fd: Int32) {
        try ensure()
        let path = "\(temporary)/\(getpid())-\(what)-\(String(UInt64.random(in: 0...UInt64.max), radix: 16))"
        let fd = try systemCall("open(\(path))") { open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        return (path, fd)
    }

    /// What the store holds: its layers' unpacked bytes (as their unpacking counted them) and its
    /// blobs' sizes. What a quota is measured against.
    public func usedBytes() -> Int64 {
        var total: Int64 = 0
        for name in listDirectory(layers) where name.hasSuffix(".json") {
            if let meta = readSmallBytes("\(layers)/\(name)").flatMap({ try? OCI.decode(LayerMeta.self, $0, what: name) }) { total += meta.bytes }
        }
        for name in listDirectory(blobs) {
            var info = stat()
            if lstat("\(blobs)/\(name)", &info) == 0 { total += Int64(info.st_size) }
        }
        return total
    }

    // MARK: records

    public func list() -> [ImageRecord] {
        listDirectory(images).filter { $0.hasSuffix(".json") }.compactMap { name in
            readSmallBytes(images + "/" + name, limit: 16 << 20).flatMap { try? OCI.decode(ImageRecord.self, $0, what: name) }
                .flatMap(Self.valid).flatMap { $0.hex + ".json" == name ? $0 : nil }
        }.sorted { $0.imported > $1.imported }
    }

    func record(hex: String) -> ImageRecord? {
        readSmallBytes("\(images)/\(hex).json", limit: 16 << 20).flatMap { try? OCI.decode(ImageRecord.self, $0, what: hex) }
            .flatMap(Self.valid)
    }

    /// A record whose id and layers are digests, and whose file is named by its id: the store
    /// makes every path from these, so a record edited by hand cannot name another path.
    static func valid(_ record: ImageRecord) -> ImageRecord? {
        guard (try? OCI.hexOfDigest(record.id, what: "record")) != nil,
              record.layers.allSatisfy({ (try? OCI.hexOfDigest($0.diff_id, what: "record")) != nil }),
              record.manifest.map({ (try? OCI.hexOfDigest($0, what: "record")) != nil }) ?? true else { return nil }
        return record
    }

    /// An image by reference (`alpine:3`, normalised as Docker does), by id (`sha256:HEX`) or by
    /// an unambiguous prefix of its hex id of at least 12 digits.
    public func resolve(_ text: String) throws(OffswitchError) -> ImageRecord {
        let all = list()
        if text.hasPrefix("sha256:") || (text.utf8.count >= 12 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) {
            let prefix = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
            let matches = all.filter { $0.hex.hasPrefix(prefix) }
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 { throw OffswitchError(.invalidArgument, "image \(text): names \(matches.count) images; give more of the id") }
            if text.hasPrefix("sha256:") { throw OffswitchError(.notFound, "image \(text): not in the \(source) \(root)") }
        }
        let reference = try ImageReference(parsing: text).description
        guard let found = all.first(where: { $0.references.contains(reference) }) else {
            throw OffswitchError(.notFound, "image \(text) (\(reference)): not in the \(source) \(root); import it with `offswitch image import`")
        }
        return found
    }

    /// Writes `record`, taking its references from every other image (a name names one image).
    func save(_ record: ImageRecord) throws(OffswitchError) {
        let lock = try Lock(root + "/images.lock", LOCK_EX)
        defer { withExtendedLifetime(lock) {} }
        var merged = record
        if let existing = self.record(hex: record.hex) {
            merged.references = Array(Set(existing.references).union(record.references)).sorted()
            merged.imported = existing.imported
        }
        for var other in list() where other.id != record.id && !Set(other.references).isDisjoint(with: merged.references) {
            other.references.removeAll { merged.references.contains($0) }
            try write(other)
        }
        try write(merged)
    }

    private func write(_ record: ImageRecord) throws(OffswitchError) {
        let target = "\(images)/\(record.hex).json"
        let staged = "\(temporary)/\(getpid())-record-\(record.hex)"
        try writeWholeFile(record.json, to: staged)
        try systemCall("rename(\(staged), \(target))") { rename(staged, target) }
    }

    // MARK: removal

    public enum Removal: Sendable, Equatable {
        /// The reference was one of several names: only the name went.
        case untagged(String)
        /// The image's record went; its layers stay until `prune`.
        case deleted(ImageRecord)
    }

    /// Removes a name, or the image when it is named by id or by its last name. An image a
    /// sandbox uses is never removed: its lock is held shared for the sandbox's life.
    public func remove(_ text: String) throws(OffswitchError) -> Removal {
        try ensure()
        let record = try resolve(text)
        let byName = !(text.hasPrefix("sha256:") || record.hex.hasPrefix(text))
        if byName, record.references.count > 1, let reference = try? ImageReference(parsing: text).description {
            var rest = record
            rest.references.removeAll { $0 == reference }
            try write(rest)
            return .untagged(reference)
        }
        let lockPath = "\(images)/\(record.hex).lock"
        let fd = try systemCall("open(\(lockPath))") { open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            throw OffswitchError(.imageInUse, "image \(record.references.first ?? record.id): used by a sandbox; destroy it first")
        }
        try systemCall("unlink(\(images)/\(record.hex).json)") { unlink("\(images)/\(record.hex).json") }
        return .deleted(record)
    }

    public struct PruneResult: Sendable, Equatable {
        public var layers: Int
        public var blobs: Int
        public var bytes: Int64
        /// What could not be removed (kept, with its record of what it is, for the next prune).
        public var failed: [String] = []
    }

    /// Removes layers and blobs no image references, and leftover work. Waits for imports in
    /// progress (they hold the store lock shared), so nothing they are about to name goes.
    public func prune() throws(OffswitchError) -> PruneResult {
        let lock = try storeLock(exclusive: true)
        defer { withExtendedLifetime(lock) {} }
        let records = list()
        let keptLayers = Set(records.flatMap { $0.layers.map { String($0.diff_id.dropFirst(7)) } })
        let keptBlobs = Set(records.flatMap { [$0.manifest, $0.id].compactMap { $0.map { String($0.dropFirst(7)) } } })
        var result = PruneResult(layers: 0, blobs: 0, bytes: 0)
        for name in listDirectory(layers) where !name.hasSuffix(".json") && !keptLayers.contains(name) {
            if let meta = readSmallBytes("\(layers)/\(name).json").flatMap({ try? OCI.decode(LayerMeta.self, $0, what: name) }) { result.bytes += meta.bytes }
            removeTree("\(layers)/\(name)")
            if access("\(layers)/\(name)", F_OK) == 0 {
                result.failed.append("\(layers)/\(name)")
                continue
            }
            unlink("\(layers)/\(name).json")
            unlink("\(locks)/\(name).lock")
            result.layers += 1
        }
        for name in listDirectory(layers) where name.hasSuffix(".json") && !keptLayers.contains(String(name.dropLast(5)))
            && access("\(layers)/\(name.dropLast(5))", F_OK) != 0 {
            unlink("\(layers)/\(name)")
        }
        for name in listDirectory(blobs) where !keptBlobs.contains(name) {
            var info = stat()
            if lstat("\(blobs)/\(name)", &info) == 0 { result.bytes += Int64(info.st_size) }
            unlink("\(blobs)/\(name)")
            result.blobs += 1
        }
        for name in listDirectory(images) where name.hasSuffix(".lock") && !records.contains(where: { "\($0.hex).lock" == name }) {
            unlink("\(images)/\(name)")
        }
        for name in listDirectory(temporary) {
            removeTree("\(temporary)/\(name)")
            if access("\(temporary)/\(name)", F_OK) == 0 { result.failed.append("\(temporary)/\(name)") }
        }
        return result
    }

    // MARK: use by a sandbox

    /// An image held for a sandbox: its lower directories (top layer first, as overlayfs takes
    /// them) and its defaults. The image cannot be removed while this lives.
    public final class Use: Sendable {
        public let record: ImageRecord
        public let lowers: [String]
        /// The image's lock, held shared; nil once released.
        private let lock: Mutex<Lock?>

        init(record: ImageRecord, lowers: [String], lock: Lock) {
            self.record = record
            self.lowers = lowers
            self.lock = Mutex(lock)
        }

        /// Lets the image be removed: the sandbox's mounts are gone. Idempotent.
        public func release() { lock.withLock { $0 = nil } }
    }

    public func use(_ text: String) throws(OffswitchError) -> Use {
        try ensure()
        let found = try resolve(text)
        let lock = try Lock("\(images)/\(found.hex).lock", LOCK_SH)
        // Removed between resolving and locking: the record is gone.
        guard let record = record(hex: found.hex) else {
            throw OffswitchError(.notFound, "image \(text): removed while being opened")
        }
        var lowers: [String] = []
        for layer in record.layers.reversed() {
            let directory = try layerDirectory(layer.diff_id)
            var info = stat()
            guard lstat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw OffswitchError(.notFound, "image \(text): layer \(layer.diff_id) is missing from \(layers); import the image again")
            }
            lowers.append(directory)
        }
        return Use(record: record, lowers: lowers, lock: lock)
    }
}

/// `layers/sha256/HEX.json`: what unpacking a layer found.
struct LayerMeta: Codable, Sendable {
    var diff_id: String
    var digest: String?
    var entries: Int
    var bytes: Int64
    var unpacked: String
}
