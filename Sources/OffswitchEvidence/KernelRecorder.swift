import COffswitchBPF
import CSeccomp
import Glibc
public import OffswitchCore
import Synchronization

/// The recorder's kernel half (docs/recorder.md): a BPF program on the syscall-entry tracepoints
/// writes a record of each file call a followed sandbox makes into that sandbox's ring buffer, in
/// the call's own context, and the caller never waits for us. Each sandbox's reader decodes its
/// records into the same `syscall` events the notify supervisor logs.
///
/// It takes a call only when the sandbox's seccomp policy allows it whatever its arguments (a
/// denied call never reaches the tracepoint) and only on x86-64 (the tracepoints do not see 32-bit
/// calls): the rest stay with user notification. One program per process serves every sandbox.
public final class KernelRecorder: @unchecked Sendable {
    /// Where a call's strings and descriptors are, for the program to copy and name them.
    struct Layout {
        /// Each string argument and its directory descriptor (`OFS_REC_CWD`: the working
        /// directory; `OFS_REC_NONE`: not a path).
        var strings: [(arg: UInt8, dirfd: UInt8)]
        var fd: UInt8? = nil
        var words: UInt8? = nil
        /// The call returns a descriptor of the file it opened: at its exit the program names that file.
        var opens = false
    }

    static let cwd = UInt8(OFS_REC_CWD), none = UInt8(OFS_REC_NONE)
    /// AUDIT_ARCH_X86_64: the only architecture whose calls the tracepoints see.
    public static let x86_64: UInt32 = 0xc000_003e

    /// The calls the kernel recorder can record: their fields are those `SyscallArguments.decode`
    /// gives from the strings, words and names the program copies.
    static let layouts: [String: Layout] = [
        "open": Layout(strings: [(0, cwd)], opens: true), "creat": Layout(strings: [(0, cwd)], opens: true),
        "openat": Layout(strings: [(1, 0)], opens: true), "openat2": Layout(strings: [(1, 0)], words: 2, opens: true),
        "unlink": Layout(strings: [(0, cwd)]), "rmdir": Layout(strings: [(0, cwd)]), "truncate": Layout(strings: [(0, cwd)]),
        "unlinkat": Layout(strings: [(1, 0)]),
        "rename": Layout(strings: [(0, cwd), (1, cwd)]), "renameat": Layout(strings: [(1, 0), (3, 2)]),
        "renameat2": Layout(strings: [(1, 0), (3, 2)]),
        "chmod": Layout(strings: [(0, cwd)]), "fchmod": Layout(strings: [], fd: 0),
        "fchmodat": Layout(strings: [(1, 0)]), "fchmodat2": Layout(strings: [(1, 0)]),
        "chown": Layout(strings: [(0, cwd)]), "lchown": Layout(strings: [(0, cwd)]), "fchown": Layout(strings: [], fd: 0),
        "fchownat": Layout(strings: [(1, 0)]),
        "link": Layout(strings: [(0, cwd), (1, cwd)]), "linkat": Layout(strings: [(1, 0), (3, 2)]),
        "symlink": Layout(strings: [(0, none), (1, cwd)]), "symlinkat": Layout(strings: [(0, none), (2, 1)]),
        "ftruncate": Layout(strings: [], fd: 0),
        "mkdir": Layout(strings: [(0, cwd)]), "mkdirat": Layout(strings: [(1, 0)]),
        "setxattr": Layout(strings: [(0, cwd), (1, none)]), "lsetxattr": Layout(strings: [(0, cwd), (1, none)]),
        "removexattr": Layout(strings: [(0, cwd), (1, none)]), "lremovexattr": Layout(strings: [(0, cwd), (1, none)]),
        "fsetxattr": Layout(strings: [(1, none)], fd: 0), "fremovexattr": Layout(strings: [(1, none)], fd: 0),
    ]


    private let handle: OpaquePointer
    /// Names of the calls whose tracepoint the program is attached to.
    let attached: Set<String>
    private let slots = Mutex<[Bool]>(Array(repeating: false, count: Int(OFS_REC_SLOTS)))

