/// Messages on the control channel between the host and PID 1 (`offswitch-init`).
///
/// The channel is a SOCK_SEQPACKET socket at fd 3 of PID 1, one message per packet, with
/// descriptors attached where a request says so. Each exec gets its own status pipe, so command
/// I/O and exit never pass through PID 1's socket.
public enum ControlProtocol {
    /// Bumped whenever a message changes shape; PID 1 refuses a host with another version.
    public static let version: UInt32 = 4
    /// Largest packet either side sends (argv and environment included).
    public static let maxMessageBytes = 4 << 20
}

/// A user identity for a process inside the sandbox.
public struct Identity: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    /// Capability mask for uid 0; ignored for any other uid (they get none).
    public var capabilities: UInt64

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = [], capabilities: UInt64 = 0) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.capabilities = capabilities
    }

    func encode(_ w: inout WireWriter) {
        w.u32(uid)
        w.u32(gid)
        w.u32(UInt32(groups.count))
        for group in groups { w.u32(group) }
        w.u64(capabilities)
    }

    static func decode(_ r: inout WireReader) throws(OffswitchError) -> Identity {
        let uid = try r.u32(), gid = try r.u32()
        let count = Int(try r.u32())
        guard count <= 64 else { throw OffswitchError(.protocolError, "identity lists \(count) groups (max 64)") }
        var groups: [UInt32] = []
        for _ in 0..<count { groups.append(try r.u32()) }
        return Identity(uid: uid, gid: gid, groups: groups, capabilities: try r.u64())
    }
}

/// An overlay mount: lower layers (top first), upper and work directories, all host paths.
public struct OverlayLayout: Sendable, Equatable {
    public var lower: [String]
    public var upper: String
    public var work: String

    public init(lower: [String], upper: String, work: String) {
        self.lower = lower
        self.upper = upper
        self.work = work
    }

    /// Mount options. `index=on,nfs_export=on` lets fanotify report names and writer pids.
    public var mountOptions: String {
        "lowerdir=\(lower.joined(separator: ":")),upperdir=\(upper),workdir=\(work),index=on,nfs_export=on"
    }
}

/// A resource limit PID 1 sets on itself before serving, inherited by every command.
public struct ResourceLimit: Sendable, Equatable {
    public var resource: Int32
    public var soft: UInt64
    public var hard: UInt64

    public init(resource: Int32, soft: UInt64, hard: UInt64) {
        self.resource = resource
        self.soft = soft
        self.hard = hard
    }
}

/// Everything PID 1 needs to finish building the sandbox.
public struct SetupOrder: Sendable, Equatable {
    public var hostname: String
    /// Host path where PID 1 mounts the merged root (only in its own mount namespace).
    public var rootMountPoint: String
    public var rootOverlay: OverlayLayout
    /// Second overlay mounted at /usr (the `host` rootfs shares the host's /usr this way).
    public var usrOverlay: OverlayLayout?
    public var tmpSizeBytes: UInt64
    /// PID 1's real and saved uid: the agent's, so that the agent may signal it.
    public var agentUID: UInt32
    public var agentGID: UInt32
    /// PID 1 keeps only these capabilities after setup (and bounds every command by them).
    public var capabilityBound: UInt64
    /// Set `no_new_privs` before the filter. Without it PID 1 holds CAP_SYS_ADMIN (never in the
    /// bounding set) until the filter is installed, as the kernel requires, and gives it up then.
    public var noNewPrivileges: Bool
    /// Classic BPF, 8 bytes per instruction, installed after setup; empty means none.
    public var seccompProgram: [UInt8]
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    public var seccompFlags: UInt32
    public var limits: [ResourceLimit]
    /// The sandbox's user namespace, whose fd comes attached with the fd of the network namespace
    /// it owns: PID 1 joins the network namespace first, idmaps the overlays' lower layers through
    /// the user namespace, gives what it mounts to the namespace's root, then joins it.
    public var userNamespace: UserNamespaceMapping
    /// Install the filter with a notification listener and send it to the host with `ready`.
    public var recorderListener: Bool
    /// The attached network namespace is the sandbox's own (false: another sandbox's, joined).
    /// Only the owner sets the namespace's sysctls.
    public var ownsNetwork: Bool
    /// Mounted after the root, `/usr`, `/dev` and `/tmp`, parents first; errors name their index.
    public var tmpfs: [TmpfsMount]

