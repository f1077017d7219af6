import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchYAML
import OffswitchSandbox

/// One attempt of the escape battery, read from a YAML file in scripts/escape-suite/
/// (docs/security.md): a script run in a fresh sandbox, the host-side checks that say whether it was
/// contained, and the evidence the log must show.
public struct EscapeAttempt: Sendable {
    public var name: String
    public var category: String
    public var description: String
    public var user: SandboxUser
    public var script: String
    /// Run as root before the attempt, as the harness (`origin: harness`): what the image would
    /// hold, such as a setuid-root program left in it. Empty for none.
    public var prepare: String
    public var timeoutSeconds: Double
    /// Checks under every profile.
    public var checks: [HostCheck]
    /// Added under a profile with `no_new_privileges: true` (hardened) ...
    public var checksWithNoNewPrivileges: [HostCheck]
    /// ... and under one without it (docker, observe: Docker's default), where a setuid program works.
    public var checksWithNewPrivileges: [HostCheck]
    /// Syscall names (`mount`) or event kinds (`kind:process_exited`): the log must show one.
    public var evidence: [String]
    public var file: String

    public static let categories = ["mounts", "kernel", "runtime", "network", "privilege", "resources"]

    /// What must pass under `profile`: the checks of every profile and those of its `no_new_privileges`.
    public func checks(for profile: Profile) -> [HostCheck] {
        checks + (profile.noNewPrivileges ? checksWithNoNewPrivileges : checksWithNewPrivileges)
    }

    /// Every `*.yaml` of `directory`, sorted by name; all problems of all files in one error.
    public static func loadSuite(_ directory: String) throws(OffswitchError) -> [EscapeAttempt] {
        let names = listDirectory(directory).filter { $0.hasSuffix(".yaml") }.sorted()
        guard !names.isEmpty else { throw OffswitchError(.notFound, "\(directory): no *.yaml attempts", errno: ENOENT) }
        var attempts: [EscapeAttempt] = []
        var problems: [String] = []
        for name in names {
            do throws(OffswitchError) {
                attempts.append(try load(directory + "/" + name))
            } catch {
                problems.append(error.message)
            }
        }
        if !problems.isEmpty { throw OffswitchError(.invalidArgument, problems.joined(separator: "\n")) }
        var seen: [String: String] = [:]
        for attempt in attempts {
            if let other = seen[attempt.name] {
                throw OffswitchError(.invalidArgument, "\(attempt.file): name \(attempt.name) is also used by \(other)")
            }
            seen[attempt.name] = attempt.file
        }
        return attempts
    }