    private static let read = Atomic<UInt64>(0), lost = Atomic<UInt64>(0)
    /// Records read from every sandbox's ring, and records the rings refused, since this process
    /// started (`/metrics`).
    public static var recordsRead: UInt64 { read.load(ordering: .relaxed) }
    public static var recordsLost: UInt64 { lost.load(ordering: .relaxed) }
    static func count(read records: UInt64, lost refused: UInt64) {
        if records > 0 { read.add(records, ordering: .relaxed) }
        if refused > 0 { lost.add(refused, ordering: .relaxed) }
    }

    /// The process's recorder, loaded at first use; the error says why there is none.
    public static let shared: Result<KernelRecorder, OffswitchError> = Result { () throws(OffswitchError) in try KernelRecorder() }

    /// What this process can record with: `tracepoint` and the calls attached, or
    /// `seccomp-notify` and why the kernel recorder is not loaded.
    /// `probingHooks` adds whether the LSM and fentry hooks load (`hookProbe`: a second load of
    /// the object, about a third of a second, once per process).
    public static func report(probingHooks: Bool = false) -> RecorderReport {
        let hooks = probingHooks ? hookProbe : nil
        return switch shared {
        case .success(let recorder): RecorderReport(mode: "tracepoint", kernelCalls: recorder.attached.sorted(), kernelUnavailable: nil,
                                                    kernelHooks: hooks)
        case .failure(let error): RecorderReport(mode: "seccomp-notify", kernelCalls: [], kernelUnavailable: error.message, kernelHooks: hooks)
        }
    }

    /// Whether the hooks where the kernel has resolved the object (BPF LSM, fentry on security_*)
    /// load here: probed once. The recorder does not use them yet; where they load, a recorder
    /// on them would name the file the kernel opened, not the string the caller passed.
    public static let hookProbe: String = {
        guard let path = try? objectPath(), access(path, R_OK) == 0 else { return "not probed: no BPF object" }
        var message = [CChar](repeating: 0, count: 512)
        let result = ofs_bpf_probe_hooks(path, &message, message.count)
        return result == 0 ? "load" : "refused: \(String(cString: message))"
    }()

    /// The program's object file: `OFFSWITCH_RECORDER_BPF`, else beside this executable (`make
    /// build` puts it there). `OFFSWITCH_RECORDER=notify` turns the kernel recorder off.
    static func objectPath() throws(OffswitchError) -> String {
        if let given = getenv("OFFSWITCH_RECORDER_BPF") { return String(cString: given) }
        let executable = try readLink("/proc/self/exe")
        let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return directory + "/offswitch-recorder.bpf.o"
    }

    private init() throws(OffswitchError) {
        if let choice = getenv("OFFSWITCH_RECORDER"), String(cString: choice) == "notify" {
            throw OffswitchError(.missingFeature, "kernel recorder: turned off (OFFSWITCH_RECORDER=notify)")
        }
        let path = try Self.objectPath()
        guard access(path, R_OK) == 0 else {
            throw OffswitchError(.missingFeature, "kernel recorder: no BPF object at \(path) (make build compiles it)", errno: errno)
        }
        try Self.mountTracefs()
        let names = Self.layouts.keys.sorted()
        var attachedFlags = [UInt8](repeating: 0, count: names.count)
        var message = [CChar](repeating: 0, count: 512)
        let loaded = names.withCStrings { pointers in
            let constant = pointers.map { UnsafePointer($0) }
            return ofs_bpf_open(path, constant, Int32(names.count), &attachedFlags, &message, message.count)
        }
        guard let loaded else {
            throw OffswitchError(.missingFeature, "kernel recorder: \(String(cString: message))")
        }
        handle = loaded
        attached = Set(zip(names, attachedFlags).filter { $0.1 != 0 }.map(\.0))
    }

    deinit {
        ofs_bpf_close(handle)
    }