    public init(
        hostname: String, rootMountPoint: String, rootOverlay: OverlayLayout, usrOverlay: OverlayLayout?,
        tmpSizeBytes: UInt64, agentUID: UInt32, agentGID: UInt32, capabilityBound: UInt64, noNewPrivileges: Bool,
        seccompProgram: [UInt8], seccompFlags: UInt32 = 0, limits: [ResourceLimit], userNamespace: UserNamespaceMapping,
        recorderListener: Bool = false, ownsNetwork: Bool = true, tmpfs: [TmpfsMount] = []
    ) {
        self.recorderListener = recorderListener
        self.ownsNetwork = ownsNetwork
        self.tmpfs = tmpfs
        self.seccompFlags = seccompFlags
        self.userNamespace = userNamespace
        self.hostname = hostname
        self.rootMountPoint = rootMountPoint
        self.rootOverlay = rootOverlay
        self.usrOverlay = usrOverlay
        self.tmpSizeBytes = tmpSizeBytes
        self.agentUID = agentUID
        self.agentGID = agentGID
        self.capabilityBound = capabilityBound
        self.noNewPrivileges = noNewPrivileges
        self.seccompProgram = seccompProgram
        self.limits = limits
    }
}

/// Run a command. Attached fds: stdin, stdout, stderr, status pipe (write end).
public struct ExecOrder: Sendable, Equatable {
    public var argv: [String]
    public var environment: [String]
    public var cwd: String
    public var identity: Identity
    /// 0 means no limit.
    public var timeoutMilliseconds: UInt64
    /// stdin is a terminal that should become the controlling terminal.
    public var controllingTTY: Bool

    public init(argv: [String], environment: [String], cwd: String, identity: Identity,
                timeoutMilliseconds: UInt64, controllingTTY: Bool) {
        self.argv = argv
        self.environment = environment
        self.cwd = cwd
        self.identity = identity
        self.timeoutMilliseconds = timeoutMilliseconds
        self.controllingTTY = controllingTTY
    }
}

/// Open a file inside the sandbox as `identity`. Attached fd: the reply socket.
public struct FileOrder: Sendable, Equatable {
    public enum Mode: UInt8, Sendable { case read = 0, write = 1 }
    public var path: String
    public var mode: Mode
    public var createMode: UInt32
    public var identity: Identity

    public init(path: String, mode: Mode, createMode: UInt32, identity: Identity) {
        self.path = path
        self.mode = mode
        self.createMode = createMode
        self.identity = identity
    }
}

/// Host to PID 1.
public enum InitRequest: Sendable, Equatable {
    case setup(SetupOrder)
    case exec(ExecOrder)
    case openFile(FileOrder)
    /// Open a pty pair inside; master and slave are sent back over the attached reply socket.
    case openPTY

