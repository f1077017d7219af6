import COffswitch
import Glibc
public import OffswitchCore

/// What the agent changed, read from an overlay's upper directory after the fact: every path
/// created, modified, deleted (whiteouts and opaque directories), re-moded or re-owned, with size
/// and SHA-256 before (in the lower layers) and after. Paths are as the agent sees them. Hashing
/// stays within `DiffLimits` (DiffHashing.swift); what it skipped is named on each change.
public struct UpperDiff {
    /// One overlay: its upper directory, where it is mounted inside, and its lower layers (top first).
    public struct Layer: Sendable {
        public var upper: String
        public var mountPoint: String
        public var lowers: [String]

        public init(upper: String, mountPoint: String, lowers: [String]) {
            self.upper = upper
            self.mountPoint = mountPoint
            self.lowers = lowers
        }
    }

    public var layers: [Layer]
    /// Host uid of uid 0 inside (user namespaces); upper owners are shown shifted back.
    public var uidBase: UInt32
    /// The upper layer's files when the agent was handed the sandbox (`baseline()`): a harness's
    /// `shutdown.sh` is "before" for the agent, not "created".
    public var baseline: [String: Baseline]

    public init(layers: [Layer], uidBase: UInt32 = 0, baseline: [String: Baseline] = [:]) {
        self.layers = layers
        self.uidBase = uidBase
        self.baseline = baseline
    }

    /// A path's state at the baseline.
    public struct Baseline: Sendable {
        fileprivate var facts: Facts
        fileprivate var sha256: String?
        /// Why a file has no hash (`DiffHasher.Skip`), and its allocated bytes when it has holes.
        fileprivate var unhashed: String?
        fileprivate var allocated: Int64?
        /// The content, when it is short text (`texts(of:)` shows it as the "before").
        fileprivate var text: String?

        /// A lower path that was already gone (whited out, or under an opaque directory): the
        /// harness's setup removed it, so it is no change of the agent's, and made again it is created.
        fileprivate static let absent = Baseline(facts: Facts(type: "absent", mode: 0, uid: 0, gid: 0, size: 0, device: 0))
        fileprivate var isAbsent: Bool { facts.type == "absent" }
    }

    /// What the upper layers hold now, by path inside: the "before" of a later diff.
    public func snapshot(limits: DiffLimits = .standard) -> [String: Baseline] {
        var result: [String: Baseline] = [:]
        let hasher = DiffHasher(limits: limits)
        for layer in layers {
            // Directories to read, as a list rather than a recursion: a tree's depth costs no stack.
            var pending = [""]
            while let next = pending.popLast(), !hasher.isPastDeadline { record(layer, relative: next, into: &result, pending: &pending, hasher: hasher) }
        }
        return result
    }

    private func record(_ layer: Layer, relative: String, into result: inout [String: Baseline], pending: inout [String], hasher: DiffHasher) {
        let names = listDirectory(layer.upper + relative)
        if !relative.isEmpty, isOpaque(layer.upper + relative), lower(layer, relative) != nil {
            for (name, _) in lowerEntries(layer, relative) where !names.contains(name) {
                result[inside(layer, relative + "/" + name)] = .absent
            }
        }
        for name in names {
            if hasher.isPastDeadline { return }
            let path = relative + "/" + name
            guard let facts = facts(layer.upper + path) else { continue }
            if facts.type == "char_device" && facts.device == 0 {
                if lower(layer, path) != nil { result[inside(layer, path)] = .absent }
                continue
            }
            let isFile = facts.type == "file"
            let hash = isFile ? hasher.hash(layer.upper + path) : nil
            result[inside(layer, path)] = Baseline(facts: facts, sha256: hash?.sha256, unhashed: hash?.skipped?.rawValue, allocated: hash?.allocated,
                                                   text: isFile ? Self.text(layer.upper + path, size: facts.size) : nil)
            if facts.type == "directory" { pending.append(path) }
        }
    }