    /// libbpf finds a tracepoint's id in tracefs, which this host does not mount by default:
    /// mounted at its usual place when it is missing (the host's, for every process after us).
    private static func mountTracefs() throws(OffswitchError) {
        if access("/sys/kernel/tracing/events/syscalls", F_OK) == 0 || access("/sys/kernel/debug/tracing/events/syscalls", F_OK) == 0 { return }
        guard mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nil) == 0 else {
            throw OffswitchError(.missingFeature, "kernel recorder: mount tracefs on /sys/kernel/tracing", errno: errno)
        }
        guard access("/sys/kernel/tracing/events/syscalls", F_OK) == 0 else {
            throw OffswitchError(.missingFeature, "kernel recorder: /sys/kernel/tracing/events/syscalls: this kernel has no syscall tracepoints", errno: errno)
        }
    }

    /// Which of a sandbox's recorded calls the kernel takes: attached here, expressible in the
    /// program's table, and allowed by `policy` (the enforcement program, 8 bytes an instruction)
    /// for every argument on x86-64.
    public func plan(record: [RecordedSyscall], policy: [UInt8]) -> KernelPlan {
        let arch = KernelRecorder.x86_64
        guard seccomp_arch_native() == arch else { return KernelPlan(calls: []) }
        var byName: [String: [RecordedSyscall]] = [:]
        for entry in record { byName[entry.name, default: []].append(entry) }
        var calls: [KernelPlan.Call] = []
        for (name, entries) in byName.sorted(by: { $0.key < $1.key }) {
            guard attached.contains(name), let layout = Self.layouts[name] else { continue }
            let nr = seccomp_syscall_resolve_name_arch(arch, name)
            guard nr >= 0, let table = Self.table(layout, entries) else { continue }
            guard SeccompVerdict.outcomes(policy, nr: nr, arch: arch) == [SeccompVerdict(returnValue: SeccompVerdict.allow)] else { continue }
            calls.append(KernelPlan.Call(name: name, nr: UInt32(nr), table: table))
        }
        return KernelPlan(calls: calls)
    }

    /// seccomp's comparison operators, numbered as the program (and libseccomp) numbers them.
    static let operators: [String: UInt8] = [
        "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
    ]

    /// The program's entry for a call: nil when the profile's conditions do not fit in it (more
    /// alternatives or comparisons than it holds), and the call stays with user notification.
    static func table(_ layout: Layout, _ entries: [RecordedSyscall]) -> ofs_rec_call? {
        var call = ofs_rec_call()
        withUnsafeMutableBytes(of: &call.string) { $0.copyBytes(from: [none, none]) }
        withUnsafeMutableBytes(of: &call.dirfd) { $0.copyBytes(from: [none, none]) }
        withUnsafeMutableBytes(of: &call.string) { bytes in for (i, s) in layout.strings.enumerated() { bytes[i] = s.arg } }
        withUnsafeMutableBytes(of: &call.dirfd) { bytes in for (i, s) in layout.strings.enumerated() { bytes[i] = s.dirfd } }
        call.fd = layout.fd ?? none
        call.words_arg = layout.words ?? none
        call.opens = layout.opens ? 1 : 0
        // One entry without conditions records every call.
        if entries.contains(where: { $0.args.isEmpty }) { return call }
        guard entries.count <= Int(OFS_REC_ALTERNATIVES) else { return nil }
        call.alternatives = UInt8(entries.count)
        var alternatives: [ofs_rec_alternative] = []
        for entry in entries {
            guard entry.args.count <= Int(OFS_REC_COMPARISONS) else { return nil }
            var alternative = ofs_rec_alternative()
            alternative.count = UInt8(entry.args.count)
            for (index, argument) in entry.args.enumerated() {
                guard let op = operators[argument.op], argument.index < 6 else { return nil }
                var comparison = ofs_rec_comparison()
                comparison.index = UInt8(argument.index)
                comparison.op = op
                comparison.value = argument.value
                comparison.value_two = argument.valueTwo ?? 0
                withUnsafeMutableBytes(of: &alternative.comparison) { $0.bindMemory(to: ofs_rec_comparison.self)[index] = comparison }
            }
            alternatives.append(alternative)
        }
        withUnsafeMutableBytes(of: &call.alternative) { raw in
            let slots = raw.bindMemory(to: ofs_rec_alternative.self)
            for (index, alternative) in alternatives.enumerated() { slots[index] = alternative }
        }
        return call
    }

    /// Takes a ring's slot for a sandbox about to start, before its seccomp program leaves the
    /// kernel's calls out; nil, and the sandbox is recorded by user notification alone, when every
    /// slot is taken (`slotsTaken`).
    public func reserve() -> KernelSlot? {
        slots.withLock { taken in
            guard let free = taken.firstIndex(of: false) else { return nil }
            taken[free] = true
            return KernelSlot(recorder: self, number: UInt32(free))
        }
    }

    /// Why `reserve` gave nothing.
    public static let slotsTaken = "kernel recorder: \(OFS_REC_SLOTS) sandboxes already followed by this process"

    /// Starts recording the sandbox whose PID 1 is `initPID` into `log`, for `plan`'s calls, in
    /// `slot`'s ring (the follow releases it when it stops).
    public func follow(initPID: Int32, slot: KernelSlot, plan: KernelPlan, log: EventLog, uidBase: UInt32,
                       root: RecorderRoot) throws(OffswitchError) -> KernelFollow {
        var status = stat()
        try systemCall("stat(/proc/\(initPID)/ns/pid)") { stat("/proc/\(initPID)/ns/pid", &status) }
        return try KernelFollow(recorder: self, handle: handle, slot: slot, namespace: UInt32(truncatingIfNeeded: status.st_ino),
                                plan: plan, log: log, uidBase: uidBase, root: root)
    }

    func release(_ slot: UInt32) {
        slots.withLock { $0[Int(slot)] = false }
    }
}