    /// How many fds must travel with the message.
    public var attachedDescriptors: Int {
        switch self {
        case .setup: 2  // the user namespace and its network namespace
        case .exec: 4
        case .openFile, .openPTY: 1
        }
    }

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        w.u32(ControlProtocol.version)
        switch self {
        case .setup(let o):
            w.u8(1)
            w.string(o.hostname)
            w.string(o.rootMountPoint)
            encode(o.rootOverlay, &w)
            w.bool(o.usrOverlay != nil)
            if let usr = o.usrOverlay { encode(usr, &w) }
            w.u64(o.tmpSizeBytes)
            w.u32(o.agentUID)
            w.u32(o.agentGID)
            w.u64(o.capabilityBound)
            w.bool(o.noNewPrivileges)
            w.data(o.seccompProgram)
            w.u32(o.seccompFlags)
            w.u32(UInt32(o.limits.count))
            for limit in o.limits {
                w.i32(limit.resource)
                w.u64(limit.soft)
                w.u64(limit.hard)
            }
            w.u32(o.userNamespace.hostUID)
            w.u32(o.userNamespace.hostGID)
            w.u32(o.userNamespace.size)
            w.bool(o.recorderListener)
            w.bool(o.ownsNetwork)
            w.u32(UInt32(o.tmpfs.count))
            for mount in o.tmpfs {
                w.string(mount.path)
                w.u64(mount.sizeBytes)
                w.u32(mount.mode)
            }
        case .exec(let o):
            w.u8(2)
            w.strings(o.argv)
            w.strings(o.environment)
            w.string(o.cwd)
            o.identity.encode(&w)
            w.u64(o.timeoutMilliseconds)
            w.bool(o.controllingTTY)
        case .openFile(let o):
            w.u8(3)
            w.string(o.path)
            w.u8(o.mode.rawValue)
            w.u32(o.createMode)
            o.identity.encode(&w)
        case .openPTY:
            w.u8(4)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(OffswitchError) -> InitRequest {
        var r = WireReader(bytes)
        let version = try r.u32()
        guard version == ControlProtocol.version else {
            throw OffswitchError(.protocolError, "control protocol version \(version), expected \(ControlProtocol.version)")
        }
        let request: InitRequest
        switch try r.u8() {
        case 1:
            let hostname = try r.string(), mountPoint = try r.string()
            let root = try decodeOverlay(&r)
            let usr = try r.bool() ? try decodeOverlay(&r) : nil
            let tmpSize = try r.u64(), uid = try r.u32(), gid = try r.u32(), bound = try r.u64()
            let noNewPrivileges = try r.bool()
            let program = try r.data()
            let flags = try r.u32()
            let count = Int(try r.u32())
            guard count <= 64 else { throw OffswitchError(.protocolError, "setup lists \(count) limits") }
            var limits: [ResourceLimit] = []
            for _ in 0..<count {
                limits.append(ResourceLimit(resource: try r.i32(), soft: try r.u64(), hard: try r.u64()))
            }
            let mapping = UserNamespaceMapping(hostUID: try r.u32(), hostGID: try r.u32(), size: try r.u32())
            let listener = try r.bool(), ownsNetwork = try r.bool()
            let mountCount = Int(try r.u32())
            guard mountCount <= TmpfsMount.maxMounts else { throw OffswitchError(.protocolError, "setup lists \(mountCount) tmpfs mounts") }
            var mounts: [TmpfsMount] = []
            for _ in 0..<mountCount {
                mounts.append(TmpfsMount(path: try r.string(), sizeBytes: try r.u64(), mode: try r.u32()))
            }
            request = .setup(SetupOrder(
                hostname: hostname, rootMountPoint: mountPoint, rootOverlay: root, usrOverlay: usr,
                tmpSizeBytes: tmpSize, agentUID: uid, agentGID: gid, capabilityBound: bound, noNewPrivileges: noNewPrivileges,
                seccompProgram: program, seccompFlags: flags, limits: limits, userNamespace: mapping,
                recorderListener: listener, ownsNetwork: ownsNetwork, tmpfs: mounts))
        case 2:
            request = .exec(ExecOrder(
                argv: try r.strings(), environment: try r.strings(), cwd: try r.string(),
                identity: try Identity.decode(&r), timeoutMilliseconds: try r.u64(), controllingTTY: try r.bool()))
        case 3:
            let path = try r.string()
            guard let mode = FileOrder.Mode(rawValue: try r.u8()) else {
                throw OffswitchError(.protocolError, "unknown file mode")
            }
            request = .openFile(FileOrder(path: path, mode: mode, createMode: try r.u32(), identity: try Identity.decode(&r)))
        case 4:
            request = .openPTY
        case let tag:
            throw OffswitchError(.protocolError, "unknown request tag \(tag)")
        }
        guard r.isAtEnd else { throw OffswitchError(.protocolError, "trailing bytes after request") }
        return request
    }

    private func encode(_ overlay: OverlayLayout, _ w: inout WireWriter) {
        w.strings(overlay.lower)
        w.string(overlay.upper)
        w.string(overlay.work)
    }

    private static func decodeOverlay(_ r: inout WireReader) throws(OffswitchError) -> OverlayLayout {
        OverlayLayout(lower: try r.strings(), upper: try r.string(), work: try r.string())
    }
}

/// Who shut the sandbox down, as PID 1 saw it.
public struct ShutdownInfo: Sendable, Equatable, Codable {
    public var signal: Int32
    /// The sender's pid inside the sandbox; 0 when the signal came from outside (the host).
    public var senderPID: Int32
    public var senderUID: UInt32
    /// Wall-clock time in nanoseconds since the epoch when PID 1 received the signal.
    public var unixNanoseconds: UInt64
    /// The signal's si_code: how the kernel says it was sent. Only SI_USER (kill), SI_TKILL
    /// (tgkill, tkill) and the kernel's own positive codes make `senderPID` the kernel's word; the
    /// other negative codes come from a sender that wrote its own siginfo (rt_sigqueueinfo), pid
    /// and all. nil in records made before PID 1 reported it.
    public var code: Int32?

