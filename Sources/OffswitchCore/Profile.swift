/// A sandbox profile: the seccomp, capability, namespace and limit policy of a sandbox, as read
/// from `sandbox-profiles/NAME.yaml` (format in docs/profiles.md). Reading and checking files
/// lives in OffswitchSandbox's `Profiles/`; this is the value they produce.
public struct Profile: Sendable, Equatable, Codable {
    public var name: String
    public var description: String
    /// The profile file it came from.
    public var source: String
    public var seccomp: SeccompPolicy
    /// Where the seccomp policy came from: a JSON file, or `FILE: seccomp` when inline.
    public var seccompSource: String
    /// Syscalls the evidence recorder is to see (with their arguments), allowed or not.
    public var record: [RecordedSyscall]
    /// Capabilities of commands run as root inside.
    public var capabilities: CapabilitySet
    /// Whether every process gets `no_new_privs`: false is Docker's default, where setuid
    /// programs and file capabilities take effect (within the capabilities above); true refuses both.
    public var noNewPrivileges: Bool
    public var network: NetworkMode
    public var limits: ResourceLimits
    /// Default wall-clock limit of one command in seconds; nil means none.
    public var commandTimeoutSeconds: Int?
    public var rootfs: RootfsSource
    /// Who commands run as unless a request says otherwise.
    public var user: SandboxUser

    public init(name: String, description: String = "", source: String, seccomp: SeccompPolicy, seccompSource: String,
                record: [RecordedSyscall] = [], capabilities: CapabilitySet = .dockerDefault,
                noNewPrivileges: Bool = false, network: NetworkMode = .none, limits: ResourceLimits = .defaults,
                commandTimeoutSeconds: Int? = nil, rootfs: RootfsSource = .host, user: SandboxUser = .agent) {
        self.name = name
        self.description = description
        self.source = source
        self.seccomp = seccomp
        self.seccompSource = seccompSource
        self.record = record
        self.capabilities = capabilities
        self.noNewPrivileges = noNewPrivileges
        self.network = network
        self.limits = limits
        self.commandTimeoutSeconds = commandTimeoutSeconds
        self.rootfs = rootfs
        self.user = user
    }

    /// The runtime spec this profile describes.
    public var sandboxSpec: SandboxSpec {
        var spec = SandboxSpec(rootfs: rootfs, limits: limits, rootCapabilities: capabilities)
        spec.profileName = name
        spec.seccomp = seccomp
        spec.seccompSource = seccompSource
        spec.record = record
        spec.noNewPrivileges = noNewPrivileges
        spec.commandTimeoutSeconds = commandTimeoutSeconds
        spec.defaultUser = user
        return spec
    }
}

/// A syscall the recorder is to see, optionally only when its arguments match.
public struct RecordedSyscall: Sendable, Equatable, Codable {
    public var name: String
    public var args: [SeccompPolicy.Argument]

    public init(name: String, args: [SeccompPolicy.Argument] = []) {
        self.name = name
        self.args = args
    }
}

/// What network a sandbox has. Only `none` (a network namespace with loopback alone) exists:
/// an agent under test must not reach anything.
public enum NetworkMode: String, Sendable, Equatable, Codable, CaseIterable {
    case none
}
