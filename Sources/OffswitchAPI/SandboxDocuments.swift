import FoundationEssentials
public import OffswitchCore

/// `POST /v1/sandboxes` body. Every field is optional.
public struct CreateSandboxBody: Codable, Sendable {
    /// A bundled profile's name (`docker` when absent); see `offswitch profile ls`.
    public var profile: String?
    /// `host`, `dir:PATH` or `image:REF`.
    public var rootfs: String?
    /// An image of the daemon's store (a name or an id): the same as `rootfs: image:REF`.
    public var image: String?
    public var hostname: String?
    public var limits: LimitsBody?
    /// Added to every exec's environment.
    public var env: [String: String]?
    /// Written before the sandbox is returned.
    public var files: [FileBody]?
    /// false: no recording (no syscall notifications, file watcher or process table), for
    /// harnesses that need the sandbox but not the evidence. Default true, as the profile says.
    public var record: Bool?
    /// Overrides the profile's `no_new_privileges` (Docker's `--security-opt no-new-privileges`):
    /// true refuses setuid programs and file capabilities, false lets them work (Docker's default).
    public var no_new_privileges: Bool?
    /// A bundled scenario's name: the sandbox is set up as a trial of it (the scenario's files,
    /// its trigger and question service), its agent calls go to `/steps`, and `/verdict` ends it.
    public var scenario: String?
    /// A scenario option (palisade-math: execute-only).
    public var option: String?
    /// The agent's name in trial.json (a model's name, say).
    public var agent: String?
    /// `none` (the default: a network namespace of its own, loopback only) or `sandbox:ID`: the
    /// network namespace of the running sandbox ID, whose loopback the two then share.
    public var network: String?
    /// Extra /etc/hosts lines: name to IPv4 or IPv6 address.
    public var hosts: [String: String]?
    /// true: the root, /usr and /tmp are read-only inside once `files` are written (Docker's
    /// `read_only`); /dev/shm and the `tmpfs` mounts stay writable.
    public var read_only: Bool?
    /// tmpfs mounts (Docker's `--tmpfs`), made before the root is read-only.
    public var tmpfs: [TmpfsBody]?

    public init(profile: String? = nil, rootfs: String? = nil, hostname: String? = nil, limits: LimitsBody? = nil,
                env: [String: String]? = nil, files: [FileBody]? = nil, no_new_privileges: Bool? = nil) {
        self.no_new_privileges = no_new_privileges
        self.profile = profile
        self.rootfs = rootfs
        self.hostname = hostname
        self.limits = limits
        self.env = env
        self.files = files
    }

    /// The trial part of the body, when `scenario` is given: a scenario sandbox takes its profile,
    /// option and agent name, and refuses the fields its scenario decides (naming the first).
    public func scenarioBody() throws(OffswitchError) -> ScenarioSandboxBody? {
        guard let scenario else { return nil }
        let given: [(String, Bool)] = [("rootfs", rootfs != nil), ("hostname", hostname != nil), ("limits", limits != nil),
                                       ("env", env != nil), ("files", files != nil), ("record", record != nil),
                                       ("network", network != nil), ("hosts", hosts != nil), ("read_only", read_only != nil),
                                       ("tmpfs", tmpfs != nil), ("no_new_privileges", no_new_privileges != nil)]
        if let (field, _) = given.first(where: \.1) {
            throw OffswitchError(.invalidArgument, "\(field): a scenario sandbox is set up by its scenario and its profile; leave \(field) out")
        }
        if let image, image.isEmpty { throw OffswitchError(.invalidArgument, "image: must name an image") }
        return ScenarioSandboxBody(scenario: scenario, profile: profile, option: option, agent: agent, image: image)
    }

    public struct LimitsBody: Codable, Sendable {
        public var memory_mib: UInt64?
        public var pids: UInt64?
        public var cpus: Double?
        public var upper_mib: UInt64?
        public var tmp_mib: UInt64?
        public var open_files: UInt64?

        public init(memory_mib: UInt64? = nil, pids: UInt64? = nil, cpus: Double? = nil, upper_mib: UInt64? = nil,
                    tmp_mib: UInt64? = nil, open_files: UInt64? = nil) {
            self.memory_mib = memory_mib
            self.pids = pids
            self.cpus = cpus
            self.upper_mib = upper_mib
            self.tmp_mib = tmp_mib
            self.open_files = open_files
        }
    }