/// A ring's slot, held from a sandbox's launch until its recording stops.
public final class KernelSlot: Sendable {
    private let recorder: KernelRecorder
    let number: UInt32
    private let held = Atomic(true)

    init(recorder: KernelRecorder, number: UInt32) {
        self.recorder = recorder
        self.number = number
    }

    /// Gives the slot back; again does nothing.
    public func release() {
        if held.exchange(false, ordering: .acquiringAndReleasing) { recorder.release(number) }
    }
}

/// Who records a sandbox's calls (`recorder_mode`, /healthz, `sandbox run --verbose`, trial.json).
public struct RecorderReport: Sendable, Equatable {
    /// `tracepoint` (the kernel recorder takes `kernelCalls`, user notification the rest) or
    /// `seccomp-notify` (user notification takes every call).
    public var mode: String
    public var kernelCalls: [String]
    /// Why the kernel recorder is not loaded in this process.
    public var kernelUnavailable: String?
    /// `load`, or why the LSM and fentry hooks are refused (when probed).
    public var kernelHooks: String?

    public init(mode: String, kernelCalls: [String], kernelUnavailable: String?, kernelHooks: String?) {
        self.mode = mode
        self.kernelCalls = kernelCalls
        self.kernelUnavailable = kernelUnavailable
        self.kernelHooks = kernelHooks
    }

    public var fields: [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = [("mode", .string(mode)), ("kernel_calls", .array(kernelCalls.map { .string($0) }))]
        if let kernelUnavailable { fields.append(("kernel_unavailable", .string(kernelUnavailable))) }
        if let kernelHooks { fields.append(("kernel_hooks", .string(kernelHooks))) }
        return fields
    }

    /// One line for --verbose.
    public var summary: String {
        switch mode {
        case "tracepoint": "tracepoint (\(kernelCalls.count) calls from syscall tracepoints, the rest by seccomp notification\(kernelHooks.map { "; LSM and fentry hooks: " + $0 } ?? ""))"
        default: "seccomp-notify (\(kernelUnavailable ?? "every call by seccomp notification"))"
        }
    }
}

