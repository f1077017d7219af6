import CSeccomp
import FoundationEssentials
import Glibc
import OffswitchCore
import OffswitchYAML

/// Reads an OCI/Docker seccomp policy (a JSON file, or inline YAML in a profile) and checks every
/// field, reporting each problem with its path. What it accepts, `SeccompCompiler` compiles.
enum SeccompPolicyReader {
    static let fields = ["defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
                         "listenerPath", "listenerMetadata"]

    static func read(_ field: YAMLField) -> SeccompPolicy? {
        guard let map = field.mapping(allowed: fields, required: ["defaultAction"]) else { return nil }
        if let listener = map["listenerPath"] {
            listener.error("Offswitch is the seccomp agent itself (SCMP_ACT_NOTIFY goes to its recorder); remove listenerPath")
        }
        let defaultAction = map["defaultAction"].flatMap(action)
        let defaultErrno = map["defaultErrnoRet"].flatMap(errno)
        if let errnoField = map["defaultErrnoRet"], let defaultAction, defaultAction != "SCMP_ACT_ERRNO" {
            errnoField.warning("only used when defaultAction is SCMP_ACT_ERRNO")
        }
        var architectures: [String]?
        if let arches = map["architectures"], let items = arches.sequence() {
            architectures = items.compactMap(architecture)
        }
        var archMap: [SeccompPolicy.ArchMapEntry]?
        if let entries = map["archMap"]?.sequence() {
            archMap = entries.compactMap { entry in
                guard let fields = entry.mapping(allowed: ["architecture", "subArchitectures"], required: ["architecture"]),
                      let native = fields["architecture"].flatMap(architecture) else { return nil }
                let subs = fields["subArchitectures"]?.sequence()?.compactMap(architecture)
                return SeccompPolicy.ArchMapEntry(architecture: native, subArchitectures: subs)
            }
        }
        var flags: [String]?
        if let flagField = map["flags"], let items = flagField.sequence() {
            flags = items.compactMap { item in
                guard let name = item.string() else { return nil }
                guard SeccompPolicy.filterFlags[name] != nil else {
                    if name == "SECCOMP_FILTER_FLAG_NEW_LISTENER" || name == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" {
                        item.error("the listener belongs to Offswitch's recorder; a policy cannot ask for it")
                    } else {
                        item.error("unknown flag \"\(name)\" (known: \(SeccompPolicy.filterFlags.keys.sorted().joined(separator: ", ")))")
                    }
                    return nil
                }
                return name
            }
        }
        var rules: [SeccompPolicy.Rule] = []
        if let syscalls = map["syscalls"]?.sequence() {
            rules = syscalls.compactMap(rule)
        }
        guard let defaultAction else { return nil }
        return SeccompPolicy(defaultAction: defaultAction, defaultErrnoRet: defaultErrno, architectures: architectures,
                             archMap: archMap, syscalls: rules, flags: flags)
    }

    static func rule(_ field: YAMLField) -> SeccompPolicy.Rule? {
        guard let map = field.mapping(
            allowed: ["names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes"], required: ["action"])
        else { return nil }
        var names: [String] = []
        if let list = map["names"], let items = list.sequence() {
            names = items.compactMap { item in
                guard let name = item.string() else { return nil }
                if !knownSyscall(name) {
                    item.warning("syscall \"\(name)\" is unknown to libseccomp \(libseccompVersion) on this machine; skipped, as Docker does")
                }
                return name
            }
        }
        if let single = map["name"], let name = single.string() { names.append(name) }  // Docker's older form
        if map["names"] == nil && map["name"] == nil {
            field.error("names: missing")
        }
        let action = map["action"].flatMap(action)
        let errnoRet = map["errnoRet"].flatMap(errno)
        if let errnoField = map["errnoRet"], let action, action != "SCMP_ACT_ERRNO" {
            errnoField.warning("only used with SCMP_ACT_ERRNO, not \(action)")
        }
        var args: [SeccompPolicy.Argument]?
        if let argList = map["args"] {
            if argList.isNull {
                args = nil
            } else if let items = argList.sequence() {
                args = arguments(items)
            }
        }
        let includes = map["includes"].flatMap(filter)
        let excludes = map["excludes"].flatMap(filter)
        guard let action else { return nil }
        return SeccompPolicy.Rule(names: names, action: action, errnoRet: errnoRet, args: args,
                                  comment: map["comment"]?.string(), includes: includes, excludes: excludes)
    }

    /// Argument comparisons of one rule. libseccomp compares each argument at most once per rule.
    static func arguments(_ items: [YAMLField]) -> [SeccompPolicy.Argument] {
        var seen: Set<UInt32> = []
        return items.compactMap { item in
            guard let argument = argument(item) else { return nil }
            if !seen.insert(argument.index).inserted {
                item.error("argument \(argument.index) is already compared in this rule; libseccomp allows one comparison per argument (write two rules)")
                return nil
            }
            return argument
        }
    }

    static func argument(_ field: YAMLField) -> SeccompPolicy.Argument? {
        guard let map = field.mapping(allowed: ["index", "value", "valueTwo", "op"], required: ["index", "value", "op"])
        else { return nil }
        let index = map["index"].flatMap { $0.unsigned(0...5) }
        let value = map["value"].flatMap { $0.unsigned() }
        let valueTwo = map["valueTwo"].flatMap { $0.unsigned() }
        var op: String?
        if let opField = map["op"], let name = opField.string() {
            if SeccompPolicy.comparators.contains(name) {
                op = name
            } else {
                opField.error("unknown comparator \"\(name)\" (known: \(SeccompPolicy.comparators.sorted().joined(separator: ", ")))")
            }
        }
        if let op, op != "SCMP_CMP_MASKED_EQ", let valueTwo, valueTwo != 0, let twoField = map["valueTwo"] {
            twoField.error("only SCMP_CMP_MASKED_EQ takes a second value (\(op) compares with value alone)")
            return nil
        }
        guard let index, let value, let op else { return nil }
        return SeccompPolicy.Argument(index: UInt32(index), value: value, valueTwo: valueTwo, op: op)
    }

    static func filter(_ field: YAMLField) -> SeccompPolicy.Filter? {
        guard let map = field.mapping(allowed: ["caps", "arches", "minKernel"]) else { return nil }
        var result = SeccompPolicy.Filter()
        if let caps = map["caps"]?.sequence() {
            result.caps = caps.compactMap { item in
                guard let name = item.string() else { return nil }
                guard CapabilitySet.numbers[name.uppercased()] != nil else {
                    item.error("unknown capability \"\(name)\"")
                    return nil
                }
                return name
            }
        }
        if let arches = map["arches"]?.sequence() {
            result.arches = arches.compactMap { item in
                guard let name = item.string() else { return nil }
                guard SeccompPolicy.goArchitectures.contains(name) else {
                    item.error("unknown architecture \"\(name)\" (Go names such as amd64, arm64, s390x)")
                    return nil
                }
                return name
            }
        }
        if let kernel = map["minKernel"], let text = kernel.string() {
            if SeccompCompiler.parseKernel(text) == nil {
                kernel.error("expected a kernel version such as 4.8, found \"\(text)\"")
            } else {
                result.minKernel = text
            }
        }
        return result
    }

    static func action(_ field: YAMLField) -> String? {
        guard let name = field.string() else { return nil }
        guard SeccompPolicy.actions.contains(name) else {
            field.error("unknown action \"\(name)\" (known: \(SeccompPolicy.actions.sorted().joined(separator: ", ")))")
            return nil
        }
        if name == "SCMP_ACT_TRACE" {
            field.error("SCMP_ACT_TRACE needs a ptrace tracer, which Offswitch does not run; use SCMP_ACT_NOTIFY or the profile's record list")
            return nil
        }
        return name
    }

    static func errno(_ field: YAMLField) -> UInt32? {
        field.unsigned(0...4095).map(UInt32.init)
    }

    static func architecture(_ field: YAMLField) -> String? {
        guard let name = field.string() else { return nil }
        guard SeccompCompiler.archToken(name) != 0 else {
            let wellFormed = name.hasPrefix("SCMP_ARCH_") && name.dropFirst(10).allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" }
            if wellFormed {
                field.warning("architecture \(name) is unknown to libseccomp \(libseccompVersion) on this machine; ignored")
            } else {
                field.error("unknown architecture \"\(name)\" (libseccomp names such as SCMP_ARCH_X86_64)")
            }
            return nil
        }
        return name
    }

    static func knownSyscall(_ name: String) -> Bool {
        seccomp_syscall_resolve_name(name) != cseccomp_nr_error()
    }

    static var libseccompVersion: String {
        let version = seccomp_version()!.pointee
        return "\(version.major).\(version.minor).\(version.micro)"
    }
}
