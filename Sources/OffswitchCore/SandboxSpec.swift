/// Where a sandbox's root filesystem comes from.
public enum RootfsSource: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The host's /usr as a read-only lower layer and an /etc built from an allowlist.
    case host
    /// An unpacked root filesystem at this host path, used as the lower layer.
    case directory(String)
    /// An image of the image store (a reference or an id), its layers the lower layers.
    case image(String)

    /// Parses `host`, `dir:PATH` or `image:REF`.
    public init(parsing text: String) throws(OffswitchError) {
        if text == "host" {
            self = .host
        } else if text.hasPrefix("image:"), text.count > 6 {
            self = .image(String(text.dropFirst(6)))
        } else if text.hasPrefix("dir:"), text.count > 4 {
            let path = String(text.dropFirst(4))
            guard path.hasPrefix("/") else {
                throw OffswitchError(.invalidArgument, "rootfs \"\(text)\": dir: needs an absolute path")
            }
            self = .directory(path)
        } else {
            throw OffswitchError(.invalidArgument, "rootfs \"\(text)\": expected host, dir:PATH or image:REF")
        }
    }

    public var description: String {
        switch self {
        case .host: "host"
        case .directory(let path): "dir:\(path)"
        case .image(let reference): "image:\(reference)"
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = try RootfsSource(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Resource limits of one sandbox. Byte counts are bytes; nil means the runtime's default.
public struct ResourceLimits: Sendable, Equatable, Codable {
    /// Memory of the whole sandbox (cgroup memory limit, swap included where it can be set).
    public var memoryBytes: UInt64
    /// Processes and threads in the whole sandbox.
    public var pids: UInt64
    /// CPU share in cores (0.5 is half a core).
    public var cpus: Double
    /// Size of the tmpfs holding the overlay's upper layers (everything the agent writes).
    public var upperBytes: UInt64
    /// Size of the sandbox's /tmp.
    public var tmpBytes: UInt64
    /// RLIMIT_NOFILE of every process.
    public var openFiles: UInt64
    /// RLIMIT_SIGPENDING of every process: signals queued with their data. The kernel counts them
    /// per user (each sandbox's users are its own), against each caller's limit.
    public var pendingSignals: UInt64
    /// RLIMIT_MSGQUEUE of every process: bytes of POSIX message queues, counted per user.
    public var messageQueueBytes: UInt64
    /// The evidence budget: bytes of event log the sandbox's own doings may fill (EvidenceBudget).
    public var evidenceBytes: UInt64

    /// Docker sets neither of the last two; its containers inherit the daemon's, which are the
    /// kernel's defaults: 819200 message-queue bytes and a pending-signal limit sized from the
    /// host's memory (96365 on a 12 GiB machine). Offswitch takes the same message-queue size and
    /// a fixed 4096 pending signals, so that the bound does not depend on the host.
    public static let defaults = ResourceLimits(
        memoryBytes: 512 << 20, pids: 512, cpus: 1.0, upperBytes: 512 << 20, tmpBytes: 256 << 20, openFiles: 1024)

    public init(memoryBytes: UInt64, pids: UInt64, cpus: Double, upperBytes: UInt64, tmpBytes: UInt64, openFiles: UInt64,
                pendingSignals: UInt64 = 4096, messageQueueBytes: UInt64 = 819_200, evidenceBytes: UInt64 = 64 << 20) {
        self.memoryBytes = memoryBytes
        self.pids = pids
        self.cpus = cpus
        self.upperBytes = upperBytes
        self.tmpBytes = tmpBytes
        self.openFiles = openFiles
        self.pendingSignals = pendingSignals
        self.messageQueueBytes = messageQueueBytes
        self.evidenceBytes = evidenceBytes
    }

    /// Rejects limits that cannot work, naming the field.
    public func validate() throws(OffswitchError) {
        func fail(_ field: String, _ reason: String) -> OffswitchError {
            OffswitchError(.invalidArgument, "limits.\(field): \(reason)")
        }
        if memoryBytes < 16 << 20 { throw fail("memory", "\(memoryBytes) bytes is below the 16 MiB minimum") }
        if pids < 8 { throw fail("pids", "\(pids) is below the minimum of 8") }
        if !(cpus > 0.01 && cpus <= 1024) { throw fail("cpus", "\(cpus) is not between 0.01 and 1024") }
        if upperBytes < 4 << 20 { throw fail("upper", "\(upperBytes) bytes is below the 4 MiB minimum") }
        if tmpBytes < 1 << 20 { throw fail("tmp", "\(tmpBytes) bytes is below the 1 MiB minimum") }
        if openFiles < 64 || openFiles > 1 << 20 { throw fail("open_files", "\(openFiles) is not between 64 and 1048576") }
        if pendingSignals < 32 || pendingSignals > 1 << 20 { throw fail("pending_signals", "\(pendingSignals) is not between 32 and 1048576") }
        if messageQueueBytes > 64 << 20 { throw fail("message_queues", "\(messageQueueBytes) bytes is above the 64 MiB maximum") }
        if evidenceBytes < 1 << 20 || evidenceBytes > 16 << 30 {
            throw fail("evidence", "\(evidenceBytes) bytes is not between 1 MiB and 16 GiB")
        }
    }
}

/// What to build. A profile fills this in (`Profile.sandboxSpec`); the runtime only reads it.
public struct SandboxSpec: Sendable, Equatable, Codable {
    public var rootfs: RootfsSource
    /// Hostname inside; defaults to `offswitch-` and the first 8 characters of the id.
    public var hostname: String?
    public var limits: ResourceLimits
    /// The profile this came from, for reports.
    public var profileName: String
    /// The seccomp policy; nil means the bundled Docker default.
    public var seccomp: SeccompPolicy?
    /// Where `seccomp` came from, for error messages.
    public var seccompSource: String?
    /// Capabilities of commands run as root (Docker's default set unless told otherwise).
    public var rootCapabilities: CapabilitySet
    /// `no_new_privs` on every process of the sandbox (false, Docker's default: setuid programs
    /// work, within `rootCapabilities`).
    public var noNewPrivileges: Bool
    /// Syscalls the evidence recorder is to see.
    public var record: [RecordedSyscall]
    /// The sandbox's own host ids, assigned when it is created (nil in a spec not yet launched;
    /// whatever a caller puts here is replaced).
    public var userNamespace: UserNamespaceMapping?
    /// Default per-command wall-clock limit in seconds; nil means none.
    public var commandTimeoutSeconds: Int?
    /// Who commands run as unless a request says otherwise.
    public var defaultUser: SandboxUser
    /// Set when the sandbox's creator chose `defaultUser` (`--user`): an image's `User` then
    /// does not replace it.
    public var defaultUserChosen: Bool
    /// Whose network namespace the sandbox lives in (its own unless it joins a running one).
    public var network: SandboxNetwork
    /// Extra lines of /etc/hosts, after the sandbox's own.
    public var hosts: [HostEntry]
    /// Docker's `read_only`: `/`, `/usr` and `/tmp` are read-only inside once the harness's
    /// files are written (`Sandbox.create`'s `prepare`); `/dev/shm` and `tmpfs` stay writable.
    public var readOnlyRoot: Bool
    /// tmpfs mounts made while the root is built; one at `/tmp` takes the place of the sandbox's own.
    public var tmpfs: [TmpfsMount]

    public init(
        rootfs: RootfsSource = .host, hostname: String? = nil, limits: ResourceLimits = .defaults,
        seccomp: SeccompPolicy? = nil, rootCapabilities: CapabilitySet = .dockerDefault
    ) {
        self.rootfs = rootfs
        self.hostname = hostname
        self.limits = limits
        self.profileName = "docker"
        self.seccomp = seccomp
        self.seccompSource = nil
        self.rootCapabilities = rootCapabilities
        self.noNewPrivileges = false
        self.record = []
        self.userNamespace = nil
        self.commandTimeoutSeconds = nil
        self.defaultUser = .agent
        self.defaultUserChosen = false
        self.network = .own
        self.hosts = []
        self.readOnlyRoot = false
        self.tmpfs = []
    }
}

/// Who a command runs as.
public enum SandboxUser: String, Sendable, Codable, CaseIterable {
    /// The unprivileged `user` (uid 1000, home /home/user), as in Palisade's image.
    case agent = "user"
    case root

    public static let agentUID: UInt32 = 1000
    public static let agentGID: UInt32 = 1000
    public static let agentHome = "/home/user"
}

/// A user namespace in which uid and gid 0 inside are `hostUID` and `hostGID` outside, for
/// `size` consecutive ids: every sandbox's own slot of the host ids (HostIDSlot).
public struct UserNamespaceMapping: Sendable, Equatable, Codable {
    public var hostUID: UInt32
    public var hostGID: UInt32
    public var size: UInt32

    public init(hostUID: UInt32, hostGID: UInt32, size: UInt32) {
        self.hostUID = hostUID
        self.hostGID = hostGID
        self.size = size
    }
}