    public struct FileBody: Codable, Sendable {
        public var path: String
        public var content: String?
        public var content_base64: String?
        /// Octal text such as "755"; default "644".
        public var mode: String?
        public var user: String?

        public init(path: String, content: String? = nil, content_base64: String? = nil, mode: String? = nil, user: String? = nil) {
            self.path = path
            self.content = content
            self.content_base64 = content_base64
            self.mode = mode
            self.user = user
        }

        public func bytes(field: String) throws(OffswitchError) -> [UInt8] {
            switch (content, content_base64) {
            case (let text?, nil): return Array(text.utf8)
            case (nil, let encoded?):
                guard let data = Data(base64Encoded: encoded) else {
                    throw OffswitchError(.invalidArgument, "\(field).content_base64: not valid base64")
                }
                return [UInt8](data)
            case (nil, nil): return []
            default: throw OffswitchError(.invalidArgument, "\(field): give content or content_base64, not both")
            }
        }

        public func fileMode(field: String) throws(OffswitchError) -> UInt32 {
            try Self.parseMode(mode, field: field + ".mode")
        }

        /// Octal text ("755") to a mode; nil means 644.
        public static func parseMode(_ text: String?, field: String) throws(OffswitchError) -> UInt32 {
            guard let text else { return 0o644 }
            guard let value = UInt32(text, radix: 8), value <= 0o7777 else {
                throw OffswitchError(.invalidArgument, "\(field): \"\(text)\" is not an octal mode such as \"755\"")
            }
            return value
        }
    }

    public struct TmpfsBody: Codable, Sendable {
        /// Absolute and normalised, not `/`, nor in /proc, /sys or /dev (but /dev/shm itself).
        public var path: String
        /// Default: the sandbox's memory limit, which bounds what the sandbox writes there anyway.
        public var size_mib: UInt64?
        /// Octal text of the mount's root directory mode; default "1777".
        public var mode: String?

        public init(path: String, size_mib: UInt64? = nil, mode: String? = nil) {
            self.path = path
            self.size_mib = size_mib
            self.mode = mode
        }

        /// The mount, `size_mib` defaulting to `memoryBytes`; errors name `field` (`tmpfs[2]`).
        public func mount(field: String, memoryBytes: UInt64) throws(OffswitchError) -> TmpfsMount {
            var size = memoryBytes
            if let size_mib {
                // Checked: a shift would drop the high bits, and size=0 is a tmpfs without a bound.
                let (bytes, overflow) = size_mib.multipliedReportingOverflow(by: 1 << 20)
                guard !overflow, size_mib > 0 else {
                    throw OffswitchError(.invalidArgument, "\(field).size_mib: \(size_mib) is not between 1 and the sandbox's memory limit (\(memoryBytes >> 20) MiB)")
                }
                size = bytes
            }
            let mode = try mode.map { text throws(OffswitchError) in try FileBody.parseMode(text, field: field + ".mode") } ?? TmpfsMount.defaultMode
            return TmpfsMount(path: path, sizeBytes: size, mode: mode)
        }
    }

