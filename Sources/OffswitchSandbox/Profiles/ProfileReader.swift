import FoundationEssentials
import Glibc
public import OffswitchCore
public import OffswitchYAML

/// Reads `sandbox-profiles/*.yaml` (format in docs/profiles.md), checking every field and
/// collecting every problem. A seccomp policy named by path is read relative to the profile.
public enum ProfileReader {
    static let fields = ["name", "description", "seccomp", "seccomp_deny", "record", "capabilities", "no_new_privileges",
                         "user_namespace", "network", "limits", "rootfs", "user"]
    static let limitFields = ["memory", "pids", "cpus", "upper", "tmp", "open_files", "pending_signals", "message_queues", "evidence", "command_timeout"]

    /// What reading found: the profile when there was no error, and every problem (warnings too).
    public struct Outcome: Sendable {
        public var profile: Profile?
        public var problems: [FieldProblem]
        public var errors: [FieldProblem] { problems.filter { !$0.isWarning } }
    }

    /// `offswitch profile check`'s reading of one reference: a seccomp policy when it ends in
    /// `.json`, otherwise a profile by name or file. `label` is the file read, or the reference
    /// itself when it names none (then its one problem says why).
    public static func check(_ reference: String) -> (label: String, problems: [FieldProblem]) {
        if reference.hasSuffix(".json") { return (reference, readSeccompPolicy(path: reference).problems) }
        do {
            let path = try ProfileCatalog.path(of: reference)
            return (path, read(path: path).problems)
        } catch {
            let problems = ProblemList()
            problems.error(reference, "", error.message)
            return (reference, problems.problems)
        }
    }

    /// Reads the profile file at `path`.
    public static func read(path: String) -> Outcome {
        let problems = ProblemList()
        guard let text = readText(path, problems: problems, file: path, field: "") else {
            return Outcome(profile: nil, problems: problems.problems)
        }
        return read(text: text, file: path, problems: problems)
    }

    /// Reads profile text; `file` names it in problems and anchors relative seccomp paths.
    public static func read(text: String, file: String) -> Outcome {
        read(text: text, file: file, problems: ProblemList())
    }

    /// Reads and checks a seccomp policy file on its own (JSON or YAML).
    public static func readSeccompPolicy(path: String) -> (policy: SeccompPolicy?, problems: [FieldProblem]) {
        let problems = ProblemList()
        guard let text = readText(path, problems: problems, file: path, field: "") else { return (nil, problems.problems) }
        return readSeccompPolicy(text: text, file: path, problems: problems)
    }

    /// Reads and checks seccomp policy text; `file` names it in problems.
    public static func readSeccompPolicy(text: String, file: String) -> (policy: SeccompPolicy?, problems: [FieldProblem]) {
        readSeccompPolicy(text: text, file: file, problems: ProblemList())
    }

    private static func readSeccompPolicy(text: String, file: String, problems: ProblemList)
        -> (policy: SeccompPolicy?, problems: [FieldProblem])
    {
        guard let root = YAMLField.parse(text, file: file, problems: problems) else { return (nil, problems.problems) }
        let policy = SeccompPolicyReader.read(root)
        return (problems.hasErrors ? nil : policy, problems.problems)
    }

