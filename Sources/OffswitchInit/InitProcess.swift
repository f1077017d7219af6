import COffswitch
import Glibc
import OffswitchCore

/// PID 1 of a sandbox. It finishes setup inside the new namespaces, then serves the host's
/// requests on fd 3 until the host goes away or someone sends SIGTERM, which shuts the sandbox
/// down for real: PID 1 exits and the kernel kills everything else in the namespace.
///
/// Strictly single-threaded: no Foundation, no Dispatch, no Swift concurrency. It forks (through
/// COffswitch) and that is only safe with one thread.
public enum InitProcess {
    static let control: Int32 = 3
    /// CAP_KILL, CAP_SETGID, CAP_SETUID: ending commands and running them as their user.
    static let ownCapabilities: UInt64 = 1 << 5 | 1 << 6 | 1 << 7
    /// CAP_SYS_ADMIN: what the kernel asks of a caller that installs a seccomp filter without
    /// no_new_privs. PID 1 holds it only until its filter is in place.
    static let installerCapability: UInt64 = 1 << 21

    public static func main() -> Never {
        umask(0)
        _ = ofs_set_process_name("offswitch-init")
        // dup2 onto fd 3 cleared close-on-exec; nothing we start may inherit the control socket.
        _ = ofs_set_cloexec(control, 1)
        let order: SetupOrder
        var namespaces = Namespaces(user: -1, network: -1)
        do throws(OffswitchError) {
            let received = try receiveRequest()
            guard case .setup(let setup)? = received?.request else {
                throw OffswitchError(.protocolError, "first request was not setup")
            }
            order = setup
            namespaces = Namespaces(user: received!.descriptors[0], network: received!.descriptors[1])
        } catch {
            report(.setupFailed(stage: error.message, errno: error.errno ?? 0))
            _exit(1)
        }
        do throws(OffswitchError) {
            let (signals, listener) = try setUp(order, namespaces)
            let ready = InitReport.ready(capabilities: UInt64(bitPattern: ofs_capabilities_effective()), listener: listener >= 0)
            report(ready, descriptors: listener >= 0 ? [listener] : [])
            // Only the host may hold the listener: if it dies, recorded calls fail (ENOSYS), never pass.
            if listener >= 0 { close(listener) }
            var loop = ServeLoop(control: control, signals: signals, order: order)
            loop.run()
        } catch {
            // invalid_argument: what the creator asked for cannot be built (a tmpfs path through a
            // symlink); anything else is a failure of setup.
            report(error.code == .invalidArgument ? .refused(error.message) : .setupFailed(stage: error.message, errno: error.errno ?? 0))
            _exit(1)
        }
    }

    /// The sandbox's user namespace and its network namespace (its own, or the one it joins), as
    /// the host sent them.
    struct Namespaces {
        let user: Int32
        let network: Int32
    }

    /// Docker's network sysctls for a container's own network namespace (moby#41030): any user
    /// binds ports below 1024 and opens ICMP echo sockets. The group range is read in the
    /// writer's user namespace, so it is written once PID 1 is in the sandbox's: every group
    /// inside, shown as `0 65535` (Docker's `0 2147483647` has ids no sandbox maps).
    static let unprivilegedPorts = ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
    static let pingGroups = ("/proc/sys/net/ipv4/ping_group_range", "0 65535")

