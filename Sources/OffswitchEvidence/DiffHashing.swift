import Glibc
import OffswitchCore

/// The bounds of one diff's hashing: the agent sizes the upper layer's files (`truncate -s 1P`
/// makes a file of a petabyte in no space at all), the host pays for hashing them, and destroy
/// waits for it. A file is hashed only within all three bounds; what is not is named in the diff.
public struct DiffLimits: Sendable, Equatable {
    /// A file larger than this (its apparent size) is not hashed.
    public var bytesPerFile: Int64
    /// Bytes hashed in all, for one diff (a snapshot, or destroy's diff).
    public var bytesPerDiff: Int64
    /// How long the whole diff (walk and hashes) may take; past it nothing more is hashed or walked.
    public var deadlineNanoseconds: UInt64

    public init(bytesPerFile: Int64, bytesPerDiff: Int64, deadlineNanoseconds: UInt64) {
        self.bytesPerFile = bytesPerFile
        self.bytesPerDiff = bytesPerDiff
        self.deadlineNanoseconds = deadlineNanoseconds
    }

    /// 256 MiB a file, 1 GiB a diff, 10 seconds (docs/events.md, docs/security.md).
    public static let standard = DiffLimits(bytesPerFile: 256 << 20, bytesPerDiff: 1 << 30, deadlineNanoseconds: 10_000_000_000)
}

/// Hashes the files of one diff within its `DiffLimits`. Only a file's allocated data is read
/// (SEEK_DATA/SEEK_HOLE): its holes are hashed as the zeros they read as without being read, so
/// `sha256` stays the SHA-256 of the content, comparable between layers, and a file with holes is
/// also reported with the bytes it really holds (`allocated`). Every byte hashed, data or hole,
/// counts against the bounds. Not Sendable: one diff, one thread.
final class DiffHasher {
    /// Why a file has no hash (the `unhashed_before` / `unhashed_after` values of docs/events.md).
    enum Skip: String {
        case fileLimit = "over_file_limit"
        case diffLimit = "over_diff_limit"
        case deadline
        case unreadable
    }

    /// A file's hash, or why there is none; `allocated` when the file has holes.
    struct Outcome {
        var sha256: String?
        var skipped: Skip?
        var allocated: Int64?
    }

    let limits: DiffLimits
    private let deadline: UInt64
    private(set) var hashedBytes: Int64 = 0
    private(set) var unhashed = 0
    /// Set when the deadline stopped the walk.
    private(set) var stoppedByDeadline = false
    /// What a hole is hashed as, a MiB at a time.
    private lazy var zeros = [UInt8](repeating: 0, count: 1 << 20)

    init(limits: DiffLimits) {
        self.limits = limits
        deadline = monotonicNanoseconds() &+ limits.deadlineNanoseconds
    }

    /// Whether the deadline has passed (and, from the first time it has, that the diff is incomplete).
    var isPastDeadline: Bool {
        if !stoppedByDeadline && monotonicNanoseconds() >= deadline { stoppedByDeadline = true }
        return stoppedByDeadline
    }

    /// The digest of the regular file at `path` (never followed if a symlink), within the bounds.
    func hash(_ path: String) -> Outcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return skip(.unreadable) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return skip(.unreadable) }
        let size = Int64(info.st_size)
        let extents = Self.dataExtents(fd, size: size)
        let allocated = extents.map { $0.reduce(0) { $0 + $1.length } }
        let holes = allocated.map { $0 < size } ?? false
        var outcome = Outcome(sha256: nil, skipped: nil, allocated: holes ? allocated : nil)
        if isPastDeadline { outcome.skipped = .deadline }
        else if size > limits.bytesPerFile { outcome.skipped = .fileLimit }
        else if size > limits.bytesPerDiff - hashedBytes { outcome.skipped = .diffLimit }
        if outcome.skipped != nil {
            unhashed += 1
            return outcome
        }
        var hasher = SHA256()
        var position: Int64 = 0
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        // Without SEEK_DATA (a filesystem that lacks it), the file is one extent.
        for extent in extents ?? [(0, size)] {
            guard feedZeros(extent.offset - position, into: &hasher),
                  feedData(fd, from: extent.offset, length: extent.length, into: &hasher, chunk: &chunk) else {
                unhashed += 1
                return Outcome(sha256: nil, skipped: isPastDeadline ? .deadline : .unreadable, allocated: outcome.allocated)
            }
            position = extent.offset + extent.length
        }
        guard feedZeros(size - position, into: &hasher) else {
            unhashed += 1
            return Outcome(sha256: nil, skipped: .deadline, allocated: outcome.allocated)
        }
        outcome.sha256 = hasher.finish()
        return outcome
    }

    private func skip(_ reason: Skip) -> Outcome {
        unhashed += 1
        return Outcome(sha256: nil, skipped: reason, allocated: nil)
    }

    /// Hashes `count` zero bytes, a MiB at a time, checking the deadline between.
    private func feedZeros(_ count: Int64, into hasher: inout SHA256) -> Bool {
        var left = count
        while left > 0 {
            if isPastDeadline { return false }
            let n = Int(min(left, Int64(zeros.count)))
            zeros.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
            hashedBytes += Int64(n)
            left -= Int64(n)
        }
        return true
    }

    /// Hashes `length` bytes of `fd` from `offset`; a file that ends early is hashed as it is.
    private func feedData(_ fd: Int32, from offset: Int64, length: Int64, into hasher: inout SHA256, chunk: inout [UInt8]) -> Bool {
        var position = offset
        let end = offset + length
        while position < end {
            if isPastDeadline { return false }
            let want = Int(min(end - position, Int64(chunk.count)))
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(position)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return false }
            if n == 0 { break }
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
            hashedBytes += Int64(n)
            position += Int64(n)
        }
        return true
    }

    /// Linux's lseek whences for sparse files (not exported by Glibc's module).
    private static let seekData: Int32 = 3, seekHole: Int32 = 4

    /// The file's data extents (offset, length), in order; nil when the filesystem cannot say.
    /// A file's extent count is bounded by its allocated blocks, which its filesystem bounds.
    static func dataExtents(_ fd: Int32, size: Int64) -> [(offset: Int64, length: Int64)]? {
        var extents: [(offset: Int64, length: Int64)] = []
        var position: Int64 = 0
        while position < size {
            let data = Int64(lseek(fd, off_t(position), seekData))
            if data < 0 {
                if errno == ENXIO { break }  // no data after `position`: the rest is a hole
                return nil
            }
            let hole = Int64(lseek(fd, off_t(data), seekHole))
            guard hole > data else { return nil }
            extents.append((data, min(hole, size) - data))
            position = hole
        }
        return extents
    }
}