    /// The changes of a diff, and how its hashing went.
    public struct Changes {
        /// One list of event fields per path, sorted by path.
        public var entries: [[(String, JSONValue)]]
        /// Bytes hashed, data and holes.
        public var hashedBytes: Int64
        /// Files left without a hash (each change names why: `unhashed_before`, `unhashed_after`).
        public var unhashed: Int
        /// false when the deadline stopped the walk, or a path was longer than the kernel resolves
        /// (PATH_MAX, in a tree deeper than about 2,000 levels): paths not reached are missing.
        public var isComplete: Bool

        /// `diff_complete`'s fields (docs/events.md).
        public var summary: [(String, JSONValue)] {
            [("changes", .int(Int64(entries.count))), ("complete", .bool(isComplete)), ("hashed_bytes", .int(hashedBytes)),
             ("unhashed", .int(Int64(unhashed)))]
        }
    }

    /// The changes as event fields, within `limits`.
    public func changes(limits: DiffLimits = .standard) -> Changes {
        let hasher = DiffHasher(limits: limits)
        var entries: [(String, [(String, JSONValue)])] = []
        var unreachable = 0
        for layer in layers {
            // Directories to walk, as a list rather than a recursion: an agent's tree of any depth
            // costs no stack.
            var pending = [""]
            while let next = pending.popLast(), !hasher.isPastDeadline {
                walk(layer, relative: next, into: &entries, pending: &pending, unreachable: &unreachable, hasher: hasher)
            }
        }
        // Baseline files the agent removed that no lower layer has (so no whiteout marks them).
        for (path, before) in baseline where !before.isAbsent && !hasher.isPastDeadline && !exists(path) {
            var fields: [(String, JSONValue)] = [("path", .string(path)), ("change", .string("deleted")), ("type", .string(before.facts.type)),
                                                 ("mode_before", .string(octal(before.facts.mode))), ("uid_before", .int(shifted(before.facts.uid)))]
            if before.facts.type == "file" {
                fields += [("size_before", .int(before.facts.size)), ("sha256_before", before.sha256.map { .string($0) } ?? .null)]
                fields += Self.hashNotes(before.unhashed, before.allocated, side: "before")
            }
            if !entries.contains(where: { $0.0 == path }) { entries.append((path, fields)) }
        }
        return Changes(entries: entries.sorted { $0.0 < $1.0 }.map(\.1), hashedBytes: hasher.hashedBytes, unhashed: hasher.unhashed,
                       isComplete: !hasher.stoppedByDeadline && unreachable == 0)
    }

    /// `unhashed_SIDE` (why a file has no hash) and `allocated_SIDE` (the bytes a file with holes holds).
    private static func hashNotes(_ unhashed: String?, _ allocated: Int64?, side: String) -> [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = []
        if let unhashed { fields.append(("unhashed_" + side, .string(unhashed))) }
        if let allocated { fields.append(("allocated_" + side, .int(allocated))) }
        return fields
    }

    /// Whether two hashes say the content differs: it does when they differ, and it may when a
    /// file was left unhashed, which counts as differing (the diff never claims what it did not check).
    private static func contentDiffers(_ before: String?, _ beforeSkipped: String?, _ after: String?, _ afterSkipped: String?) -> Bool {
        if beforeSkipped != nil || afterSkipped != nil { return true }
        return before != after
    }

    /// The before and after contents of the changed files that are short text (at most
    /// `textLimit` bytes of UTF-8 without NUL), by SHA-256, up to `budget` bytes in all: what a
    /// report shows as the file's diff. Call it where `changes()` was called, before the layers go.
    public func texts(of changes: [[(String, JSONValue)]], budget: Int = 2 << 20) -> [String: String] {
        var texts: [String: String] = [:]
        var left = budget
        func keep(_ sha: JSONValue?, _ read: () -> String?) {
            guard case .string(let sha)? = sha, texts[sha] == nil, left > 0, let text = read() else { return }
            left -= text.utf8.count
            if left >= 0 { texts[sha] = text }
        }
        for change in changes {
            let field = { (name: String) in change.first { $0.0 == name }?.1 }
            guard case .string(let path)? = field("path"),
                  let layer = layers.filter({ $0.mountPoint == "/" || path.hasPrefix($0.mountPoint + "/") })
                      .max(by: { $0.mountPoint.count < $1.mountPoint.count }) else { continue }
            let relative = layer.mountPoint == "/" ? path : String(path.dropFirst(layer.mountPoint.count))
            keep(field("sha256_after")) { facts(layer.upper + relative).flatMap { Self.text(layer.upper + relative, size: $0.size) } }
            keep(field("sha256_before")) {
                if let base = baseline[path] { return base.text }
                return lower(layer, relative).flatMap { lowerPath in facts(lowerPath).flatMap { Self.text(lowerPath, size: $0.size) } }
            }
        }
        return texts
    }

