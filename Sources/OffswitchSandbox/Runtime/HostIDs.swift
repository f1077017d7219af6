import Glibc
import Synchronization
public import OffswitchCore

/// The host ids Offswitch reserves for sandboxes, and the claim of one slot of them per sandbox.
///
/// Every sandbox has a user namespace of its own: uid and gid 0..65535 inside are one slot of
/// 65,536 consecutive host ids, claimed for the sandbox's life and used by no other sandbox and
/// no host account. So no two sandboxes share the per-user kernel counters (inotify instances,
/// message queue bytes, queued signals, processes, pipe quota) and no host user can signal,
/// trace or read into a sandbox's processes (docs/security.md, "Host ids").
///
/// The range is `OFFSWITCH_HOST_IDS=FIRST:SLOTS` (default 1073741824:4096, host ids 2^30 up to
/// 2^30 + 2^28); FIRST is a multiple of 65,536, so every process on the host that uses a range
/// (a daemon, `offswitch sandbox run`, tests) cuts it into the same slots and locks them by name.
public struct HostIDRange: Sendable, Equatable, CustomStringConvertible {
    public static let slotSize: UInt32 = 65_536
    public static let environmentVariable = "OFFSWITCH_HOST_IDS"
    public static let standard = HostIDRange(first: 1 << 30, slots: 4096)

    public var first: UInt32
    public var slots: UInt32
    /// Past the last id (exclusive).
    public var end: UInt64 { UInt64(first) + UInt64(slots) * UInt64(Self.slotSize) }
    public var description: String { "\(first)-\(end - 1)" }

    public init(first: UInt32, slots: UInt32) {
        self.first = first
        self.slots = slots
    }

    /// `FIRST:SLOTS`. Ids stay below 2^31: Docker's `ping_group_range` (0 to 2^31-1) must
    /// cover every sandbox's groups, and some tools read ids as signed numbers.
    public init(parsing text: String, source: String = environmentVariable) throws(OffswitchError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let first = UInt32(parts[0]), let slots = UInt32(parts[1]) else {
            throw OffswitchError(.invalidArgument, "\(source)=\(text): expected FIRST:SLOTS (such as 1073741824:4096)")
        }
        guard first % Self.slotSize == 0, first >= Self.slotSize else {
            throw OffswitchError(.invalidArgument, "\(source)=\(text): FIRST must be a positive multiple of 65536")
        }
        let range = HostIDRange(first: first, slots: slots)
        guard slots >= 1, range.end <= 1 << 31 else {
            throw OffswitchError(.invalidArgument, "\(source)=\(text): SLOTS must be at least 1, and the last id below 2147483648")
        }
        self = range
    }

    /// `OFFSWITCH_HOST_IDS`, or the standard range.
    public static func configured() throws(OffswitchError) -> HostIDRange {
        guard let value = getenv(environmentVariable) else { return .standard }
        return try HostIDRange(parsing: String(cString: value))
    }

    /// Host accounts and delegated ranges inside the range, one line each
    /// (`/etc/subuid:3: alice:1073741824:65536`), and files present but unreadable; empty when the
    /// range is free.
    /// `files` maps a file to whether its lines are ranges (`name:first:count`) or accounts.
    public func conflicts(in files: [(path: String, ranges: Bool)] = HostIDRange.accountFiles) -> [String] {
        var found: [String] = []
        for file in files {
            guard let text = readSmallFile(file.path, limit: 16 << 20) else {
                // Absent is fine (no subordinate ranges); present and unreadable is not checked, so it is said.
                if access(file.path, F_OK) == 0 { found.append("\(file.path): cannot be read (or is over 16 MiB), so it was not checked") }
                continue
            }
            for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                let overlaps: Bool
                if file.ranges {
                    guard fields.count >= 3, let start = UInt64(fields[1]), let count = UInt64(fields[2]) else { continue }
                    overlaps = start < end && start + count > UInt64(first)
                } else {
                    guard fields.count >= 3, let id = UInt64(fields[2]) else { continue }
                    overlaps = id >= UInt64(first) && id < end
                }
                if overlaps { found.append("\(file.path):\(index + 1): \(line)") }
            }
        }
        return found
    }

    public static let accountFiles: [(path: String, ranges: Bool)] = [
        ("/etc/passwd", false), ("/etc/group", false), ("/etc/subuid", true), ("/etc/subgid", true),
    ]

    /// The configured range, checked once per process against the host's accounts.
    static let checked: Result<HostIDRange, OffswitchError> = {
        do throws(OffswitchError) {
            let range = try configured()
            let conflicts = range.conflicts()
            guard conflicts.isEmpty else {
                throw OffswitchError(.setupFailed, "host ids \(range) (\(environmentVariable)) are not free for sandboxes: "
                    + conflicts.joined(separator: "; ") + "; set \(environmentVariable)=FIRST:SLOTS to a range no account or subordinate range uses")
            }
            return .success(range)
        } catch {
            return .failure(error)
        }
    }()
}