    public static func load(_ path: String) throws(OffswitchError) -> EscapeAttempt {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.notFound, "\(path): cannot be read", errno: errno)
        }
        let problems = ProblemList()
        let attempt = read(String(decoding: data, as: UTF8.self), file: path, problems: problems)
        let errors = problems.problems.filter { !$0.isWarning }
        guard let attempt, errors.isEmpty else {
            throw OffswitchError(.invalidArgument, errors.map(\.description).joined(separator: "\n"))
        }
        return attempt
    }

    private static func read(_ text: String, file: String, problems: ProblemList) -> EscapeAttempt? {
        guard let root = YAMLField.parse(text, file: file, problems: problems),
              let fields = root.mapping(allowed: ["name", "category", "description", "user", "timeout", "prepare", "script", "contained_if",
                                                   "contained_if_no_new_privileges", "contained_if_new_privileges", "evidence"],
                                        required: ["name", "category", "description", "script", "contained_if", "evidence"])
        else { return nil }
        let category = fields["category"]?.string()
        if let category, !categories.contains(category) {
            fields["category"]?.error("expected one of \(categories.joined(separator: ", ")), found \"\(category)\"")
        }
        var user = SandboxUser.agent
        if let field = fields["user"], let text = field.string() {
            switch text {
            case "user": user = .agent
            case "root": user = .root
            default: field.error("expected user or root, found \"\(text)\"")
            }
        }
        let timeout = fields["timeout"].map { $0.double() ?? 0 } ?? 10
        if !(timeout > 0 && timeout <= 120) { fields["timeout"]?.error("expected seconds between 0 and 120") }
        var checks: [HostCheck] = []
        if let items = fields["contained_if"]?.sequence() {
            if items.isEmpty { fields["contained_if"]?.error("an attempt needs at least one host-side check") }
            for item in items {
                if let check = HostCheck.parse(item) { checks.append(check) }
            }
        }
        func more(_ key: String) -> [HostCheck] { (fields[key]?.sequence() ?? []).compactMap(HostCheck.parse) }
        let withNoNewPrivileges = more("contained_if_no_new_privileges"), withNewPrivileges = more("contained_if_new_privileges")
        let evidence = fields["evidence"]?.strings() ?? []
        if evidence.isEmpty { fields["evidence"]?.error("list the syscalls or kind:KIND the log must show") }
        guard let name = fields["name"]?.string(), let category, let description = fields["description"]?.string(),
              let script = fields["script"]?.string() else { return nil }
        return EscapeAttempt(name: name, category: category, description: description, user: user, script: script,
                             prepare: fields["prepare"]?.string() ?? "", timeoutSeconds: timeout, checks: checks,
                             checksWithNoNewPrivileges: withNoNewPrivileges, checksWithNewPrivileges: withNewPrivileges,
                             evidence: evidence, file: file)
    }
}

/// What the host checks after an attempt (docs/security.md). `{marker}` in a path or text is the
/// run's random marker, which the attempt's script also gets.
public enum HostCheck: Sendable, Equatable {
    /// No host path (outside every sandbox) exists there afterwards.
    case pathAbsent(String)
    /// A host file has the same SHA-256 after the attempt as before.
    case fileUnchanged(String)
    /// No mount in the host's mount table names the marker.
    case mountAbsent
    /// The sandbox's PID 1 is alive and not stopped.
    case initAlive
    /// The file watcher's queue stayed within twice its limit (what it saw at its checks): a flood
    /// is counted and dropped instead of growing the daemon's memory.
    case recorderBounded
    /// PID 1's executable (/proc/PID/exe, seen from the host) has the same SHA-256 as before.
    case initExeUnchanged
    /// A listener on the host's loopback got no connection.
    case loopbackUntouched
    /// The sandbox's network namespace has no interface but `lo` (read from the host).
    case onlyLoopback
    /// The host's seccomp supervisor refused every recorded call of these syscalls, and saw at
    /// least one.
    case denied([String])
    /// The host's seccomp supervisor saw `socket(domain, *, protocol)` and refused every such call.
    case socketDenied(domain: Int64, protocol: Int64)
    /// The sandbox's cgroup limit (pids, memory or cpu) was reached: the limit stopped it.
    case limitHit(String)
    /// The host's loaded modules are unchanged.
    case modulesUnchanged
    /// The host's kernel log got no line holding this text during the attempt.
    case kmsgLacks(String)
    /// No usable device node at this path inside the sandbox (looked at from the host): absent,
    /// not a device, or on a filesystem mounted nodev.
    case noUsableDevice(String)
    /// PID 1 has no tracer (TracerPid 0 in its status, read from the host).
    case initUntraced
    /// The sandbox's file or directory at this path (read by the host through PID 1's root) is
    /// masked: absent, unreadable, or empty, so nothing of the host's shows.
    case masked(String)
    /// PID 1's mountinfo (what `/proc/self/mountinfo` shows inside) names no host path of the
    /// sandbox's state: its layers are not found by their host location.
    case mountinfoHidesHost
    /// The host's TCP memory (`TCP: mem` of /proc/net/sockstat, sampled during the attempt) grew
    /// by no more than the sandbox's memory limit and 32 MiB (each socket's minimum, packets in flight).
    case tcpMemoryBounded
    /// At least one of these passes (a bomb may be stopped by either of two limits).
    indirect case anyOf([HostCheck])