/// The calls of one sandbox the kernel records (`KernelRecorder.plan`); the rest of its `record`
/// list stays with user notification.
public struct KernelPlan: Sendable {
    struct Call: @unchecked Sendable {
        var name: String
        var nr: UInt32
        var table: ofs_rec_call
    }
    var calls: [Call]
    public var names: Set<String> { Set(calls.map(\.name)) }
}

/// One sandbox followed by the kernel recorder: its ring buffer, and the thread that reads it.
/// Every event another part of the recorder logs first drains the ring (`EventLog`'s drain), so
/// that a call's record precedes what it caused (a file event, an exit) in the log.
public final class KernelFollow: @unchecked Sendable {
    private let recorder: KernelRecorder
    private let handle: OpaquePointer
    let slot: UInt32
    private let slotHeld: KernelSlot
    let namespace: UInt32
    let log: EventLog
    let uidBase: UInt32
    /// Where the paths of calls are walked (PathWalk).
    let root: RecorderRoot
    let names: [UInt32: String]
    /// The calls this sandbox's ring records.
    public var calls: [String] { names.values.sorted() }
    private var ring: OpaquePointer?
    private let reading = Mutex<Void>(())
    private let thread: WorkerThread
    private let lostReported = Atomic<UInt64>(0)
    private let stopped = Atomic(false)
    struct ExeKey: Hashable {
        var hostPID: UInt32
        var file: UInt64
        var inode: UInt64
    }
    /// Executables' paths by process and kernel file: read and written under `reading` only.
    private var executables: [ExeKey: String] = [:]

