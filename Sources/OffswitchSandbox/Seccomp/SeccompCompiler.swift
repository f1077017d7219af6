import CSeccomp
import COffswitch
import Glibc
public import OffswitchCore

/// Turns a `SeccompPolicy` into a classic BPF program for this machine with libseccomp,
/// resolving Docker's includes and excludes against the sandbox's capabilities, the architecture
/// and the running kernel. The program is installed by PID 1; libseccomp never runs inside.
public struct SeccompCompiler {
    public var capabilities: CapabilitySet
    /// Go's name for this architecture, which Docker's `arches` filters use.
    public var goArchitecture: String
    /// (major, minor) of the running kernel.
    public var kernel: (Int, Int)

    public init(capabilities: CapabilitySet) {
        self.capabilities = capabilities
        #if arch(x86_64)
        goArchitecture = "amd64"
        #elseif arch(arm64)
        goArchitecture = "arm64"
        #else
        goArchitecture = "unknown"
        #endif
        kernel = Self.runningKernel()
    }

    /// What compiling produced: the program, and the syscall names this libseccomp did not know
    /// (skipped, as Docker skips them).
    public struct Output: Sendable {
        public var program: [UInt8]
        public var skippedSyscalls: [String]
        public var instructionCount: Int { program.count / 8 }
    }

    public func compile(_ policy: SeccompPolicy, source: String) throws(OffswitchError) -> Output {
        let defaultAction = try action(policy.defaultAction, errno: policy.defaultErrnoRet ?? UInt32(EPERM),
                                       field: "\(source): defaultAction")
        guard let context = seccomp_init(defaultAction) else {
            throw OffswitchError(.system, "seccomp_init(\(source))", errno: ENOMEM)
        }
        defer { seccomp_release(context) }
        // Binary-tree dispatch keeps long allowlists cheap per syscall; older libseccomp ignores it.
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_OPTIMIZE, 2)
        // PID 1 sets no_new_privs itself where the profile asks for it (no_new_privileges), and
        // otherwise installs the program holding CAP_SYS_ADMIN (docs/sandbox.md): libseccomp must not.
        _ = seccomp_attr_set(context, SCMP_FLTATR_CTL_NNP, 0)
        for arch in try architectures(policy, source: source) where seccomp_arch_exist(context, arch) != 0 {
            try systemCallNegErrno("seccomp_arch_add(\(arch), \(source))") { seccomp_arch_add(context, arch) }
        }

