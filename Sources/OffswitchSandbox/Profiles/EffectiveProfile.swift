import FoundationEssentials
public import OffswitchCore

/// What `offswitch profile show` prints: a profile as this machine applies it (docs/profiles.md,
/// "The effective profile").
public struct EffectiveProfile: Encodable, Sendable {
    public var format = "offswitch.effective-profile/3"
    public var name: String
    public var description: String
    public var source: String
    public var seccomp_source: String
    public var user: String
    public var rootfs: String
    public var network: String
    public var capabilities: [String]
    public var no_new_privileges: Bool
    public var limits: Limits
    public var record: [RecordedSyscall]
    public var seccomp: SeccompPolicy
    public var skipped: Skipped
    public var machine: Machine

    public struct Limits: Encodable, Sendable {
        public var memory_bytes: UInt64
        public var pids: UInt64
        public var cpus: Double
        public var upper_bytes: UInt64
        public var tmp_bytes: UInt64
        public var open_files: UInt64
        public var pending_signals: UInt64
        public var message_queue_bytes: UInt64
        public var evidence_bytes: UInt64
        public var command_timeout_seconds: Int?
    }

    public struct Skipped: Encodable, Sendable {
        /// Rules whose includes/excludes do not hold here.
        public var rules_not_applying: Int
        /// Names this machine's libseccomp does not know.
        public var unknown_syscalls: [String]
    }

    public struct Machine: Encodable, Sendable {
        public var architecture: String
        public var kernel: String
        public var libseccomp: String
    }

    public init(_ profile: Profile) {
        let compiler = SeccompCompiler(capabilities: profile.capabilities)
        let resolved = compiler.resolve(profile.seccomp)
        name = profile.name
        description = profile.description
        source = profile.source
        seccomp_source = profile.seccompSource
        user = profile.user.rawValue
        rootfs = profile.rootfs.description
        network = profile.network.rawValue
        capabilities = profile.capabilities.names
        no_new_privileges = profile.noNewPrivileges
        let l = profile.limits
        limits = Limits(memory_bytes: l.memoryBytes, pids: l.pids, cpus: l.cpus, upper_bytes: l.upperBytes, tmp_bytes: l.tmpBytes,
                        open_files: l.openFiles, pending_signals: l.pendingSignals, message_queue_bytes: l.messageQueueBytes,
                        evidence_bytes: l.evidenceBytes,
                        command_timeout_seconds: profile.commandTimeoutSeconds)
        record = profile.record
        seccomp = resolved.policy
        skipped = Skipped(rules_not_applying: resolved.droppedRules, unknown_syscalls: resolved.unknownSyscalls)
        machine = Machine(architecture: compiler.goArchitecture, kernel: "\(compiler.kernel.0).\(compiler.kernel.1)",
                          libseccomp: SeccompPolicyReader.libseccompVersion)
    }

    /// Pretty JSON with sorted keys.
    public static func json(_ profile: Profile) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(EffectiveProfile(profile)), as: UTF8.self)
    }
}
