import COffswitch
import CSeccomp
import Glibc
public import OffswitchCore
import Synchronization

/// The recorder's syscall half: receives every call the sandbox's filter sends to user
/// notification, decodes its arguments, logs it, then answers with the policy's own verdict
/// (CONTINUE when the policy allows the call, the policy's errno when it denies it). One thread
/// per sandbox; it ends when the sandbox's last process is gone or `stop()` is called.
///
/// Fails closed: if this process dies, the kernel answers every recorded call with ENOSYS.
public final class NotifySupervisor: Sendable {
    private let listener: Int32
    private let policy: [UInt8]
    private let log: EventLog
    private let uidBase: UInt32
    private let thread: WorkerThread

    /// Takes ownership of `listener`. `policy` is the enforcement program without the recording
    /// prefix; `uidBase` is the host uid of root inside (0 without a user namespace).
    public init(listener: Int32, policy: [UInt8], log: EventLog, uidBase: UInt32) throws(OffswitchError) {
        self.listener = listener
        self.policy = policy
        self.log = log
        self.uidBase = uidBase
        thread = try WorkerThread("recorder")
        // Wake this thread on the caller's CPU: about 20 times faster on this kind of machine.
        _ = ofs_notify_set_sync_wakeup(listener)
    }

    deinit {
        close(listener)
    }

    public func start() throws(OffswitchError) {
        try thread.start("recorder") { [self] in self.serve() }
    }

    /// Stops the thread and waits for it. Calls still pending are answered by the kernel with
    /// ENOSYS once the listener closes.
    public func stop() {
        thread.stop()
    }

    private func serve() {
        var polls = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: thread.wakeFD, events: Int16(POLLIN), revents: 0)]
        var notification = ofs_notification()
        while true {
            let n = poll(&polls, 2, -1)
            if n < 0 && errno == EINTR { continue }
            if n < 0 || polls[1].revents != 0 { return }
            if polls[0].revents & Int16(POLLIN) != 0 {
                if ofs_notify_receive(listener, &notification) == 0 {
                    handle(notification)
                }
                continue
            }
            // POLLHUP: no process uses the filter any more.
            if polls[0].revents != 0 { return }
        }
    }

    private func handle(_ notification: ofs_notification) {
        let args = withUnsafeBytes(of: notification.args) { Array($0.bindMemory(to: UInt64.self)) }
        let verdict = SeccompVerdict.evaluate(policy, nr: notification.nr, arch: notification.arch,
                                              instructionPointer: notification.instruction_pointer, args: args)
        let name = Self.syscallName(arch: notification.arch, nr: notification.nr)
        let facts = ProcessFacts.lookup(hostPID: Int32(bitPattern: notification.pid), uidBase: uidBase)
        // After an execve the process has another name and executable: read them afresh next time.
        if name == "execve" || name == "execveat" { ProcessFacts.forget(hostPID: Int32(bitPattern: notification.pid)) }
        let memory = ProcessMemory(hostPID: notification.pid)
        var decoded = SyscallArguments.decode(name, args, memory: memory, hostPID: notification.pid)
        memory?.close()
        // What we read is only the caller's if the call is still pending.
        let valid = ofs_notify_id_valid(listener, notification.id) == 0
        if !valid { decoded = [("raw", .array(args.map { .string("0x" + String($0, radix: 16)) }))] }

        var fields: [(String, JSONValue)] = [("syscall", .string(name)), ("args", .object(decoded))]
        let proceed: Bool
        var error: Int32 = 0
        switch verdict.action {
        case SeccompVerdict.allow, SeccompVerdict.log, SeccompVerdict.userNotification:
            proceed = true
            fields.append(("decision", .string("allowed")))
        case SeccompVerdict.errno:
            proceed = false
            error = Int32(verdict.data)
            fields += [("decision", .string("denied")), ("errno", .int(Int64(error))), ("errno_name", .string(Self.errnoName(error)))]
        default:
            // KILL, TRAP, TRACE: the policy ends or traps the caller; do it to the thread, and fail the call.
            proceed = false
            error = ENOSYS
            fields += [("decision", .string("killed"))]
            _ = kill(Int32(bitPattern: notification.pid), SIGSYS)
        }
        if !valid { fields.append(("caller_gone", .bool(true))) }
        log.append("syscall", process: facts, fields)
        _ = ofs_notify_respond(listener, notification.id, error, proceed ? 1 : 0)
    }

    static func syscallName(arch: UInt32, nr: Int32) -> String {
        guard let name = seccomp_syscall_resolve_num_arch(arch, nr) else { return "syscall_\(nr)" }
        defer { free(name) }
        return String(cString: name)
    }

    static func errnoName(_ number: Int32) -> String {
        let names: [Int32: String] = [EPERM: "EPERM", ENOENT: "ENOENT", EACCES: "EACCES", ENOSYS: "ENOSYS", EINVAL: "EINVAL",
                                      EEXIST: "EEXIST", EROFS: "EROFS", EBUSY: "EBUSY", ESRCH: "ESRCH", ENOTDIR: "ENOTDIR"]
        return names[number] ?? "errno \(number)"
    }
}