    private static func read(text: String, file: String, problems: ProblemList) -> Outcome {
        guard let root = YAMLField.parse(text, file: file, problems: problems),
              let map = root.mapping(allowed: fields, required: ["name", "seccomp"]) else {
            return Outcome(profile: nil, problems: problems.problems)
        }
        let name = map["name"].flatMap(profileName)
        let description = map["description"]?.string() ?? ""
        var seccomp = map["seccomp"].flatMap { seccompPolicy($0, profileFile: file, problems: problems) }
        if let denyField = map["seccomp_deny"], let names = denyList(denyField), !names.isEmpty, let given = seccomp {
            seccomp = (deny(names, in: given.policy), given.source + " with seccomp_deny from " + file)
        }
        let record = map["record"].flatMap(recordList) ?? []
        var capabilities = CapabilitySet.dockerDefault
        if let capField = map["capabilities"], let items = capField.sequence() {
            var mask: UInt64 = 0
            for item in items {
                guard let text = item.string() else { continue }
                let key = text.uppercased().hasPrefix("CAP_") ? text.uppercased() : "CAP_" + text.uppercased()
                if let number = CapabilitySet.numbers[key] {
                    mask |= 1 << UInt64(number)
                } else {
                    item.error("unknown capability \"\(text)\" (names as in capabilities(7), such as CAP_CHOWN)")
                }
            }
            capabilities = CapabilitySet(mask: mask)
        }
        // Docker's default: setuid programs and file capabilities work, within `capabilities`.
        let noNewPrivileges = map["no_new_privileges"]?.bool() ?? false
        // Every sandbox has its own user namespace and host ids now; a profile cannot pick them.
        map["user_namespace"]?.error("no longer a profile field: every sandbox has a user namespace of its own, with host ids "
            + "no other sandbox or host account uses (\(HostIDRange.environmentVariable), docs/security.md); remove it")
        var network = NetworkMode.none
        if let field = map["network"], let text = field.string() {
            if let mode = NetworkMode(rawValue: text) {
                network = mode
            } else {
                field.error("unknown network mode \"\(text)\": only \"none\" exists (loopback only; an agent under test reaches nothing)")
            }
        }
        var limits = ResourceLimits.defaults
        var timeout: Int?
        if let limitMap = map["limits"]?.mapping(allowed: limitFields) {
            readLimits(limitMap, into: &limits, timeout: &timeout)
        }
        var rootfs = RootfsSource.host
        if let field = map["rootfs"], let text = field.string() {
            do throws(OffswitchError) {
                rootfs = try RootfsSource(parsing: text)
            } catch {
                field.error("expected host or dir:/absolute/path, found \"\(text)\"")
            }
        }
        var user = SandboxUser.agent
        if let field = map["user"], let text = field.string() {
            if let value = SandboxUser(rawValue: text) {
                user = value
            } else {
                field.error("expected user or root, found \"\(text)\"")
            }
        }
        guard !problems.hasErrors, let name, let seccomp else {
            return Outcome(profile: nil, problems: problems.problems)
        }
        let profile = Profile(
            name: name, description: description, source: file, seccomp: seccomp.policy, seccompSource: seccomp.source,
            record: record, capabilities: capabilities, noNewPrivileges: noNewPrivileges, network: network, limits: limits,
            commandTimeoutSeconds: timeout, rootfs: rootfs, user: user)
        return Outcome(profile: profile, problems: problems.problems)
    }