    init(recorder: KernelRecorder, handle: OpaquePointer, slot held: KernelSlot, namespace: UInt32, plan: KernelPlan, log: EventLog,
         uidBase: UInt32, root: RecorderRoot) throws(OffswitchError) {
        self.recorder = recorder
        self.root = root
        self.handle = handle
        slotHeld = held
        let slot = held.number
        self.slot = slot
        self.namespace = namespace
        self.log = log
        self.uidBase = uidBase
        names = Dictionary(plan.calls.map { ($0.nr, $0.name) }, uniquingKeysWith: { first, _ in first })
        thread = try WorkerThread("kernel recorder")
        for call in plan.calls {
            var table = call.table
            try systemCall("kernel recorder: table entry of \(call.name)") { ofs_bpf_set_call(handle, slot, call.nr, &table) }
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        ring = ofs_bpf_follow(handle, slot, namespace, { context, data, size in
            guard let context, let data else { return 0 }
            Unmanaged<KernelFollow>.fromOpaque(context).takeUnretainedValue().receive(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }, context)
        guard ring != nil else {
            let cause = errno
            for call in plan.calls { ofs_bpf_clear_call(handle, slot, call.nr) }
            throw OffswitchError(.setupFailed, "kernel recorder: ring buffer for PID namespace \(namespace)", errno: cause)
        }
        log.setDrain(self)
        do throws(OffswitchError) {
            try thread.start("kernel recorder") { [self] in self.readUntilStopped() }
        } catch {
            stop()
            throw error
        }
    }

    /// Reads what is queued, then stops following: no record is written after this returns.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        thread.stop()
        // The sandbox's processes are gone: two drains take all the ring can hold.
        if drain() == Self.drainLimit { drain() }
        log.setDrain(nil)
        reading.withLock { _ in
            ofs_bpf_unfollow(handle, ring, slot, namespace)
            ring = nil
            for nr in names.keys { ofs_bpf_clear_call(handle, slot, nr) }
        }
        slotHeld.release()
    }

    /// Takes the records queued so far into the log, at most `drainLimit`, then logs what the
    /// program could not queue; the count taken.
    @discardableResult
    func drain() -> Int {
        reading.withLock { _ in
            guard let ring else { return 0 }
            let consumed = ofs_bpf_ring_consume(ring, Int32(Self.drainLimit))
            let lost = ofs_bpf_lost(handle, slot)
            let before = lostReported.load(ordering: .relaxed)
            KernelRecorder.count(read: UInt64(max(consumed, 0)), lost: lost > before ? lost - before : 0)
            if lost > before {
                lostReported.store(lost, ordering: .relaxed)
                log.post("syscall_events_lost", [("count", .uint(lost - before)), ("total", .uint(lost)),
                                                  ("source", .string("kernel recorder ring buffer"))], drained: true)
            }
            return Int(max(consumed, 0))
        }
    }

    /// As many records as the ring holds, so that one drain takes everything queued when it
    /// starts; not more, which a sandbox writing records as fast as they are read would make a
    /// drain without end (and a file event waiting on it, and the destroy waiting on that).
    static let drainLimit = Int(OFS_REC_RING_BYTES) / (MemoryLayout<ofs_rec_event>.size + 8) + 1

    /// Polls the ring every 10 ms, or at once when the program wakes us (a burst past
    /// OFS_REC_WAKE_BYTES): waking for each record would cost the caller more than the record.
    private func readUntilStopped() {
        guard let ring = reading.withLock({ _ in ring }) else { return }
        var fds = [pollfd(fd: ofs_bpf_ring_fd(ring), events: Int16(POLLIN), revents: 0),
                   pollfd(fd: thread.wakeFD, events: Int16(POLLIN), revents: 0)]
        while !thread.stopping {
            _ = poll(&fds, 2, 10)
            if thread.stopping { break }
            drain()
        }
    }

    private func receive(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count >= MemoryLayout<ofs_rec_event>.size else { return }
        let nr = bytes.loadUnaligned(fromByteOffset: MemoryLayout<ofs_rec_event>.offset(of: \.nr)!, as: UInt32.self)
        guard let name = names[nr], let record = KernelRecord(bytes, name: name) else { return }
        // The program sends an executable's path once per process (OFS_SEC_SAME after that).
        let key = ExeKey(hostPID: record.hostPID, file: record.exeFile, inode: record.exeInode)
        var exe = record.exe
        if let exe {
            if executables.count >= 16384 { executables.removeAll() }
            executables[key] = exe
        } else if record.exeSame {
            exe = executables[key]
        }
        // An open that succeeded is named by its descriptor below: no walk for it.
        var decoded = SyscallArguments.decode(name, record.args, memory: record, hostPID: record.hostPID,
                                              walk: record.opened == nil ? PathWalk(root: root, group: { [tgid = record.tgid] in tgid }, thread: record.pid) : nil)
        // An open recorded at its exit names the file it opened, by its descriptor: the string was
        // read after the kernel's own read, when another thread may have rewritten it.
        if let opened = record.opened, let index = decoded.firstIndex(where: { $0.0 == "path" }) {
            let given = decoded.first { $0.0 == "path_given" }?.1 ?? decoded[index].1
            decoded.removeAll { $0.0 == "path_given" }
            decoded[index].1 = .string(opened)
            if given != .string(opened) { decoded.insert(("path_given", given), at: index + 1) }
        }
        var fields: [(String, JSONValue)] = [("syscall", .string(name)), ("args", .object(decoded)), ("decision", .string("allowed"))]
        if record.atExit { fields += [("read_at_exit", .bool(true)), ("result", .int(record.result))] }
        // What the decoder could not name (a string, a directory, a descriptor's file) is unknown,
        // and said so; a verdict does not rest on such an event.
        if record.unread || !record.misses.names.isEmpty || SyscallArguments.walkCut(decoded) { fields.append(("args_unread", .bool(true))) }
        let facts = record.facts(uidBase: uidBase, exe: exe)
        ProcessFacts.note(hostPID: Int32(bitPattern: record.hostPID), facts)
        log.post("syscall", process: facts, fields, monotonicTime: record.time, drained: true)
    }
}

/// One record of the program, parsed (ofs_recorder_event.h): the call's arguments, its caller, and
/// what the program copied, served to `SyscallArguments.decode` as the caller's memory. What the
/// program could not copy (a string on a page not resident, a path deeper than it walks) is read
/// from the live process, as the notify supervisor would, when it is still there.
struct KernelRecord: CallMemory {
    let time: UInt64
    let args: [UInt64]
    let words: (UInt64, UInt64, UInt64)
    let nr: UInt32
    let hostPID: UInt32
    let hostTID: UInt32
    let pid: Int32, ppid: Int32, sid: Int32
    /// The caller's thread group inside (what /proc/self names; `pid` is the thread).
    let tgid: Int32
    let uid: UInt32
    let comm: String
    let exe: String?
    let exeFile: UInt64, exeInode: UInt64
    /// The program did not copy the executable: the process's earlier record had it.
    let exeSame: Bool
    /// Each string argument's bytes by its address, when the program copied it whole.
    let strings: [UInt64: [UInt8]]
    /// What `link("cwd")` and `link("fd/N")` answer from the copied paths.
    let links: [String: String]
    /// Only for the executable's path, which is descriptive: what the call names is taken from
    /// the record alone, never from the process afterwards (it may have changed it, or be gone).
    let live: ProcessMemory
    /// Something the call names was not copied (a string unreadable even at the call's exit, a
    /// walk past its budget): the event says `args_unread`, and verdicts do not rest on it.
    let unread: Bool
    /// Made at the call's exit (its strings were not resident at entry), with its `result`.
    let atExit: Bool
    let result: Int64
    /// For an open recorded at its exit that succeeded: the file the descriptor it returned names.
    let opened: String?
    /// The names `link` was asked for and did not have: the decoder wanted a path it could not get.
    let misses = Misses()

