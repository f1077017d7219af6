import Glibc
public import Logging
public import OffswitchCore
import OffswitchSandbox
import Synchronization

/// How many finished trial directories offswitchd keeps, and for how long (`--keep-trials`,
/// `--trial-retention`; docs/daemon.md). A running trial's directory is never removed.
public struct TrialRetention: Sendable, Equatable {
    /// Finished trials kept at most: beyond it the oldest go.
    public var keep: Int
    /// Finished trials older than this go; nil keeps them whatever their age.
    public var maxAgeSeconds: Int?

    public init(keep: Int, maxAgeSeconds: Int?) {
        self.keep = keep
        self.maxAgeSeconds = maxAgeSeconds
    }

    /// docs/daemon.md's defaults: 1000 trials, 7 days.
    public static let standard = TrialRetention(keep: 1000, maxAgeSeconds: 7 * 86400)
    /// Nothing removed (a registry made outside a daemon, as the OpenAPI test does).
    public static let forever = TrialRetention(keep: .max, maxAgeSeconds: nil)

    /// `--trial-retention`: a count of seconds, minutes, hours or days (`90s`, `30m`, `12h`, `7d`),
    /// or `forever`. The error names the option and the value.
    public static func parseAge(_ text: String) throws(OffswitchError) -> Int? {
        if text == "forever" { return nil }
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count > 0,
              count <= Int.max / unit else {
            throw OffswitchError(.invalidArgument, "--trial-retention \(text): expected a count and a unit (90s, 30m, 12h, 7d) or forever")
        }
        return count * unit
    }

    /// A finished trial directory: its id and when it finished (verdict.json's mtime, else the
    /// directory's, for a trial a crashed daemon left unfinished), in nanoseconds since the epoch.
    struct Finished: Sendable, Equatable {
        var id: String
        var finishedNanoseconds: Int
    }

    enum Reason: String, Sendable {
        /// Older than `--trial-retention`.
        case age
        /// Beyond `--keep-trials`, oldest first.
        case count
    }

    /// Which of `finished` go at `now` (nanoseconds): every one older than the age bound, then
    /// the oldest of the rest beyond `keep`. Oldest first; ties by id.
    func select(_ finished: [Finished], nowNanoseconds now: Int) -> [(Finished, Reason)] {
        let ordered = finished.sorted { ($0.finishedNanoseconds, $0.id) < ($1.finishedNanoseconds, $1.id) }
        var going: [(Finished, Reason)] = []
        var kept: [Finished] = []
        for trial in ordered {
            if let maxAgeSeconds, now - trial.finishedNanoseconds > maxAgeSeconds * 1_000_000_000 {
                going.append((trial, .age))
            } else {
                kept.append(trial)
            }
        }
        for trial in kept.prefix(max(0, kept.count - keep)) { going.append((trial, .count)) }
        return going
    }
}

/// The daemon's trial directories, `STATE/trials/ID`: which trials are running, and the sweep
/// that applies the `TrialRetention` to the finished ones (at start, after each trial, and every
/// minute), logging each removal and counting it for /metrics.
public final class TrialDirectories: Sendable {
    public let directory: String
    public let retention: TrialRetention
    private let logger: Logger?
    private let running = Mutex(Set<String>())
    /// One sweep at a time.
    private let sweeping = Mutex(())
    private let removed = Mutex([TrialRetention.Reason: Int]())

    public init(directory: String, retention: TrialRetention, logger: Logger? = nil) {
        self.directory = directory
        self.retention = retention
        self.logger = logger
    }

    /// Trial `id` is running: call it before its directory is made. Until `ended`, no sweep
    /// removes the directory.
    func started(_ id: String) { _ = running.withLock { $0.insert(id) } }

    /// Trial `id` has finished (judged, or given up): its directory may now be swept.
    func ended(_ id: String) { _ = running.withLock { $0.remove(id) } }

    /// Directories removed since the start, by reason.
    func removedCount(_ reason: TrialRetention.Reason) -> Int { removed.withLock { $0[reason, default: 0] } }

    /// One removed directory.
    struct Removal: Sendable, Equatable {
        var id: String
        var reason: TrialRetention.Reason
    }

    /// Removes the finished directories the retention lets go, oldest first, and logs them. A
    /// directory is finished when no trial of this daemon is running in it; names that are not
    /// trial ids, and anything not a directory, are left alone.
    @discardableResult
    func sweep(nowNanoseconds now: Int = Int(unixNanoseconds())) -> [Removal] {
        sweeping.withLock { _ in
            // Listed before the running set is read: a trial is marked running before its
            // directory exists, so one listed here and not running has finished.
            let names = listDirectory(directory).filter(TrialRoutes.isID)
            let active = running.withLock { $0 }
            var finished: [TrialRetention.Finished] = []
            for id in names where !active.contains(id) {
                let path = directory + "/" + id
                // Through Core's helpers: here `struct stat` would resolve to NIO's copy (release builds).
                guard let mode = try? fileMode(path, followLinks: false), mode & UInt32(S_IFMT) == UInt32(S_IFDIR),
                      let stamp = fileModified(path + "/verdict.json") ?? fileModified(path) else { continue }
                finished.append(.init(id: id, finishedNanoseconds: stamp))
            }
            var removals: [Removal] = []
            for (trial, reason) in retention.select(finished, nowNanoseconds: now) {
                let path = directory + "/" + trial.id
                removeTree(path)
                guard access(path, F_OK) != 0 else {
                    logger?.warning("could not remove a trial directory", metadata: ["trial": "\(trial.id)", "directory": "\(path)"])
                    continue
                }
                removals.append(Removal(id: trial.id, reason: reason))
            }
            guard !removals.isEmpty else { return removals }
            removed.withLock { counts in for removal in removals { counts[removal.reason, default: 0] += 1 } }
            logger?.notice("removed finished trial directories", metadata: [
                "trials": "\(removals.map { "\($0.id) (\($0.reason.rawValue))" }.joined(separator: ", "))",
                "directory": "\(directory)", "keep_trials": "\(retention.keep)",
                "trial_retention": "\(retention.maxAgeSeconds.map { "\($0)s" } ?? "forever")",
            ])
            return removals
        }
    }

    /// `sweep` on a thread of its own: it stats and removes files.
    func sweepInBackground() async {
        _ = try? await BlockingWork.run { () throws(OffswitchError) in self.sweep() }
    }
}