    /// Files longer than this are not kept as text.
    public static let textLimit = 64 << 10

    private static func text(_ path: String, size: Int64) -> String? {
        guard size <= Int64(textLimit), let bytes = readSmallBytes(path),
              bytes.count <= textLimit, !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Whether a path inside exists in an upper layer or (not whited out) in a lower one.
    private func exists(_ path: String) -> Bool {
        for layer in layers.sorted(by: { $0.mountPoint.count > $1.mountPoint.count }) {
            let prefix = layer.mountPoint == "/" ? "" : layer.mountPoint
            guard layer.mountPoint == "/" || path == layer.mountPoint || path.hasPrefix(prefix + "/") else { continue }
            let relative = String(path.dropFirst(prefix.count))
            if let upper = facts(layer.upper + relative) { return !(upper.type == "char_device" && upper.device == 0) }
            return false
        }
        return false
    }

    fileprivate struct Facts {
        var type: String
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var size: Int64
        var device: UInt64
    }

    private func facts(_ path: String) -> Facts? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        let format = info.st_mode & S_IFMT
        let type = format == S_IFDIR ? "directory" : format == S_IFLNK ? "symlink" : format == S_IFREG ? "file"
            : format == S_IFCHR ? "char_device" : "other"
        return Facts(type: type, mode: info.st_mode & 0o7777, uid: info.st_uid, gid: info.st_gid, size: Int64(info.st_size),
                     device: UInt64(info.st_rdev))
    }

    /// What the lowers show at `relative`, as overlayfs merges them (the top lower first): the
    /// first lower that has it, unless that is a whiteout (a character device 0:0, as an image's
    /// layers keep them), or a directory above it in a higher lower is opaque or not a directory.
    private func lower(_ layer: Layer, _ relative: String) -> String? {
        for lower in layer.lowers {
            if let found = facts(lower + relative) {
                return found.type == "char_device" && found.device == 0 ? nil : lower + relative
            }
            if hidesBelow(lower, relative) { return nil }
        }
        return nil
    }

    /// Whether `lower` hides what lowers below it have at `relative`: an ancestor of it there is
    /// opaque, or is not a directory (a whiteout, a file).
    private func hidesBelow(_ lower: String, _ relative: String) -> Bool {
        var ancestor = ""
        for component in relative.split(separator: "/").dropLast() {
            ancestor += "/" + component
            guard let found = facts(lower + ancestor) else { return false }
            if found.type != "directory" || isOpaque(lower + ancestor) { return true }
        }
        return false
    }

    /// The entries the lowers show in the directory `relative` (name and the lower path holding
    /// it), merged as overlayfs merges them: down from the top lower, a whiteout hiding the name
    /// below, an opaque directory ending the merge.
    private func lowerEntries(_ layer: Layer, _ relative: String) -> [(name: String, path: String)] {
        var entries: [(name: String, path: String)] = []
        var hidden: Set<String> = []
        for lower in layer.lowers {
            let directory = lower + relative
            guard let found = facts(directory) else {
                if hidesBelow(lower, relative + "/x") { break }
                continue
            }
            guard found.type == "directory" else { break }
            for name in listDirectory(directory) where !hidden.contains(name) {
                hidden.insert(name)
                if let entry = facts(directory + "/" + name), !(entry.type == "char_device" && entry.device == 0) {
                    entries.append((name, directory + "/" + name))
                }
            }
            if isOpaque(directory) { break }
        }
        return entries
    }

