import COffswitch
import CSeccomp
import Glibc
public import OffswitchCore
import Synchronization

/// The recorder's syscall half: receives every call the sandbox's filter sends to user
/// notification, decodes its arguments, logs it, then answers with the policy's own verdict
/// (CONTINUE when the policy allows the call, the policy's errno when it denies it). One thread
/// per sandbox, blocked in the receive ioctl until `stop()` interrupts it.
///
/// Fails closed: if this process dies, the kernel answers every recorded call with ENOSYS.
public final class NotifySupervisor: Sendable {
    private let listener: Int32
    private let policy: [UInt8]
    private let log: EventLog
    private let uidBase: UInt32
    /// Where the paths of calls are walked (PathWalk).
    private let root: RecorderRoot
    private let thread: WorkerThread
    /// Syscall names by architecture and number: libseccomp's lookup allocates, and this thread
    /// asks while the caller waits.
    private let names = Mutex<[Int64: String]>([:])
    private let terms = Atomic<Int>(0)
    private let execHooks = Mutex<[@Sendable (Int32) -> Void]>([])

    /// How many SIGTERMs to PID 1 the policy let through so far: a harness that wants to know
    /// whether the machine is going down asks whether one was sent since it last looked.
    public var sigtermsToInit: Int { terms.load(ordering: .acquiring) }

    /// Runs `body` with the calling thread's host tid for every execve and execveat the policy
    /// lets through, on this thread, before the call runs: while `body` runs, the caller still
    /// runs its old program (the question service seals the connections it made, QuestionService).
    /// `body` must be quick: the caller waits.
    public func onExecve(_ body: @escaping @Sendable (Int32) -> Void) {
        execHooks.withLock { $0.append(body) }
    }

    /// Takes ownership of `listener`. `policy` is the enforcement program without the recording
    /// prefix; `uidBase` is the host uid of root inside (0 without a user namespace).
    public init(listener: Int32, policy: [UInt8], log: EventLog, uidBase: UInt32, root: RecorderRoot) throws(OffswitchError) {
        self.root = root
        self.listener = listener
        self.policy = policy
        self.log = log
        self.uidBase = uidBase
        thread = try WorkerThread("recorder", interruptible: true)
        // Wake this thread on the caller's CPU: the reference probe's round trip takes 9 us instead of
        // 16 (it took 4.6 instead of 95 on an earlier day of this virtual machine).
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

    /// Blocks in the receive ioctl itself, not in poll(): only a receiver gets the sync wake-up.
    /// It stays blocked after the sandbox's last process is gone, until `stop()` interrupts it.
    private func serve() {
        var notification = ofs_notification()
        while !thread.stopping {
            if ofs_notify_receive(listener, &notification) == 0 {
                handle(notification)
                continue
            }
            // EINTR: stop() (or a stray signal); ENOENT: the caller died before we read it.
            if errno == EINTR || errno == ENOENT { continue }
            return
        }
    }

    private func handle(_ notification: ofs_notification) {
        let args = withUnsafeBytes(of: notification.args) { Array($0.bindMemory(to: UInt64.self)) }
        let verdict = SeccompVerdict.evaluate(policy, nr: notification.nr, arch: notification.arch,
                                              instructionPointer: notification.instruction_pointer, args: args)
        let name = names.withLock { known in
            let key = Int64(notification.arch) << 32 | Int64(UInt32(bitPattern: notification.nr))
            if let name = known[key] { return name }
            let name = Self.syscallName(arch: notification.arch, nr: notification.nr)
            known[key] = name
            return name
        }
        let facts = ProcessFacts.lookup(hostPID: Int32(bitPattern: notification.pid), uidBase: uidBase)
        // After an execve the process has another name and executable: read them afresh next time.
        if name == "execve" || name == "execveat" { ProcessFacts.forget(hostPID: Int32(bitPattern: notification.pid)) }
        let memory = ProcessMemory(hostPID: notification.pid)
        var decoded = SyscallArguments.decode(name, args, memory: memory, hostPID: notification.pid,
                                              walk: PathWalk(root: root, group: { ProcessFacts.groupInside(hostTID: notification.pid) }, thread: facts?.pid ?? 0))
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
            if decoded.contains(where: { $0.0 == "targets_pid1" && $0.1 == .bool(true) }),
               decoded.contains(where: { $0.0 == "signal" && $0.1 == .string("SIGTERM") }) {
                terms.add(1, ordering: .releasing)
            }
        case SeccompVerdict.errno:
            proceed = false
            error = Int32(verdict.data)
            fields += [("decision", .string("denied")), ("errno", .int(Int64(error))), ("errno_name", .string(ErrnoName.name(error)))]
        default:
            // KILL, TRAP, TRACE: the policy ends or traps the caller; do it to the thread, and fail the call.
            proceed = false
            error = ENOSYS
            fields += [("decision", .string("killed"))]
            _ = kill(Int32(bitPattern: notification.pid), SIGSYS)
        }
        // A path walked past its budget: where the kernel went is not known (docs/recorder.md).
        if SyscallArguments.walkCut(decoded) { fields.append(("args_unread", .bool(true))) }
        if !valid { fields.append(("caller_gone", .bool(true))) }
        if proceed && (name == "execve" || name == "execveat") {
            let tid = Int32(bitPattern: notification.pid)
            for hook in execHooks.withLock({ $0 }) { hook(tid) }
        }
        // Posted, not written yet: its place in the log is taken before the call can cause anything.
        log.post("syscall", process: facts, fields)
        _ = ofs_notify_respond(listener, notification.id, error, proceed ? 1 : 0)
    }

    static func syscallName(arch: UInt32, nr: Int32) -> String {
        guard let name = seccomp_syscall_resolve_num_arch(arch, nr) else { return "syscall_\(nr)" }
        defer { free(name) }
        return String(cString: name)
    }
}