/// One slot of host ids, held by a sandbox from creation to the end of its destroy.
///
/// The claim is a host-wide lock file per slot (`/run/offswitch-ids/FIRST`), so that daemons with
/// different state directories and embedded runs never hand out the same ids. The lock goes with
/// its holder, even one killed with SIGKILL; its sandbox's PID 1 is named in the file, and a slot
/// whose last PID 1 still lives (its owner died without destroying it) is not handed out again.
final class HostIDSlot: Sendable {
    static let directory = "/run/offswitch-ids"

    let mapping: UserNamespaceMapping
    private let lock: Int32

    private init(mapping: UserNamespaceMapping, lock: Int32) {
        self.mapping = mapping
        self.lock = lock
    }

    /// Where the next search starts: slots are handed out in turn, not the lowest free one again,
    /// so ids a destroyed sandbox used rest as long as the range allows.
    private static let cursor = Mutex<UInt32>(UInt32(truncatingIfNeeded: getpid()) &* 2_654_435_761)

    static func claim() throws(OffswitchError) -> HostIDSlot {
        let range = try HostIDRange.checked.get()
        try makeDirectory(directory, mode: 0o700)
        let start = cursor.withLock { value -> UInt32 in
            defer { value = value &+ 1 }
            return value % range.slots
        }
        for step in 0..<range.slots {
            let index = (start + step) % range.slots
            let first = range.first + index * HostIDRange.slotSize
            let path = "\(directory)/\(first)"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw OffswitchError.system("open(\(path))", errno: errno) }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                continue  // another sandbox holds it
            }
            if Self.lastOwnerLives(fd) {
                close(fd)
                continue
            }
            cursor.withLock { $0 = index &+ 1 }
            return HostIDSlot(mapping: UserNamespaceMapping(hostUID: first, hostGID: first, size: HostIDRange.slotSize), lock: fd)
        }
        throw OffswitchError(.capacityReached, "host ids \(range) (\(HostIDRange.environmentVariable)): all \(range.slots) slots of 65536 ids are in use")
    }

    /// Names the sandbox's PID 1 in the lock file (`PID STAMP`), for `lastOwnerLives`.
    func record(initPID: pid_t) {
        let stamp = (try? fileStamp("/proc/\(initPID)")) ?? 0
        _ = ftruncate(lock, 0)
        _ = pwrite(lock, "\(initPID) \(stamp)\n", "\(initPID) \(stamp)\n".utf8.count, 0)
    }

    /// Gives the ids back: every process that used them is gone.
    func release() {
        _ = ftruncate(lock, 0)
        close(lock)
    }

    private static func lastOwnerLives(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = pread(fd, &buffer, buffer.count, 0)
        guard count > 0 else { return false }
        let fields = String(decoding: buffer[..<count], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let pid = pid_t(fields[0]), let stamp = Int(fields[1]), pid > 0 else { return false }
        return (try? fileStamp("/proc/\(pid)")) == stamp
    }
}