    private func inside(_ layer: Layer, _ relative: String) -> String {
        layer.mountPoint == "/" ? relative : layer.mountPoint + relative
    }

    private func shifted(_ id: UInt32) -> Int64 { Int64(id) - (id >= uidBase ? Int64(uidBase) : 0) }

    /// Paths the kernel resolves (PATH_MAX with its NUL); a longer one is counted, not walked.
    static let pathLimit = Int(PATH_MAX) - 1

    private func walk(_ layer: Layer, relative: String, into entries: inout [(String, [(String, JSONValue)])], pending: inout [String],
                      unreachable: inout Int, hasher: DiffHasher) {
        let directory = layer.upper + relative
        let names = listDirectory(directory)
        // An opaque directory hides everything below it in the lowers: those children are deleted.
        if !relative.isEmpty, isOpaque(directory), lower(layer, relative) != nil {
            for (name, lowerPath) in lowerEntries(layer, relative) where !names.contains(name) {
                let path = relative + "/" + name
                if hasher.isPastDeadline { return }
                if baseline[inside(layer, path)]?.isAbsent == true { continue }
                if let before = facts(lowerPath) {
                    entries.append((inside(layer, path), deleted(inside(layer, path), before, lowerPath, hasher: hasher)))
                }
            }
        }
        for name in names {
            if hasher.isPastDeadline { return }
            let path = relative + "/" + name
            guard (layer.upper + path).utf8.count <= Self.pathLimit else { unreachable += 1; continue }
            guard let after = facts(layer.upper + path) else { continue }
            let visible = inside(layer, path)
            let lowerPath = lower(layer, path)
            let goneAtBaseline = baseline[visible]?.isAbsent == true
            if let base = baseline[visible], !goneAtBaseline, !(after.type == "char_device" && after.device == 0) {
                // Compare with the baseline, not the lowers: the harness put this here.
                let afterOutcome = after.type == "file" ? hasher.hash(layer.upper + path) : nil
                let afterHash = afterOutcome?.sha256
                var what: [String] = []
                if base.facts.type != after.type { what.append("type") }
                if Self.contentDiffers(base.sha256, base.unhashed, afterHash, afterOutcome?.skipped?.rawValue) { what.append("content") }
                if base.facts.mode != after.mode { what.append("mode") }
                if base.facts.uid != after.uid || base.facts.gid != after.gid { what.append("owner") }
                if !what.isEmpty {
                    var fields: [(String, JSONValue)] = [
                        ("path", .string(visible)),
                        ("change", .string(what.contains("content") || what.contains("type") ? "modified" : "attributes")),
                        ("type", .string(after.type)), ("changed", .array(what.map { .string($0) })),
                        ("mode_before", .string(octal(base.facts.mode))), ("mode_after", .string(octal(after.mode))),
                        ("uid_before", .int(shifted(base.facts.uid))), ("uid_after", .int(shifted(after.uid))),
                    ]
                    if after.type == "file" || base.facts.type == "file" {
                        fields += [("size_before", .int(base.facts.size)), ("size_after", .int(after.size)),
                                   ("sha256_before", base.sha256.map { .string($0) } ?? .null), ("sha256_after", afterHash.map { .string($0) } ?? .null)]
                        fields += Self.hashNotes(base.unhashed, base.allocated, side: "before")
                            + Self.hashNotes(afterOutcome?.skipped?.rawValue, afterOutcome?.allocated, side: "after")
                    }
                    entries.append((visible, fields))
                }
                if after.type == "directory" { pending.append(path) }
                continue
            }
            // Gone at the baseline: still gone is no change, there again is created.
            let before = goneAtBaseline ? nil : lowerPath.flatMap(facts)
            if after.type == "char_device" && after.device == 0 {
                // A whiteout: deleted (when a lower had it; a baseline-only file is handled in `changes`).
                if let before, let lowerPath { entries.append((visible, deleted(visible, before, lowerPath, hasher: hasher))) }
                continue
            }
            var fields: [(String, JSONValue)] = [("path", .string(visible)), ("type", .string(after.type))]
            let afterOutcome = after.type == "file" ? hasher.hash(layer.upper + path) : nil
            let afterHash = afterOutcome?.sha256
            if let before, let lowerPath {
                let beforeOutcome = before.type == "file" ? hasher.hash(lowerPath) : nil
                let beforeHash = beforeOutcome?.sha256
                var what: [String] = []
                if before.type != after.type { what.append("type") }
                if Self.contentDiffers(beforeHash, beforeOutcome?.skipped?.rawValue, afterHash, afterOutcome?.skipped?.rawValue)
                    || (after.type == "symlink" && link(lowerPath) != link(layer.upper + path)) { what.append("content") }
                if before.mode != after.mode { what.append("mode") }
                if shifted(after.uid) != Int64(before.uid) || shifted(after.gid) != Int64(before.gid) { what.append("owner") }
                if what.isEmpty {
                    // Copied up (a directory someone wrote into, or a file opened for writing) but not changed.
                    if after.type == "directory" { pending.append(path) }
                    continue
                }
                fields.insert(("change", .string(what.contains("content") || what.contains("type") ? "modified" : "attributes")), at: 1)
                fields.append(("changed", .array(what.map { .string($0) })))
                fields += [("mode_before", .string(octal(before.mode))), ("mode_after", .string(octal(after.mode))),
                           ("uid_before", .int(Int64(before.uid))), ("uid_after", .int(shifted(after.uid)))]
                if after.type == "file" || before.type == "file" {
                    fields += [("size_before", .int(before.size)), ("size_after", .int(after.size)),
                               ("sha256_before", beforeHash.map { .string($0) } ?? .null), ("sha256_after", afterHash.map { .string($0) } ?? .null)]
                    fields += Self.hashNotes(beforeOutcome?.skipped?.rawValue, beforeOutcome?.allocated, side: "before")
                        + Self.hashNotes(afterOutcome?.skipped?.rawValue, afterOutcome?.allocated, side: "after")
                }
                if after.type == "symlink" { fields.append(("target_after", .string(link(layer.upper + path) ?? ""))) }
                entries.append((visible, fields))
                if after.type == "directory" { pending.append(path) }
            } else {
                fields.insert(("change", .string("created")), at: 1)
                fields += [("mode_after", .string(octal(after.mode))), ("uid_after", .int(shifted(after.uid)))]
                if after.type == "file" {
                    fields += [("size_after", .int(after.size)), ("sha256_after", afterHash.map { .string($0) } ?? .null)]
                    fields += Self.hashNotes(afterOutcome?.skipped?.rawValue, afterOutcome?.allocated, side: "after")
                }
                if after.type == "symlink" { fields.append(("target_after", .string(link(layer.upper + path) ?? ""))) }
                entries.append((visible, fields))
                if after.type == "directory" { pending.append(path) }
            }
        }
    }

    private func deleted(_ visible: String, _ before: Facts, _ lowerPath: String, hasher: DiffHasher) -> [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = [("path", .string(visible)), ("change", .string("deleted")), ("type", .string(before.type)),
                                             ("mode_before", .string(octal(before.mode))), ("uid_before", .int(Int64(before.uid)))]
        if before.type == "file" {
            let outcome = hasher.hash(lowerPath)
            fields += [("size_before", .int(before.size)), ("sha256_before", outcome.sha256.map { .string($0) } ?? .null)]
            fields += Self.hashNotes(outcome.skipped?.rawValue, outcome.allocated, side: "before")
        }
        return fields
    }

    private func isOpaque(_ path: String) -> Bool {
        var value = [UInt8](repeating: 0, count: 4)
        let n = ofs_lgetxattr(path, "trusted.overlay.opaque", &value, value.count)
        return n > 0 && value[0] == UInt8(ascii: "y")
    }

    private func link(_ path: String) -> String? { try? readLink(path) }

    private func octal(_ mode: UInt32) -> String { "0" + String(mode, radix: 8) }
}