        var skipped: [String] = []
        for (index, rule) in policy.syscalls.enumerated() {
            let field = "\(source): syscalls[\(index)]"
            guard applies(rule) else { continue }
            let ruleAction = try action(rule.action, errno: rule.errnoRet ?? UInt32(EPERM), field: field + ".action")
            if ruleAction == defaultAction { continue }  // libseccomp refuses rules that change nothing
            let conditions = try (rule.args ?? []).enumerated().map { (argIndex, arg) throws(OffswitchError) in
                try comparison(arg, field: "\(field).args[\(argIndex)]")
            }
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                if number == cseccomp_nr_error() {
                    skipped.append(name)
                    continue
                }
                let rc = conditions.withUnsafeBufferPointer { buffer in
                    seccomp_rule_add_array(context, ruleAction, number, UInt32(buffer.count), buffer.baseAddress)
                }
                if rc < 0 {
                    throw OffswitchError(.invalidProfile, "\(field): seccomp_rule_add(\(name))", errno: -rc)
                }
            }
        }
        return Output(program: try export(context, source: source), skippedSyscalls: skipped)
    }

    /// The policy as this machine compiles it: rules whose includes/excludes do not hold are
    /// gone, the rest lose their filters; names this libseccomp does not know are gone; archMap
    /// becomes the architecture list. What `offswitch profile show` prints.
    public func resolve(_ policy: SeccompPolicy) -> (policy: SeccompPolicy, droppedRules: Int, unknownSyscalls: [String]) {
        var resolved = policy
        var dropped = 0
        var unknown: [String] = []
        resolved.syscalls = policy.syscalls.compactMap { rule in
            guard applies(rule) else {
                dropped += 1
                return nil
            }
            var rule = rule
            rule.includes = nil
            rule.excludes = nil
            rule.names = rule.names.filter { name in
                let known = seccomp_syscall_resolve_name(name) != cseccomp_nr_error()
                if !known { unknown.append(name) }
                return known
            }
            return rule.names.isEmpty ? nil : rule
        }
        var arches: [String] = []
        let native = seccomp_arch_native()
        for entry in policy.archMap ?? [] where Self.archToken(entry.architecture) == native {
            arches += [entry.architecture] + (entry.subArchitectures ?? [])
        }
        resolved.architectures = arches + (policy.architectures ?? [])
        resolved.archMap = nil
        return (resolved, dropped, unknown)
    }

    /// Docker's rule filters: `includes` must all hold, and no `excludes` may.
    func applies(_ rule: SeccompPolicy.Rule) -> Bool {
        if let include = rule.includes {
            if let caps = include.caps, !caps.allSatisfy(capabilities.contains) { return false }
            if let arches = include.arches, !arches.contains(goArchitecture) { return false }
            if let minimum = include.minKernel, let wanted = Self.parseKernel(minimum), kernel < wanted { return false }
        }
        if let exclude = rule.excludes {
            if let caps = exclude.caps, caps.contains(where: capabilities.contains) { return false }
            if let arches = exclude.arches, arches.contains(goArchitecture) { return false }
            if let minimum = exclude.minKernel, let wanted = Self.parseKernel(minimum), kernel >= wanted { return false }
        }
        return true
    }

    private func architectures(_ policy: SeccompPolicy, source: String) throws(OffswitchError) -> [UInt32] {
        var names: [String] = []
        let native = seccomp_arch_native()
        if let map = policy.archMap {
            for entry in map where Self.archToken(entry.architecture) == native {
                names += entry.subArchitectures ?? []
            }
        }
        names += policy.architectures ?? []
        // Names this libseccomp does not know were reported as warnings by the reader; like
        // Docker, compile without them.
        return names.map(Self.archToken).filter { $0 != 0 }
    }

    /// `SCMP_ARCH_X86_64` -> libseccomp's token; 0 when unknown.
    static func archToken(_ name: String) -> UInt32 {
        let short = name.hasPrefix("SCMP_ARCH_") ? String(name.dropFirst(10)).lowercased() : name.lowercased()
        return seccomp_arch_resolve_name(short)
    }

    private func action(_ name: String, errno: UInt32, field: String) throws(OffswitchError) -> UInt32 {
        switch name {
        case "SCMP_ACT_ALLOW": return cseccomp_act_allow()
        case "SCMP_ACT_ERRNO":
            guard errno <= 4095 else { throw OffswitchError(.invalidProfile, "\(field): errno \(errno) out of range") }
            return cseccomp_act_errno(UInt16(errno))
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return cseccomp_act_kill_thread()
        case "SCMP_ACT_KILL_PROCESS": return cseccomp_act_kill_process()
        case "SCMP_ACT_TRAP": return cseccomp_act_trap()
        case "SCMP_ACT_LOG": return cseccomp_act_log()
        case "SCMP_ACT_NOTIFY": return cseccomp_act_notify()
        case "SCMP_ACT_TRACE":
            throw OffswitchError(.invalidProfile, "\(field): SCMP_ACT_TRACE needs a ptrace tracer, which Offswitch does not run")
        default:
            throw OffswitchError(.invalidProfile, "\(field): unknown action \"\(name)\"")
        }
    }

    private func comparison(_ arg: SeccompPolicy.Argument, field: String) throws(OffswitchError) -> scmp_arg_cmp {
        guard arg.index < 6 else { throw OffswitchError(.invalidProfile, "\(field).index: \(arg.index) is out of range 0...5") }
        let op: scmp_compare
        switch arg.op {
        case "SCMP_CMP_NE": op = SCMP_CMP_NE
        case "SCMP_CMP_LT": op = SCMP_CMP_LT
        case "SCMP_CMP_LE": op = SCMP_CMP_LE
        case "SCMP_CMP_EQ": op = SCMP_CMP_EQ
        case "SCMP_CMP_GE": op = SCMP_CMP_GE
        case "SCMP_CMP_GT": op = SCMP_CMP_GT
        case "SCMP_CMP_MASKED_EQ": op = SCMP_CMP_MASKED_EQ
        default: throw OffswitchError(.invalidProfile, "\(field).op: unknown comparator \"\(arg.op)\"")
        }
        if op != SCMP_CMP_MASKED_EQ, let two = arg.valueTwo, two != 0 {
            throw OffswitchError(.invalidProfile, "\(field).valueTwo: only SCMP_CMP_MASKED_EQ takes a second value")
        }
        // For MASKED_EQ, OCI's `value` is the mask and `valueTwo` the expected result.
        return scmp_arg_cmp(arg: arg.index, op: op, datum_a: arg.value, datum_b: arg.valueTwo ?? 0)
    }

    private func export(_ context: scmp_filter_ctx, source: String) throws(OffswitchError) -> [UInt8] {
        let fd = try systemCall("memfd_create(seccomp bpf)") { ofs_memfd("offswitch-seccomp") }
        defer { close(fd) }
        try systemCallNegErrno("seccomp_export_bpf(\(source))") { seccomp_export_bpf(context, fd) }
        let size = Int(lseek(fd, 0, SEEK_END))
        guard size > 0, size % 8 == 0, size / 8 <= 4096 else {
            throw OffswitchError(.invalidProfile, "\(source): compiled to \(size / 8) instructions (the kernel takes at most 4096)")
        }
        var program = [UInt8](repeating: 0, count: size)
        let n = program.withUnsafeMutableBytes { pread(fd, $0.baseAddress, size, 0) }
        guard n == size else { throw OffswitchError.system("pread(seccomp bpf)", errno: n < 0 ? errno : EIO) }
        return program
    }

    static func parseKernel(_ text: String) -> (Int, Int)? {
        let parts = text.split(separator: ".").prefix(2).map { Int($0.prefix { $0.isNumber }) }
        guard parts.count == 2, let major = parts[0], let minor = parts[1] else { return nil }
        return (major, minor)
    }

    static func runningKernel() -> (Int, Int) {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return parseKernel(release) ?? (0, 0)
    }
}