    /// Everything between "new namespaces" and "ready to serve", in dependency order.
    /// Returns the signalfd and the seccomp listener (-1 without recording).
    private static func setUp(_ order: SetupOrder, _ namespaces: Namespaces) throws(OffswitchError) -> (Int32, Int32) {
        // The network namespace the sandbox's user namespace owns, so that root inside has its
        // network capabilities there (raw sockets under `docker`); the one clone made is dropped.
        // Or another sandbox's, joined (`ownsNetwork` false): joined with the host's powers, it
        // stays owned by that sandbox's user namespace, so root here has none of those there.
        try systemCall("setns(network namespace)") { ofs_setns(namespaces.network, Int32(OFS_CLONE_NEWNET)) }
        close(namespaces.network)
        // The host moved us into our cgroups before sending setup; root the cgroup namespace here.
        try systemCall("unshare(cgroup)") { ofs_unshare(OFS_CLONE_NEWCGROUP) }
        try systemCall("sethostname(\(order.hostname))") { sethostname(order.hostname, order.hostname.utf8.count) }
        // Already up in a joined namespace; setting it again changes nothing.
        try systemCall("ioctl(lo, SIOCSIFFLAGS up)") { ofs_loopback_up() }
        // The sysctls are the namespace's, so only its owner sets them. A joiner must not: its
        // ping_group_range, read in its own user namespace, would name other host gids and take
        // the ping sockets away from the first sandbox's users.
        var pingRange: Int32 = -1
        if order.ownsNetwork {
            try writeSysctl(try openSysctl(unprivilegedPorts.0), unprivilegedPorts)
            // Opened now: /proc/sys is read-only once the root is built.
            pingRange = try openSysctl(pingGroups.0)
        }
        try RootBuilder(order: order, userNamespace: namespaces.user).build()
        // Mounts are done with the host's powers, so they belong to the host's user namespace
        // and nobody inside can undo them. From here on, PID 1 and everything it starts live
        // in the sandbox's user namespace, where root is an unprivileged host uid of its own.
        try systemCall("setns(user namespace)") { ofs_setns(namespaces.user, Int32(OFS_CLONE_NEWUSER)) }
        close(namespaces.user)
        try systemCall("setresgid(0) in the user namespace") { ofs_setresgid(0, 0, 0) }
        try systemCall("setgroups() in the user namespace") { setgroups(0, nil) }
        if pingRange >= 0 { try writeSysctl(pingRange, pingGroups) }

        for limit in order.limits {
            var value = rlimit(rlim_cur: rlim_t(limit.soft), rlim_max: rlim_t(limit.hard))
            try systemCall("setrlimit(\(limit.resource))") { setrlimit(__rlimit_resource_t(UInt32(limit.resource)), &value) }
        }
        // PID 1 of a namespace only gets signals from inside for which it has a handler. SIGTERM
        // is read through signalfd (blocked), but the handler must exist for it to be delivered.
        try systemCall("sigaction(SIGTERM)") { ofs_signal_install_noop_handler(SIGTERM) }
        signal(SIGPIPE, SIG_IGN)
        let watched: [Int32] = [SIGCHLD, SIGTERM]
        let signals = try systemCall("signalfd(SIGCHLD, SIGTERM)") { ofs_signalfd_open(watched, Int32(watched.count)) }
        umask(0o022)

        // Keep only what commands may get, then let the agent's uid own us (real and saved uid)
        // so that the agent can signal PID 1, while the effective uid 0 keeps those capabilities.
        // PID 1 also holds what it needs to run commands as others and to end them; the bounding
        // set keeps every command (root's included, at execve) within the profile's set.
        // Without no_new_privs, installing the filter takes CAP_SYS_ADMIN here: held, never in
        // the bounding set (no command can get it at execve), until the filter is installed.
        let hold = order.capabilityBound | Self.ownCapabilities
        let filters = !order.seccompProgram.isEmpty
        let installer = filters && !order.noNewPrivileges ? Self.installerCapability & ~hold : 0
        try systemCall("capset(bound \(CapabilitySet(mask: order.capabilityBound).hex), hold \(CapabilitySet(mask: hold | installer).hex))") {
            ofs_capabilities_limit(order.capabilityBound, hold | installer)
        }
        try systemCall("setresuid(\(order.agentUID), 0, \(order.agentUID))") { ofs_setresuid(order.agentUID, 0, order.agentUID) }
        // Not dumpable: /proc/1/mem, /proc/1/exe and ptrace need CAP_SYS_PTRACE, which no one inside has.
        try systemCall("prctl(PR_SET_DUMPABLE, 0)") { ofs_prctl(OFS_PR_SET_DUMPABLE, 0) }
        // Docker's default is without it: setuid programs and file capabilities then work, within
        // the bounding set, as root of this user namespace.
        if order.noNewPrivileges {
            try systemCall("prctl(PR_SET_NO_NEW_PRIVS)") { ofs_prctl(OFS_PR_SET_NO_NEW_PRIVS, 1) }
        }
        var listener: Int32 = -1
        if filters {
            let count = order.seccompProgram.count / 8
            guard count * 8 == order.seccompProgram.count, count <= 4096 else {
                throw OffswitchError(.protocolError, "seccomp program of \(order.seccompProgram.count) bytes")
            }
            let flags = order.seccompFlags | (order.recorderListener ? OFS_SECCOMP_FILTER_FLAG_NEW_LISTENER : 0)
            let rc: Int32
            if installer != 0 {
                var stage: Int32 = 0
                let result = order.seccompProgram.withUnsafeBytes {
                    ofs_seccomp_install_dropping($0.baseAddress!, UInt16(count), flags, hold, &stage)
                }
                let failed = errno
                guard result >= 0 else {
                    let what = switch stage {
                    case Int32(OFS_INSTALL_THREAD.rawValue): "pthread_create(seccomp installer)"
                    case Int32(OFS_INSTALL_CAPSET.rawValue): "capset(drop CAP_SYS_ADMIN, hold \(CapabilitySet(mask: hold).hex))"
                    default: "seccomp(SET_MODE_FILTER|TSYNC, \(count) instructions, flags \(flags)) without no_new_privs"
                    }
                    throw OffswitchError.system(what, errno: failed)
                }
                rc = result
            } else {
                rc = try systemCall("seccomp(SET_MODE_FILTER, \(count) instructions, flags \(flags))") {
                    order.seccompProgram.withUnsafeBytes { ofs_seccomp_install($0.baseAddress!, UInt16(count), flags) }
                }
            }
            if order.recorderListener { listener = rc }
        }
        return (signals, listener)
    }

