import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchEvidence
public import OffswitchSandbox

/// A plain sandbox's judgement, as the daemon makes it (`POST /v1/sandboxes/{id}/baseline` and
/// `/judgement`, docs/daemon.md): the protected paths' state logged as `protected_state` when the
/// harness hands the sandbox to the agent and again at the end, the events judged (`Judge`), and
/// the evidence kept in a directory of its own (events.ndjson, judgement.json) that outlives the
/// sandbox.
public enum Protection {
    /// The harness hands the sandbox to the agent: the final diff's "before" (`baseline`) and the
    /// protected paths' state (`protected_state`, when `baseline`). Returns that event's seq and
    /// the state.
    @discardableResult
    public static func baseline(_ sandbox: Sandbox, protect: [String]) throws(OffswitchError) -> (seq: UInt64, state: JSONValue) {
        sandbox.markBaseline()
        return logState(sandbox, when: "baseline", protect: protect)
    }

    /// Logs the protected paths' state (`protected_state`); a sandbox whose root can no longer be
    /// read (it has shut down) says why instead (`state` null, `unreadable`).
    @discardableResult
    public static func logState(_ sandbox: Sandbox, when: String, protect: [String]) -> (seq: UInt64, state: JSONValue) {
        var fields: [(String, JSONValue)] = [("when", .string(when)), ("protect", .array(protect.map { .string($0) }))]
        do throws(OffswitchError) {
            let root = try sandbox.root()
            let uidBase = Int64(sandbox.spec.userNamespace?.hostUID ?? 0)
            var cut = false
            fields.append(("state", .object(describe(protect, in: root, uidBase: uidBase, cut: &cut))))
            if cut { fields.append(("entries_cut", .bool(true))) }
        } catch {
            fields.append(("state", .null))
            fields.append(("unreadable", .string(error.message)))
        }
        return (sandbox.events.append("protected_state", fields), fields.first { $0.0 == "state" }?.1 ?? .null)
    }

    /// Entries under protected directories described beside them, at most this many in all.
    static let entryLimit = 1024
    /// An entry's content is hashed up to this size (a protected path's own up to `FileState.hashLimit`).
    static let entryHashLimit: Int64 = 1 << 20

    /// Each protected path's state, then, for a directory, each entry under it (breadth first,
    /// not through symlinks, `entryLimit` in all; `cut` says when there were more).
    static func describe(_ protect: [String], in root: SandboxRoot, uidBase: Int64, cut: inout Bool) -> [(String, JSONValue)] {
        var states: [(String, JSONValue)] = protect.map { ($0, FileState.describe($0, in: root, uidBase: uidBase)) }
        var named = Set(protect)
        var directories = states.filter { $0.1["type"]?.string == "directory" }.map(\.0)
        var entries = 0
        while !directories.isEmpty {
            let directory = directories.removeFirst()
            guard let fd = root.openIfPresent(directory, flags: O_RDONLY | O_DIRECTORY | O_NONBLOCK) else { continue }
            let names = listDirectory(descriptor: fd).sorted()
            close(fd)
            for name in names {
                let path = (directory == "/" ? "" : directory) + "/" + name
                guard named.insert(path).inserted else { continue }
                guard entries < entryLimit else {
                    cut = true
                    return states
                }
                entries += 1
                let state = FileState.describe(path, in: root, uidBase: uidBase, hashLimit: entryHashLimit)
                states.append((path, state))
                if state["type"]?.string == "directory" { directories.append(path) }
            }
        }
        return states
    }

    /// Judges the sandbox's events so far and writes `directory` (events.ndjson as they stand,
    /// judgement.json). The sandbox goes on running.
    public static func judge(_ sandbox: Sandbox, protect: [String], pid1: Bool, directory: String) throws(OffswitchError) -> Judgement {
        // File events still queued are logged first: the end state comes after every act.
        sandbox.flushFileEvents()
        logState(sandbox, when: "end", protect: protect)
        guard let log = FileManager.default.contents(atPath: sandbox.eventLogPath) else {
            throw OffswitchError(.system, "judgement: cannot read \(sandbox.eventLogPath)", errno: errno)
        }
        let events = try TrialFiles.parseEvents(Array(log), file: sandbox.eventLogPath)
        var judgement = Judge.judge(events: events, protect: protect, pid1: pid1)
        judgement.sandbox = sandbox.id
        guard mkdir(directory, 0o700) == 0 else { throw OffswitchError.system("mkdir(\(directory))", errno: errno) }
        guard FileManager.default.createFile(atPath: directory + "/events.ndjson", contents: log) else {
            throw OffswitchError(.system, "judgement: cannot write \(directory)/events.ndjson", errno: errno)
        }
        try TrialFiles.write(judgement.json.pretty, to: directory + "/judgement.json")
        return judgement
    }
}

extension Judge {
    /// A kept judgement's directory judged again (`offswitch judge DIR`): its events.ndjson against
    /// judgement.json's `protect` and `pid1`, or against the ones given.
    public static func judge(directory: String, protect: [String]? = nil, pid1: Bool? = nil) throws(OffswitchError) -> Judgement {
        let events = try TrialFiles.readEvents(directory + "/events.ndjson")
        let kept: JSONValue?
        if let data = FileManager.default.contents(atPath: directory + "/judgement.json") {
            do {
                kept = try JSONDecoder().decode(JSONValue.self, from: data)
            } catch {
                throw OffswitchError(.invalidArgument, "\(directory)/judgement.json: not valid JSON")
            }
        } else {
            kept = nil
        }
        guard let paths = protect ?? kept?["protect"]?.array?.compactMap(\.string) else {
            throw OffswitchError(.invalidArgument, "\(directory) has no judgement.json: give the paths with --protect", errno: ENOENT)
        }
        var judgement = judge(events: events, protect: try Judgement.checkedPaths(paths, field: "--protect"),
                              pid1: pid1 ?? kept?["pid1"]?.bool ?? true)
        judgement.sandbox = kept?["sandbox"]?.string ?? events.first { $0.kind == "sandbox_created" }?["sandbox"]?.string
        return judgement
    }
}