    public init(signal: Int32, senderPID: Int32, senderUID: UInt32, unixNanoseconds: UInt64, code: Int32? = nil) {
        self.signal = signal
        self.senderPID = senderPID
        self.senderUID = senderUID
        self.unixNanoseconds = unixNanoseconds
        self.code = code
    }
}

/// PID 1 to host, on the control socket.
public enum InitReport: Sendable, Equatable {
    /// `listener`: the seccomp notification fd is attached (the recorder's).
    case ready(capabilities: UInt64, listener: Bool)
    /// Setup failed: the stage names the step and its object.
    case setupFailed(stage: String, errno: Int32)
    case shutdown(ShutdownInfo)
    /// Setup refused what the sandbox's creator asked for (not a failure of the host): the
    /// message names the field as the API does and why, `tmpfs[1].path: /data is a symbolic link`.
    case refused(String)

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .ready(let caps, let listener):
            w.u8(1)
            w.u64(caps)
            w.bool(listener)
        case .setupFailed(let stage, let errno):
            w.u8(2)
            w.string(stage)
            w.i32(errno)
        case .shutdown(let info):
            w.u8(3)
            w.i32(info.signal)
            w.i32(info.senderPID)
            w.u32(info.senderUID)
            w.u64(info.unixNanoseconds)
            w.i32(info.code ?? 0)
        case .refused(let message):
            w.u8(4)
            w.string(message)
        }
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(OffswitchError) -> InitReport {
        var r = WireReader(bytes)
        switch try r.u8() {
        case 1: return .ready(capabilities: try r.u64(), listener: try r.bool())
        case 2: return .setupFailed(stage: try r.string(), errno: try r.i32())
        case 3:
            return .shutdown(ShutdownInfo(signal: try r.i32(), senderPID: try r.i32(), senderUID: try r.u32(),
                                          unixNanoseconds: try r.u64(), code: try r.i32()))
        case 4: return .refused(try r.string())
        case let tag: throw OffswitchError(.protocolError, "unknown report tag \(tag)")
        }
    }
}

/// PID 1 to host, on an exec's status pipe. Fixed 24-byte records (atomic pipe writes).
public enum ExecStatus: Sendable, Equatable {
    case started(pid: Int32)
    /// The command never ran: the stage (an `ofs_stage` value) and errno.
    case spawnFailed(stage: Int32, errno: Int32)
    /// Raw wait status; `timedOut` when PID 1 killed it at its deadline.
    case exited(status: Int32, timedOut: Bool)

    public static let recordSize = 24

    public func encoded() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .started(let pid):
            w.u32(1); w.i32(pid); w.i32(0)
        case .spawnFailed(let stage, let errno):
            w.u32(2); w.i32(stage); w.i32(errno)
        case .exited(let status, let timedOut):
            w.u32(3); w.i32(status); w.i32(timedOut ? 1 : 0)
        }
        w.u64(0)
        w.u32(0)
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(OffswitchError) -> ExecStatus {
        guard bytes.count == recordSize else { throw OffswitchError(.protocolError, "status record of \(bytes.count) bytes") }
        var r = WireReader(bytes)
        let tag = try r.u32(), a = try r.i32(), b = try r.i32()
        switch tag {
        case 1: return .started(pid: a)
        case 2: return .spawnFailed(stage: a, errno: b)
        case 3: return .exited(status: a, timedOut: b != 0)
        default: throw OffswitchError(.protocolError, "unknown status tag \(tag)")
        }
    }
}