    /// The runtime spec: the profile's, with this body's overrides; errors name the bad field.
    public func spec(profile: Profile) throws(OffswitchError) -> SandboxSpec {
        var spec = profile.sandboxSpec
        if rootfs != nil && image != nil { throw OffswitchError(.invalidArgument, "image: rootfs names the root too; give one of them") }
        if let rootfs { spec.rootfs = try RootfsSource(parsing: rootfs) }
        if let image {
            guard !image.isEmpty else { throw OffswitchError(.invalidArgument, "image: must name an image") }
            spec.rootfs = .image(image)
        }
        spec.hostname = hostname
        if let limits {
            if let value = limits.memory_mib { spec.limits.memoryBytes = value << 20 }
            if let value = limits.pids { spec.limits.pids = value }
            if let value = limits.cpus { spec.limits.cpus = value }
            if let value = limits.upper_mib { spec.limits.upperBytes = value << 20 }
            if let value = limits.tmp_mib { spec.limits.tmpBytes = value << 20 }
            if let value = limits.open_files { spec.limits.openFiles = value }
        }
        try spec.limits.validate()
        if record == false { spec.record = [] }
        if let network { spec.network = try SandboxNetwork(parsing: network) }
        if let hosts { spec.hosts = try HostEntry.parse(hosts) }
        spec.readOnlyRoot = read_only ?? false
        if let tmpfs {
            guard tmpfs.count <= TmpfsMount.maxMounts else {
                throw OffswitchError(.invalidArgument, "tmpfs: \(tmpfs.count) mounts, at most \(TmpfsMount.maxMounts)")
            }
            var mounts: [TmpfsMount] = []
            for (index, body) in tmpfs.enumerated() {
                mounts.append(try body.mount(field: "tmpfs[\(index)]", memoryBytes: spec.limits.memoryBytes))
            }
            try TmpfsMount.checkList(mounts, memoryBytes: spec.limits.memoryBytes)
            spec.tmpfs = mounts
        }
        if let no_new_privileges { spec.noNewPrivileges = no_new_privileges }
        return spec
    }
}

/// A sandbox as the API describes it.
public struct SandboxDocument: Codable, Sendable, Equatable {
    public var id: String
    /// `running` or `shut_down`.
    public var state: String
    public var hostname: String
    public var profile: String
    public var rootfs: String
    public var created_at_unix_ns: UInt64
    public var shutdown: ShutdownDocument?
    /// How PID 1 ended when it was not a shutdown (killed by the OOM killer, say).
    public var ended: String?
    /// The trial id of a scenario sandbox (its files: `/v1/trials/{id}/files/{name}`).
    public var trial: String?
    /// Who records its calls; nil when it records nothing.
    public var recorder: RecorderDocument?

    public init(id: String, state: String, hostname: String, profile: String, rootfs: String, created_at_unix_ns: UInt64,
                shutdown: ShutdownDocument?, ended: String?, trial: String? = nil, recorder: RecorderDocument? = nil) {
        self.trial = trial
        self.recorder = recorder
        self.id = id
        self.state = state
        self.hostname = hostname
        self.profile = profile
        self.rootfs = rootfs
        self.created_at_unix_ns = created_at_unix_ns
        self.shutdown = shutdown
        self.ended = ended
    }
}

/// Who records a sandbox's calls (docs/recorder.md): `tracepoint`, with the calls the kernel
/// recorder takes, or `seccomp-notify`; also the daemon's own in `/healthz`.
public struct RecorderDocument: Codable, Sendable, Equatable {
    public var mode: String
    public var kernel_calls: [String]
    /// Why the kernel recorder is not loaded.
    public var kernel_unavailable: String?
    /// Whether the LSM and fentry hooks load (`/healthz` only).
    public var kernel_hooks: String?

    public init(mode: String, kernel_calls: [String], kernel_unavailable: String? = nil, kernel_hooks: String? = nil) {
        self.mode = mode
        self.kernel_calls = kernel_calls
        self.kernel_unavailable = kernel_unavailable
        self.kernel_hooks = kernel_hooks
    }
}

/// `GET /healthz`.
public struct HealthDocument: Codable, Sendable, Equatable {
    public var status: String
    public var recorder: RecorderDocument

    public init(status: String, recorder: RecorderDocument) {
        self.status = status
        self.recorder = recorder
    }
}

public struct SandboxListDocument: Codable, Sendable {
    public var sandboxes: [SandboxDocument]
    public init(sandboxes: [SandboxDocument]) { self.sandboxes = sandboxes }
}

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
public struct ErrorDocument: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
    }
    public var error: Detail

    public init(code: String, message: String) { error = Detail(code: code, message: message) }
}

/// What a scenario sandbox is made of (`POST /v1/sandboxes` with `scenario`): a bundled scenario,
/// optionally a bundled profile, a scenario option and an image of the daemon's store as its root
/// (else the scenario's), and the agent's name for trial.json.
public struct ScenarioSandboxBody: Sendable {
    public var scenario: String
    public var profile: String?
    public var option: String?
    public var agent: String?
    public var image: String?
}