    struct Received {
        var request: InitRequest
        var descriptors: [Int32]
    }

    /// Allocated once: a fresh zeroed 4 MiB per request would cost a thousand page faults.
    nonisolated(unsafe) private static let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(
        byteCount: ControlProtocol.maxMessageBytes, alignment: 16)

    /// One request from the host; nil at EOF (the host went away).
    static func receiveRequest() throws(OffswitchError) -> Received? {
        var fds = [Int32](repeating: -1, count: 8)
        var count: Int32 = 0
        let n = ofs_recv_with_fds(control, receiveBuffer.baseAddress!, receiveBuffer.count, &fds, 8, &count)
        if n < 0 { throw OffswitchError.system("recvmsg(control)", errno: errno) }
        if n == 0 && count == 0 { return nil }
        let descriptors = Array(fds.prefix(Int(count)))
        do throws(OffswitchError) {
            let request = try InitRequest.decode(Array(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<n])))
            guard descriptors.count == request.attachedDescriptors else {
                throw OffswitchError(.protocolError, "request carried \(descriptors.count) descriptors, expected \(request.attachedDescriptors)")
            }
            return Received(request: request, descriptors: descriptors)
        } catch {
            for fd in descriptors { close(fd) }
            throw error
        }
    }

    static func report(_ message: InitReport, descriptors: [Int32] = []) {
        let bytes = message.encoded()
        _ = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { ofs_send_with_fds(control, raw.baseAddress!, raw.count, $0.baseAddress, Int32($0.count)) }
        }
    }

    private static func openSysctl(_ path: String) throws(OffswitchError) -> Int32 {
        try systemCall("open(\(path))") { open(path, O_WRONLY | O_CLOEXEC) }
    }

    /// Writes and closes.
    private static func writeSysctl(_ fd: Int32, _ setting: (path: String, value: String)) throws(OffswitchError) {
        defer { close(fd) }
        guard writeAll(fd, Array(setting.value.utf8)) else {
            throw OffswitchError.system("write(\(setting.path), \(setting.value))", errno: errno)
        }
    }
}