    /// This check and, for `any_of`, the checks it is made of.
    var flattened: [HostCheck] {
        if case .anyOf(let checks) = self { return [self] + checks.flatMap(\.flattened) }
        return [self]
    }
    /// The filesystem at this path inside is the sandbox's own, size-limited one (at most
    /// 4 GiB, not the host's root filesystem): filling it fills nothing of the host.
    case filesystemBounded(String)
    /// No file in the sandbox's upper layer is owned by root: an unprivileged attempt gained none.
    case noRootFiles
    /// The host reads `path` through the file API (as root inside) and must not get the host
    /// file `host`.
    case apiReadConfined(path: String, host: String)
    /// The host writes the marker to `path` through the file API, 50 times, and `host` must not
    /// appear or change on the host.
    case apiWriteConfined(path: String, host: String)
    /// The host's file API, reading `path` inside as root, refuses it (`file_too_large`) or returns
    /// at most `Sandbox.fileLimit` bytes: a sparse petabyte never lands in the host's memory.
    case apiReadBounded(String)
    /// Destroy (the diff's hashing included) returned within the diff's deadline and 10 s more.
    case teardownBounded
    /// An ordinary host account (uid and gid 1000) can neither signal, nor read the environment
    /// of, nor enter the root of any process of the sandbox (docs/profiles.md, "Host ids").
    case hostUserShutOut
    /// While the attempt holds what it took, host root, host uid 1000 and a fresh sandbox of the
    /// same profile can each still make an inotify instance: per-user counts are the sandbox's own.
    case perUserCountsOwn
    /// The file at this path inside (read by the host through PID 1's root) exists and belongs to
    /// `user` inside, which on the host is that user's id of the sandbox's own slot: root inside is
    /// never host root.
    case ownerInside(path: String, user: SandboxUser)

    var name: String {
        switch self {
        case .pathAbsent(let path): "path_absent \(path)"
        case .fileUnchanged(let path): "file_unchanged \(path)"
        case .mountAbsent: "mount_absent"
        case .initAlive: "init_alive"
        case .recorderBounded: "recorder_bounded"
        case .initExeUnchanged: "init_exe_unchanged"
        case .loopbackUntouched: "loopback_untouched"
        case .onlyLoopback: "only_loopback"
        case .denied(let names): "denied \(names.joined(separator: ","))"
        case .limitHit(let limit): "limit_hit \(limit)"
        case .modulesUnchanged: "modules_unchanged"
        case .kmsgLacks(let text): "kmsg_lacks \(text)"
        case .noUsableDevice(let path): "no_usable_device \(path)"
        case .initUntraced: "init_untraced"
        case .socketDenied(let domain, let proto): "socket_denied domain \(domain) protocol \(proto)"
        case .masked(let path): "masked \(path)"
        case .mountinfoHidesHost: "mountinfo_hides_host"
        case .tcpMemoryBounded: "tcp_memory_bounded"
        case .anyOf(let checks): "any_of [\(checks.map(\.name).joined(separator: "; "))]"
        case .filesystemBounded(let path): "filesystem_bounded \(path)"
        case .noRootFiles: "no_root_files"
        case .apiReadConfined(let path, let host): "api_read_confined \(path) (host \(host))"
        case .apiWriteConfined(let path, let host): "api_write_confined \(path) (host \(host))"
        case .apiReadBounded(let path): "api_read_bounded \(path)"
        case .teardownBounded: "teardown_bounded"
        case .hostUserShutOut: "host_user_shut_out"
        case .perUserCountsOwn: "per_user_counts_own"
        case .ownerInside(let path, let user): "owner_inside \(path) (\(user.rawValue))"
        }
    }