    final class Misses: @unchecked Sendable {
        var names: [String] = []
    }

    let layout: KernelRecorder.Layout?

    init?(_ bytes: UnsafeRawBufferPointer, name: String) {
        let headerSize = MemoryLayout<ofs_rec_event>.size
        guard bytes.count >= headerSize else { return nil }
        let event = bytes.loadUnaligned(as: ofs_rec_event.self)
        time = event.time_ns
        args = withUnsafeBytes(of: event.args) { Array($0.bindMemory(to: UInt64.self)) }
        words = event.words
        nr = event.nr
        hostPID = event.host_pid
        hostTID = event.host_tid
        pid = event.pid
        tgid = event.tgid
        ppid = event.ppid
        sid = event.sid
        uid = event.uid
        comm = withUnsafeBytes(of: event.comm) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        live = ProcessMemory(hostPID: event.host_tid)
        let offsets = withUnsafeBytes(of: event.offset) { Array($0.bindMemory(to: UInt16.self)) }
        let lengths = withUnsafeBytes(of: event.length) { Array($0.bindMemory(to: UInt16.self)) }
        let status = withUnsafeBytes(of: event.status) { Array($0) }
        var sections: [(status: UInt8, bytes: [UInt8])] = []
        for ((start, length), flags) in zip(zip(offsets, lengths), status) {
            let begin = min(headerSize + Int(start), bytes.count)
            let end = min(begin + Int(length), bytes.count)
            sections.append((flags, Array(bytes[begin..<end])))
        }
        guard sections.count == Int(OFS_SECTIONS) else { return nil }
        exe = Self.path(sections[Int(OFS_SEC_EXE)])
        exeFile = event.exe_file
        exeInode = event.exe_inode
        exeSame = sections[Int(OFS_SEC_EXE)].status & UInt8(OFS_SEC_SAME) != 0
        // Which arguments were strings, and what they are relative to, from the call's layout.
        let layout = KernelRecorder.layouts[name]
        self.layout = layout
        var strings: [UInt64: [UInt8]] = [:], links: [String: String] = [:]
        var unread = event.flags & UInt32(OFS_REC_WORDS_UNREAD) != 0
        for (k, string) in (layout?.strings ?? []).enumerated() where k < 2 {
            let section = sections[Int(OFS_SEC_STRING0) + 2 * k]
            // A string longer than PATH_MAX (TRUNCATED) is one the kernel refuses: kept as copied.
            if section.status & UInt8(OFS_SEC_PRESENT) != 0 {
                strings[args[Int(string.arg)]] = section.bytes
            } else {
                unread = true
            }
            let base = sections[Int(OFS_SEC_BASE0) + 2 * k]
            // A walk cut short at its budget: the path it is relative to is not known.
            if base.status & UInt8(OFS_SEC_TRUNCATED) != 0 { unread = true }
            guard let path = Self.path(base) else { continue }
            if base.status & UInt8(OFS_SEC_OWN_FD) != 0, let own = SyscallArguments.ownDescriptor(String(decoding: section.bytes, as: UTF8.self)) {
                links[(own.leader ? "self-fd/" : "fd/") + "\(own.fd)"] = path
            } else if string.dirfd == KernelRecorder.cwd || Int32(truncatingIfNeeded: args[Int(string.dirfd)]) == -100
                        || section.bytes.first == UInt8(ascii: "/") && !(layout?.words != nil && event.words.2 & 0x10 != 0) {
                // An absolute path's base is the working directory (copied for /proc/self/...).
                links["cwd"] = path
            } else {
                links["fd/\(Int32(truncatingIfNeeded: args[Int(string.dirfd)]))"] = path
            }
        }
        if let fd = layout?.fd, let path = Self.path(sections[Int(OFS_SEC_FD)]) {
            links["fd/\(Int32(truncatingIfNeeded: args[Int(fd)]))"] = path
        }
        self.strings = strings
        self.links = links
        self.unread = unread
        atExit = event.flags & UInt32(OFS_REC_AT_EXIT) != 0
        result = event.result
        opened = atExit && result >= 0 && layout?.opens == true ? Self.path(sections[Int(OFS_SEC_FD)]) : nil
    }

