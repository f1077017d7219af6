/// A seccomp policy in the OCI / Docker JSON format, as written (before includes and excludes are
/// resolved for a machine). Docker's default profile loads unchanged. Reading and checking a file
/// lives in OffswitchSandbox's `Profiles/`; compiling it in `Seccomp/`.
public struct SeccompPolicy: Sendable, Equatable, Codable {
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    /// OCI form: the architectures to accept.
    public var architectures: [String]?
    /// Docker form: native architecture and the sub-architectures it can run.
    public var archMap: [ArchMapEntry]?
    public var syscalls: [Rule]
    /// `SECCOMP_FILTER_FLAG_*` names passed to seccomp(2) when the filter is installed.
    public var flags: [String]?

    public init(defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
                archMap: [ArchMapEntry]? = nil, syscalls: [Rule] = [], flags: [String]? = nil) {
        self.defaultAction = defaultAction
        self.defaultErrnoRet = defaultErrnoRet
        self.architectures = architectures
        self.archMap = archMap
        self.syscalls = syscalls
        self.flags = flags
    }

    public struct ArchMapEntry: Sendable, Equatable, Codable {
        public var architecture: String
        public var subArchitectures: [String]?

        public init(architecture: String, subArchitectures: [String]? = nil) {
            self.architecture = architecture
            self.subArchitectures = subArchitectures
        }
    }

    public struct Rule: Sendable, Equatable, Codable {
        public var names: [String]
        public var action: String
        public var errnoRet: UInt32?
        public var args: [Argument]?
        public var comment: String?
        public var includes: Filter?
        public var excludes: Filter?

        public init(names: [String], action: String, errnoRet: UInt32? = nil, args: [Argument]? = nil,
                    comment: String? = nil, includes: Filter? = nil, excludes: Filter? = nil) {
            self.names = names
            self.action = action
            self.errnoRet = errnoRet
            self.args = args
            self.comment = comment
            self.includes = includes
            self.excludes = excludes
        }
    }

    /// One comparison of a syscall argument. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
    /// `valueTwo` the expected result.
    public struct Argument: Sendable, Equatable, Codable {
        public var index: UInt32
        public var value: UInt64
        public var valueTwo: UInt64?
        public var op: String

        public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
            self.index = index
            self.value = value
            self.valueTwo = valueTwo
            self.op = op
        }
    }

    /// Docker's conditions on a rule: capabilities, architectures (Go names) and kernel version.
    public struct Filter: Sendable, Equatable, Codable {
        public var caps: [String]?
        public var arches: [String]?
        public var minKernel: String?

        public init(caps: [String]? = nil, arches: [String]? = nil, minKernel: String? = nil) {
            self.caps = caps
            self.arches = arches
            self.minKernel = minKernel
        }
    }

    /// Every action of the OCI runtime spec, and what Offswitch does with it.
    public static let actions: Set<String> = [
        "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
    ]
    /// Every comparator of the OCI runtime spec.
    public static let comparators: Set<String> = [
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
    ]
    /// The `flags` seccomp(2) accepts from a policy, with their kernel values. NEW_LISTENER and
    /// WAIT_KILLABLE_RECV (valid only with a listener) are Offswitch's own business: the
    /// recorder's listener, so a policy cannot ask for them.
    public static let filterFlags: [String: UInt32] = [
        "SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    ]
    /// The architecture names Docker's `includes.arches` and `excludes.arches` use: Go's, plus
    /// libseccomp's short names (Docker's own profile writes `x86` and `x32`).
    public static let goArchitectures: Set<String> = [
        "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32",
        "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv64", "s390", "s390x", "x86", "x32", "x86_64", "aarch64",
        "mipsel", "mipsel64", "mips64n32", "mipsel64n32", "parisc", "parisc64", "loongarch64",
    ]

    /// The seccomp(2) flag bits this policy asks for.
    public var flagBits: UInt32 {
        (flags ?? []).reduce(0) { $0 | (Self.filterFlags[$1] ?? 0) }
    }
}