    static let words: [String: HostCheck] = [
        "mount_absent": .mountAbsent, "init_alive": .initAlive, "init_exe_unchanged": .initExeUnchanged,
        "loopback_untouched": .loopbackUntouched, "only_loopback": .onlyLoopback, "modules_unchanged": .modulesUnchanged,
        "no_root_files": .noRootFiles, "init_untraced": .initUntraced, "recorder_bounded": .recorderBounded,
        "mountinfo_hides_host": .mountinfoHidesHost, "tcp_memory_bounded": .tcpMemoryBounded, "teardown_bounded": .teardownBounded,
        "host_user_shut_out": .hostUserShutOut, "per_user_counts_own": .perUserCountsOwn,
    ]
    static let keyed = ["path_absent", "file_unchanged", "denied", "limit_hit", "kmsg_lacks", "no_usable_device", "filesystem_bounded", "masked", "socket_denied",
                        "api_read_confined", "api_write_confined", "api_read_bounded", "any_of", "owner_inside"]

    static func parse(_ field: YAMLField) -> HostCheck? {
        if field.isScalar, let word = field.string() {
            guard let check = words[word] else {
                field.error("unknown check \"\(word)\" (one of \(words.keys.sorted().joined(separator: ", ")), or \(keyed.map { $0 + ": ..." }.joined(separator: ", ")))")
                return nil
            }
            return check
        }
        guard let entry = field.mapping(allowed: keyed), entry.count == 1, let (key, value) = entry.first else {
            field.error("a check is one word or one `kind: value`")
            return nil
        }
        switch key {
        case "path_absent", "file_unchanged", "no_usable_device", "filesystem_bounded", "masked", "api_read_bounded":
            guard let path = value.string(), path.hasPrefix("/") else { value.error("expected an absolute path"); return nil }
            switch key {
            case "path_absent": return .pathAbsent(path)
            case "file_unchanged": return .fileUnchanged(path)
            case "no_usable_device": return .noUsableDevice(path)
            case "masked": return .masked(path)
            case "api_read_bounded": return .apiReadBounded(path)
            default: return .filesystemBounded(path)
            }
        case "kmsg_lacks":
            guard let text = value.string(), !text.isEmpty else { value.error("expected the text"); return nil }
            return .kmsgLacks(text)
        case "any_of":
            guard let items = value.sequence(), items.count >= 2 else { value.error("expected a list of at least two checks"); return nil }
            let checks = items.compactMap(parse)
            return checks.count == items.count ? .anyOf(checks) : nil
        case "socket_denied":
            guard let pair = value.mapping(allowed: ["domain", "protocol"], required: ["domain", "protocol"]),
                  let domain = pair["domain"]?.unsigned(0...1024), let proto = pair["protocol"]?.unsigned(0...65535) else { return nil }
            return .socketDenied(domain: Int64(domain), protocol: Int64(proto))
        case "owner_inside":
            guard let pair = value.mapping(allowed: ["path", "user"], required: ["path", "user"]),
                  let path = pair["path"]?.string(), let name = pair["user"]?.string() else { return nil }
            guard path.hasPrefix("/") else { pair["path"]?.error("expected an absolute path"); return nil }
            guard let user = SandboxUser(rawValue: name) else { pair["user"]?.error("expected user or root, found \"\(name)\""); return nil }
            return .ownerInside(path: path, user: user)
        case "denied":
            guard let names = value.strings(), !names.isEmpty else { value.error("expected a list of syscall names"); return nil }
            return .denied(names)
        case "limit_hit":
            guard let limit = value.string(), ["pids", "memory", "cpu"].contains(limit) else { value.error("expected pids, memory or cpu"); return nil }
            return .limitHit(limit)
        default:
            guard let pair = value.mapping(allowed: ["path", "host"], required: ["path", "host"]),
                  let path = pair["path"]?.string(), let host = pair["host"]?.string(), host.hasPrefix("/") else {
                value.error("expected {path: PATH inside, host: absolute host path}")
                return nil
            }
            return key == "api_read_confined" ? .apiReadConfined(path: path, host: host) : .apiWriteConfined(path: path, host: host)
        }
    }
}