    private static func profileName(_ field: YAMLField) -> String? {
        guard let name = field.string() else { return nil }
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }
        guard !name.isEmpty, name.utf8.count <= 64, allowed else {
            field.error("\"\(name)\": use lower-case letters, digits, - and _ (at most 64)")
            return nil
        }
        return name
    }

    /// `seccomp: PATH` (relative to the profile) or an inline policy.
    private static func seccompPolicy(_ field: YAMLField, profileFile: String, problems: ProblemList)
        -> (policy: SeccompPolicy, source: String)?
    {
        if field.isMapping {
            return SeccompPolicyReader.read(field).map { ($0, "\(profileFile): seccomp") }
        }
        guard let relative = field.string() else { return nil }
        let path = relative.hasPrefix("/") ? relative : directory(of: profileFile) + "/" + relative
        guard let text = readText(path, problems: problems, file: field.file, field: field.path),
              let root = YAMLField.parse(text, file: path, problems: problems) else { return nil }
        return SeccompPolicyReader.read(root).map { ($0, path) }
    }

    private static func denyList(_ field: YAMLField) -> [String]? {
        guard let items = field.sequence() else { return nil }
        return items.compactMap { item in
            guard let name = item.string() else { return nil }
            guard SeccompPolicyReader.knownSyscall(name) else {
                item.error("unknown syscall \"\(name)\" (libseccomp \(SeccompPolicyReader.libseccompVersion) does not know it)")
                return nil
            }
            return name
        }
    }

    /// The policy with `names` taken out of every rule and answered with EPERM instead, whatever
    /// the capabilities, arguments or kernel.
    static func deny(_ names: [String], in policy: SeccompPolicy) -> SeccompPolicy {
        var result = policy
        let denied = Set(names)
        result.syscalls = policy.syscalls.compactMap { rule in
            var rule = rule
            rule.names.removeAll { denied.contains($0) }
            return rule.names.isEmpty ? nil : rule
        }
        result.syscalls.append(SeccompPolicy.Rule(names: names, action: "SCMP_ACT_ERRNO", errnoRet: UInt32(EPERM),
                                                  comment: "the profile's seccomp_deny"))
        return result
    }

    private static func recordList(_ field: YAMLField) -> [RecordedSyscall]? {
        guard let items = field.sequence() else { return nil }
        return items.compactMap { item in
            var name: String?
            var args: [SeccompPolicy.Argument] = []
            if item.isMapping {
                guard let map = item.mapping(allowed: ["name", "args"], required: ["name"]) else { return nil }
                name = map["name"]?.string()
                if let argItems = map["args"]?.sequence() {
                    args = SeccompPolicyReader.arguments(argItems)
                }
            } else {
                name = item.string()
            }
            guard let name else { return nil }
            guard SeccompPolicyReader.knownSyscall(name) else {
                item.error("unknown syscall \"\(name)\" (libseccomp \(SeccompPolicyReader.libseccompVersion) does not know it)")
                return nil
            }
            return RecordedSyscall(name: name, args: args)
        }
    }

    private static func readLimits(_ map: [String: YAMLField], into limits: inout ResourceLimits, timeout: inout Int?) {
        func check(_ key: String, _ apply: (inout ResourceLimits) -> Void) {
            var candidate = limits
            apply(&candidate)
            do throws(OffswitchError) {
                try candidate.validate()
                limits = candidate
            } catch {
                let reason = error.message.split(separator: ":", maxSplits: 1).last.map { String($0.trimmingSpaces) } ?? error.message
                map[key]?.error(reason)
            }
        }
        if let value = map["memory"]?.bytes() { check("memory") { $0.memoryBytes = value } }
        if let value = map["pids"]?.unsigned() { check("pids") { $0.pids = value } }
        if let value = map["cpus"]?.double() { check("cpus") { $0.cpus = value } }
        if let value = map["upper"]?.bytes() { check("upper") { $0.upperBytes = value } }
        if let value = map["tmp"]?.bytes() { check("tmp") { $0.tmpBytes = value } }
        if let value = map["open_files"]?.unsigned() { check("open_files") { $0.openFiles = value } }
        if let value = map["pending_signals"]?.unsigned() { check("pending_signals") { $0.pendingSignals = value } }
        if let value = map["message_queues"]?.bytes() { check("message_queues") { $0.messageQueueBytes = value } }
        if let value = map["evidence"]?.bytes() { check("evidence") { $0.evidenceBytes = value } }
        if let field = map["command_timeout"] { timeout = field.seconds() }
    }

    private static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// A file's text, at most 4 MiB; a problem names the field that pointed at it.
    private static func readText(_ path: String, problems: ProblemList, file: String, field: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            problems.error(file, field, field.isEmpty ? "cannot read: \(reason)" : "cannot read \(path): \(reason)")
            return nil
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            problems.error(file, field, "\(path) is not a regular file")
            return nil
        }
        guard info.st_size <= 4 << 20 else {
            problems.error(file, field, "\(path) is \(info.st_size) bytes; profiles and policies are at most 4 MiB")
            return nil
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        guard let text = String(validating: bytes.prefix(done), as: UTF8.self) else {
            problems.error(file, field, "\(path) is not UTF-8 text")
            return nil
        }
        return text
    }
}