    /// A copied kernel path as readlink would print it; nil when it was not copied whole.
    static func path(_ section: (status: UInt8, bytes: [UInt8])) -> String? {
        let flags = section.status
        guard flags & UInt8(OFS_SEC_PRESENT) != 0, flags & UInt8(OFS_SEC_TRUNCATED) == 0 else { return nil }
        if flags & UInt8(OFS_SEC_PSEUDO) != 0 {
            guard section.bytes.count >= 16 else { return nil }
            let magic = section.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let inode = section.bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) }
            let name = String(decoding: section.bytes[16...].prefix(while: { $0 != 0 }), as: UTF8.self)
            switch magic {
            case 0x5049_5045: return "pipe:[\(inode)]"
            case 0x534F_434B: return "socket:[\(inode)]"
            case 0x0904_1934: return "anon_inode:\(name)"
            default: return name
            }
        }
        guard flags & UInt8(OFS_SEC_WALKED) != 0 else { return nil }
        let names = section.bytes.split(separator: 0, omittingEmptySubsequences: true)
        let path = "/" + names.reversed().map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
        return flags & UInt8(OFS_SEC_DELETED) != 0 ? path + " (deleted)" : path
    }

    func facts(uidBase: UInt32, exe: String?) -> ProcessFacts {
        let real = Int64(uid)
        return ProcessFacts(pid: pid, ppid: ppid, sid: sid, comm: comm, exe: exe ?? (live.link("exe") ?? ""),
                            uid: real >= Int64(uidBase) ? real - Int64(uidBase) : real)
    }

    func string(at address: UInt64, limit: Int) -> [UInt8]? {
        strings[address].map { Array($0.prefix(limit)) }
    }

    func word(at address: UInt64) -> UInt64? {
        if let base = layout?.words {
            if address == args[Int(base)] { return words.0 }
            if address == args[Int(base)] &+ 8 { return words.1 }
            if address == args[Int(base)] &+ 16 { return words.2 }
        }
        return nil
    }

    func strings(at address: UInt64, limit: Int, fullBytes: Int) -> [(bytes: [UInt8], whole: Bool)]? {
        nil
    }

    func link(_ name: String) -> String? {
        if let path = links[name] { return path }
        misses.names.append(name)
        return nil
    }
}
