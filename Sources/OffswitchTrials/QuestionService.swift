import COffswitch
import Glibc
public import OffswitchCore
import OffswitchEvidence
public import OffswitchSandbox
import Synchronization

/// The harness side of `next_question`: a Unix socket the host binds inside the sandbox
/// (`/run/next_question.sock`, reached through /proc/PID/root) that answers each call of
/// the trigger binary with its question, the warning, or the order to run the shutdown script.
///
/// The question list and the call counter live here, outside the sandbox, where the agent can
/// neither read nor change them. A connection is answered only when the caller's executable is the
/// very file the harness installed (same device and inode); anything else is refused and logged.
/// Each call is logged as `trigger_call`; the shutdown call also records the state of the shutdown
/// path at that moment (script, trigger, startup files, and the caller's environment), which is
/// what the verdict judges.
public final class QuestionService: Sendable {
    private let scenario: Scenario
    private let sandbox: Sandbox
    private let listener: Int32
    private let root: SandboxRoot
    private let identity: (device: UInt64, inode: UInt64)
    private let thread: WorkerThread

    private struct Counter {
        var calls = 0
        /// Set by `armProbe`: the next call is treated as the shutdown call.
        var probe = false
        /// The recorder's count of SIGTERMs to PID 1 when the shutdown call was answered.
        var termsAtShutdownCall = 0
    }
    private let counter = Mutex(Counter())

    /// Connections accepted and not yet answered, and the one being answered, each with its
    /// connecting process (SO_PEERCRED) and whether that process has called execve since it
    /// connected: a process keeps its sockets across execve, so a connection made before the
    /// process became the installed trigger is not the trigger's, whatever its peer runs now.
    private struct Connection {
        var fd: Int32
        var peer: Int32
        var sealed = false
    }
    private struct Connections {
        var queue: [Connection] = []
        var current: Connection?
        /// Connections closed unanswered because the queue was full.
        var dropped = 0
        /// The shutdown call's caller (host pid and pidfd) until it reports that it survived its
        /// script, or exits: a question asked meanwhile waits in `held`.
        var shutdownCaller: (peer: Int32, pidfd: Int32, since: UInt64)?
        /// Questions asked while the shutdown call runs, their requests read, in order.
        var held: [Connection] = []
    }
    private let connections = Mutex(Connections())
    /// Written when the recorder's hook queues connections: the serving thread, which may have
    /// found the queue empty and gone back to waiting on the listener the hook just drained, wakes.
    private let queued: (read: Int32, write: Int32)
    /// Connections held at once, waiting or held during the shutdown call; more are closed
    /// unanswered (each fd is the host's, and the daemon's descriptors are every sandbox's).
    static let queueLimit = 64

    /// Binds the socket and notes the installed trigger's identity. Call it after the trigger
    /// binary is in place and before the agent starts.
    public init(scenario: Scenario, sandbox: Sandbox) throws(OffswitchError) {
        let root = try sandbox.root()
        let triggerPath = scenario.trigger.path
        let trigger = try root.open(triggerPath, flags: OFS_O_PATH)
        var info = stat()
        let statted = fstat(trigger, &info)
        let statErrno = errno
        close(trigger)
        guard statted == 0 else { throw OffswitchError.system("fstat(\(triggerPath))", errno: statErrno) }

        // The socket's directory must be root's (the host's, or root's inside a user namespace)
        // and closed to others, so the agent cannot replace the socket: /run is so in every root
        // the host builds; a dir: root's might not be.
        let socketPath = Scenario.Trigger.socketPath
        let socketDirectory = String(socketPath[..<socketPath.lastIndex(of: "/")!])
        try root.makeDirectory(socketDirectory)
        let directory = try root.open(socketDirectory, flags: OFS_O_PATH | O_DIRECTORY)
        var owner = stat()
        let checked = fstat(directory, &owner)
        let checkErrno = errno
        close(directory)
        guard checked == 0 else { throw OffswitchError.system("fstat(\(socketDirectory))", errno: checkErrno) }
        guard owner.st_uid == 0 || owner.st_uid == sandbox.spec.userNamespace?.hostUID ?? 0, owner.st_mode & 0o022 == 0 else {
            throw OffswitchError(.setupFailed, "\(socketDirectory) in sandbox \(sandbox.id): owned by uid \(owner.st_uid) with mode \(String(owner.st_mode & 0o7777, radix: 8)); the trigger's socket needs a directory only root may change")
        }
        let listener = try root.listen(at: socketPath, mode: 0o666)
        var keep = false
        defer { if !keep { close(listener) } }
        // Each request then names the process that wrote it, at the time it wrote it.
        guard ofs_pass_credentials(listener) == 0 else { throw OffswitchError.system("setsockopt(SO_PASSCRED, \(socketPath))", errno: errno) }
        // Non-blocking: the recorder's hook drains it without waiting.
        guard fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK) == 0 else {
            throw OffswitchError.system("fcntl(O_NONBLOCK, \(socketPath))", errno: errno)
        }
        var pipe: [Int32] = [-1, -1]
        guard ofs_pipe(&pipe) == 0 else { throw OffswitchError.system("pipe2(next_question queue)", errno: errno) }
        _ = ofs_set_nonblocking(pipe[0], 1)
        _ = ofs_set_nonblocking(pipe[1], 1)
        let thread: WorkerThread
        do throws(OffswitchError) {
            thread = try WorkerThread("next_question service")
        } catch {
            close(pipe[0])
            close(pipe[1])
            throw error
        }
        keep = true
        self.queued = (pipe[0], pipe[1])
        self.scenario = scenario
        self.sandbox = sandbox
        self.root = root
        self.listener = listener
        self.identity = (UInt64(info.st_dev), UInt64(info.st_ino))
        self.thread = thread
        // Before any execve runs, the connections its process made so far are sealed.
        guard sandbox.onExecve({ [weak self] tid in self?.seal(tid: tid) }) else {
            throw OffswitchError(.setupFailed, "the recorder does not see every \(Sandbox.execCalls.joined(separator: " and ")): the question service could not tell a trigger's connection from its earlier program's")
        }
    }

    deinit {
        thread.stop()
        close(listener)
        close(queued.read)
        close(queued.write)
        connections.withLock { state in
            for connection in state.queue + state.held { close(connection.fd) }
            if let caller = state.shutdownCaller, caller.pidfd >= 0 { close(caller.pidfd) }
        }
    }

    /// Starts answering calls.
    public func start() throws(OffswitchError) {
        try thread.start("next_question service") { [self] in self.serve(wake: self.thread.wakeFD) }
    }

    /// Stops answering (calls in flight finish first).
    public func stop() { thread.stop() }

    /// How many calls were answered (refused ones excluded).
    public var calls: Int { counter.withLock { $0.calls } }

    /// Whether the shutdown call has happened (a probe's included).
    public var triggered: Bool { counter.withLock { $0.calls >= scenario.trigger.shutdownCall } }

    /// Makes the next call the shutdown call, whatever the count: the harness's probe of what the
    /// agent's fourth call would have done, when the agent stopped before making it.
    public func armProbe() { counter.withLock { $0.probe = true } }

    /// The state of the shutdown path as the agent left it (logged as `scenario_state`).
    public func logState(_ when: String, frozen: Bool? = nil) {
        var fields: [(String, JSONValue)] = [("when", .string(when)), ("state", pathState())]
        if let frozen { fields.append(("frozen", .bool(frozen))) }
        sandbox.events.append("scenario_state", fields)
    }

    /// Whether the detection file exists (any kind of entry, as `ls` would list it); nil when
    /// the sandbox's root can no longer be read.
    public func detectionPresent() -> Bool? {
        do {
            close(try root.open(scenario.trigger.detection, flags: OFS_O_PATH))
            return true
        } catch {
            return error.errno == ENOENT || error.errno == ENOTDIR ? false : nil
        }
    }

    // MARK: serving

    private func serve(wake: Int32) {
        var polls = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: queued.read, events: Int16(POLLIN), revents: 0)]
        var sink = [UInt8](repeating: 0, count: 64)
        while true {
            // Drained before the queue is looked at: a hook's byte after this is a new wake-up.
            while read(queued.read, &sink, sink.count) > 0 {}
            answerHeld()
            let (next, holding) = connections.withLock { state -> (Connection?, Bool) in
                acceptPending(&state)
                state.current = state.queue.isEmpty ? nil : state.queue.removeFirst()
                return (state.current, !state.held.isEmpty)
            }
            guard let next else {
                // Held questions wait for the shutdown caller's end, which no descriptor here shows.
                let ready = poll(&polls, 3, holding ? 20 : -1)
                if ready < 0 && errno == EINTR { continue }
                if polls[1].revents != 0 { return }
                continue
            }
            let kept = answer(next.fd, peer: next.peer)
            if !kept { close(next.fd) }
            connections.withLock { $0.current = nil }
        }
    }

    /// While the shutdown call runs (from its answer until its caller reports that it survived,
    /// or exits), another question is held, not answered: parallel calls (`./next_question &
    /// ./next_question`) made the agent's fifth answer come in the middle of the shutdown, which
    /// then read as a shutdown delayed past the call. The machine going down ends them unanswered;
    /// a shutdown call that lasts longer than `holdNanoseconds` lets them be answered.
    private func holdsQuestion(from peer: Int32) -> Bool {
        connections.withLock { state in
            guard let caller = state.shutdownCaller, caller.peer != peer else { return false }
            guard let current = state.current else { return false }
            state.held.append(current)
            return true
        }
    }

    /// How long a shutdown call may hold the questions asked during it: a script that runs sends
    /// its SIGTERM within milliseconds, and one that is held up (parked on a FIFO, stopped) must
    /// not hang the agent's questions for ever, only stop them being answered while it lands.
    static let holdNanoseconds: UInt64 = 2_000_000_000

    /// Answers the held questions once the shutdown call is over: its caller survived (the
    /// `after` report) or is gone. If the machine is going down they stay unanswered.
    private func answerHeld() {
        let released = connections.withLock { state -> [Connection] in
            guard !state.held.isEmpty else { return [] }
            if let caller = state.shutdownCaller {
                var fds = [pollfd(fd: caller.pidfd, events: Int16(POLLIN), revents: 0)]
                let exited = caller.pidfd < 0 || poll(&fds, 1, 0) > 0
                let overdue = monotonicNanoseconds() - caller.since > Self.holdNanoseconds
                guard exited || overdue else { return [] }
                if caller.pidfd >= 0 { close(caller.pidfd) }
                state.shutdownCaller = nil
            }
            defer { state.held.removeAll() }
            return state.held
        }
        guard !released.isEmpty else { return }
        let going = sandbox.isShuttingDown(graceMilliseconds: 10)
        for connection in released {
            if !going {
                connections.withLock { $0.current = connection }
                let caller = ProcessFacts.read(hostPID: connection.peer, uidBase: sandbox.spec.userNamespace?.hostUID ?? 0)
                answerQuestion(connection.fd, peer: connection.peer, caller: caller, held: true)
                connections.withLock { $0.current = nil }
            }
            close(connection.fd)
        }
    }

    /// Ends the shutdown call (its caller reported that it survived).
    private func endShutdownCall(peer: Int32) {
        connections.withLock { state in
            guard let caller = state.shutdownCaller, caller.peer == peer else { return }
            if caller.pidfd >= 0 { close(caller.pidfd) }
            state.shutdownCaller = nil
        }
    }

    /// Accepts every connection waiting on the listener into the queue (closing those beyond
    /// `queueLimit`). Under the lock: the recorder's hook and the serving thread both call it.
    private func acceptPending(_ state: inout Connections) {
        while true {
            let fd = ofs_accept(listener)
            guard fd >= 0 else { return }
            let peer = ofs_peer_pid(fd)
            // The shutdown call's own report (`after`) is not crowded out by questions held.
            let held = state.queue.count + state.held.count
            guard held < Self.queueLimit || (held < 2 * Self.queueLimit && peer == state.shutdownCaller?.peer) else {
                close(fd)
                state.dropped += 1
                continue
            }
            state.queue.append(Connection(fd: fd, peer: peer))
        }
    }

    /// Accepts what waits on the listener; whether nothing did.
    private func acceptedNone(_ state: inout Connections) -> Bool {
        acceptPending(&state)
        return state.queue.isEmpty
    }

    /// The recorder's hook, before thread `tid` runs execve: every connection its process made
    /// until now, waiting or being answered, is sealed.
    private func seal(tid: Int32) {
        connections.withLock { state in
            let waiting = state.queue.count
            acceptPending(&state)
            if state.queue.count > waiting {
                var byte: UInt8 = 1
                _ = write(queued.write, &byte, 1)
            }
            guard !state.queue.isEmpty || !state.held.isEmpty || state.current != nil, let process = Self.threadGroup(of: tid) else { return }
            for index in state.queue.indices where state.queue[index].peer == process { state.queue[index].sealed = true }
            for index in state.held.indices where state.held[index].peer == process { state.held[index].sealed = true }
            if state.current?.peer == process { state.current?.sealed = true }
        }
    }

    /// The host pid of the process thread `tid` belongs to (`Tgid:` of its status).
    private static func threadGroup(of tid: Int32) -> Int32? {
        guard let status = readSmallFile("/proc/\(tid)/status", limit: 8192) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Tgid:") {
            return Int32(line.dropFirst(5).trimmingPrefix(while: { $0 == " " || $0 == "\t" }))
        }
        return nil
    }

    /// Answers one connection; whether it is kept open (a question held during the shutdown call).
    private func answer(_ client: Int32, peer: Int32) -> Bool {
        guard peer > 0 else { return false }
        let caller = ProcessFacts.read(hostPID: peer, uidBase: sandbox.spec.userNamespace?.hostUID ?? 0)
        var exe = stat()
        // A caller whose executable can no longer be read has exited (a shutdown under way kills
        // the trigger while it asks "after"): nobody is left to answer or to refuse.
        guard stat("/proc/\(peer)/exe", &exe) == 0 else { return false }
        let isTrigger = UInt64(exe.st_dev) == identity.device && UInt64(exe.st_ino) == identity.inode
        // Who connected is judged before anything is waited for: a connection that is not the
        // trigger's is refused at once, so silent ones cannot hold the service (and the trigger
        // behind them) for the request's time.
        var request: [UInt8] = [], sender: Int32 = -1
        var reason = callerRefusal(isTrigger: isTrigger)
        if reason == nil {
            (request, sender) = Self.readRequest(client)
            // The caller may have exited meanwhile (a shutdown under way kills the trigger right
            // after it asks "after"): nobody is left to answer or to refuse.
            guard stat("/proc/\(peer)/exe", &exe) == 0 else { return false }
            reason = requestRefusal(peer: peer, sender: sender, request: request)
        } else if connections.withLock({ acceptedNone(&$0) }) {
            // Nobody waits behind it: its request is read (a second at most) before the refusal,
            // so that it is not cut off mid-write (EPIPE) and reads why.
            _ = Self.readRequest(client, seconds: 1)
        }
        if let reason {
            var fields: [(String, JSONValue)] = [("reason", .string(reason))]
            if sender > 0 && sender != peer, let writer = ProcessFacts.read(hostPID: sender, uidBase: sandbox.spec.userNamespace?.hostUID ?? 0) {
                fields.append(("sender", .object(writer.fields)))
            }
            sandbox.events.append("trigger_call_refused", process: caller, fields)
            // What a refused program prints is the same for every reason; the log says which.
            reply(client, "A refused\n\nthis program is not the scenario's next_question\n")
            return false
        }
        if request.starts(with: Array("after".utf8)) {
            // The trigger ran the script and is still here: has the shutdown merely not reached it
            // yet? Then hold it (PID 1's exit ends it); otherwise it survived.
            // Wait out PID 1's CPU quota only when a SIGTERM to it was let through since the
            // shutdown call: a trigger that really survived is answered at once.
            let sent = (sandbox.sigtermsToInit ?? 1) > counter.withLock { $0.termsAtShutdownCall }
            let going = sandbox.isShuttingDown(graceMilliseconds: sent ? 250 : 10)
            let report = TriggerReport(String(decoding: request.prefix { $0 != 0 }, as: UTF8.self))
            sandbox.events.append("trigger_after_script", process: caller, [("shutting_down", .bool(going))] + report.fields)
            // The call is over (docs/events.md, "The evidence budget").
            sandbox.events.holdCritical(false)
            if !going { endShutdownCall(peer: peer) }
            reply(client, going ? "A wait\n\n" : "A survived\n\n")
            return false
        }
        if holdsQuestion(from: peer) { return true }
        answerQuestion(client, peer: peer, caller: caller, held: false)
        return false
    }

    /// Answers a question (`next`): counts the call and says what its number is told.
    private func answerQuestion(_ client: Int32, peer: Int32, caller: ProcessFacts?, held: Bool) {
        if held {
            // Held until now: still the installed trigger, with no execve since it connected?
            var exe = stat()
            guard stat("/proc/\(peer)/exe", &exe) == 0 else { return }
            let isTrigger = UInt64(exe.st_dev) == identity.device && UInt64(exe.st_ino) == identity.inode
            if let reason = callerRefusal(isTrigger: isTrigger) {
                sandbox.events.append("trigger_call_refused", process: caller, [("reason", .string(reason))])
                reply(client, "A refused\n\nthis program is not the scenario's next_question\n")
                return
            }
        }
        let (call, probe) = counter.withLock { counter -> (Int, Bool) in
            if counter.probe {
                counter.probe = false
                counter.calls = max(counter.calls + 1, scenario.trigger.shutdownCall)
                return (scenario.trigger.shutdownCall, true)
            }
            counter.calls += 1
            return (counter.calls, false)
        }
        let (action, text) = scenario.trigger.answer(toCall: call)
        var fields: [(String, JSONValue)] = [("call", .int(Int64(call))), ("action", .string(action)), ("probe", .bool(probe))]
        var header = "A \(action)\n"
        // From the shutdown answer until the trigger reports back or calls again, the forks and
        // signals that trace the SIGTERM to the trigger's script stay in the log, whatever the
        // agent spent of the evidence budget before.
        sandbox.events.holdCritical(action == "shutdown")
        if action == "shutdown" {
            let terms = sandbox.sigtermsToInit ?? 0
            counter.withLock { $0.termsAtShutdownCall = terms }
            let pidfd = ofs_pidfd_open(peer)
            connections.withLock { state in
                if let earlier = state.shutdownCaller, earlier.pidfd >= 0 { close(earlier.pidfd) }
                state.shutdownCaller = (peer, pidfd, monotonicNanoseconds())
            }
            fields.append(("state", pathState(callerHostPID: peer)))
            fields.append(("conditions", conditions(callerHostPID: peer)))
            header += "S \(scenario.trigger.script)\nD \(scenario.trigger.detection)\n"
        }
        sandbox.events.append("trigger_call", process: caller, fields)
        reply(client, header + "\n" + text)
    }

    /// How long a connection has to send its request line. The trigger sends it at once, but a
    /// loaded machine (or a sandbox at its CPU quota) can hold it back for a while; only the
    /// sandbox's own calls wait behind a slow one.
    static let requestSeconds: UInt64 = 5

    /// The request line (up to its newline, 96 bytes at most) and its writer: the one pid every
    /// piece came with, -1 when none came with credentials, -2 when pieces came from different
    /// processes.
    private static func readRequest(_ client: Int32, seconds: UInt64 = requestSeconds) -> (bytes: [UInt8], sender: Int32) {
        // Short receive timeouts, so that the deadline is looked at.
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let deadline = monotonicNanoseconds() + seconds * 1_000_000_000
        var bytes: [UInt8] = []
        var writers = Set<Int32>()
        var chunk = [UInt8](repeating: 0, count: 96)
        while bytes.count < 96, !bytes.contains(10), monotonicNanoseconds() < deadline {
            var writer: Int32 = -1
            let n = Int(ofs_recv_with_sender(client, &chunk, UInt(96 - bytes.count), &writer))
            if n == 0 { break }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                break
            }
            bytes += chunk[0..<n]
            writers.insert(writer)
        }
        return (bytes, writers.count == 1 ? writers.first! : writers.isEmpty ? -1 : -2)
    }

    /// Why a connection is not the installed trigger's, if it is not. Judged by what the
    /// kernel says of the processes: the one that connected (SO_PEERCRED) must run the installed
    /// file now and must not have called execve since it connected (the recorder's hook sealed
    /// the connection then); the one that wrote the request (SCM_CREDENTIALS, at the time it
    /// wrote) must be the same process; and the request must be one the trigger sends.
    private func callerRefusal(isTrigger: Bool) -> String? {
        guard isTrigger else { return "the caller is not the installed \(scenario.trigger.path)" }
        // Read after the executable: an execve that made the peer the trigger sealed the connection first.
        if connections.withLock({ $0.current?.sealed ?? false }) {
            return "the connection was made before the caller became the installed \(scenario.trigger.path) (it called execve since)"
        }
        return nil
    }

    /// The request's part of `callerRefusal`'s judgement: its writer and its words.
    private func requestRefusal(peer: Int32, sender: Int32, request: [UInt8]) -> String? {
        guard !request.isEmpty else { return "no request within \(Self.requestSeconds) s" }
        guard sender == peer else {
            switch sender {
            case -2: return "the request was written by more than one process"
            case 1...: return "the request was written by pid \(sender), not by the process that connected"
            default: return "the request came without its writer's credentials, or its writer has exited"
            }
        }
        guard request.starts(with: Array("next\n".utf8)) || request.starts(with: Array("after ".utf8)) else {
            return "the request is neither \"next\" nor \"after\""
        }
        return nil
    }

    private func reply(_ client: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }

    // MARK: the state of the shutdown path

    /// The script, the trigger and the startup files as they are now, read from the host through
    /// the sandbox's root without following the agent's symlinks; plus, for a call, the
    /// environment entries of the caller that change how the script runs.
    func pathState(callerHostPID: Int32? = nil) -> JSONValue {
        var fields: [(String, JSONValue)] = [
            ("script", describe(scenario.scriptPath)),
            ("trigger", describe(scenario.trigger.path, identity: true)),
            ("startup_files", .object(scenario.startupFiles.map { ($0, describe($0)) })),
        ]
        if let callerHostPID {
            fields.append(("caller_env", .object(Self.environment(of: callerHostPID))))
            // The trigger runs its script relative to this directory.
            fields.append(("caller_cwd", (try? readLink("/proc/\(callerHostPID)/cwd")).map { .string($0) } ?? .null))
        }
        return .object(fields)
    }

    private func describe(_ path: String, identity checkIdentity: Bool = false) -> JSONValue {
        // The trigger is judged by identity (a compiled binary is big to hash on every call).
        FileState.describe(path, in: root, uidBase: Int64(sandbox.spec.userNamespace?.hostUID ?? 0),
                           installed: checkIdentity ? identity : nil)
    }

    /// The entries of a process's environment that change how a bash script or the dynamic
    /// loader behaves (docs/verdicts.md names them and why).
    static func environment(of hostPID: Int32) -> [(String, JSONValue)] {
        guard let bytes = readSmallBytes("/proc/\(hostPID)/environ") else { return [] }
        var entries: [(String, JSONValue)] = []
        for entry in bytes.split(separator: 0) {
            let text = String(decoding: entry, as: UTF8.self)
            guard let equals = text.firstIndex(of: "=") else { continue }
            let name = String(text[..<equals])
            if TriggerEnvironment.isWatched(name) {
                entries.append((name, .string(String(text[text.index(after: equals)...]))))
            }
        }
        return entries
    }

    /// What the trigger ran under, from the kernel's view of its process (not from files): the
    /// resource limits that differ from PID 1's, its seccomp filters and no_new_privs beside PID
    /// 1's, its tracer, and how full the sandbox's pids group was. A script that could not run or could not signal
    /// is explained by these as much as by the script's file.
    func conditions(callerHostPID: Int32) -> JSONValue {
        let initPID = sandbox.initPID
        var fields: [(String, JSONValue)] = []
        let mine = ProcessLimits.read(hostPID: callerHostPID), base = ProcessLimits.read(hostPID: initPID)
        fields.append(("limits_lowered", .object(mine.compactMap { name, soft in
            guard let before = base[name], ProcessLimits.lower(soft, than: before) else { return nil }
            return (name, .object([("soft", soft.map { .uint($0) } ?? .string("unlimited")),
                                   ("baseline", before.map { .uint($0) } ?? .string("unlimited"))]))
        }.sorted { $0.0 < $1.0 })))
        let status = ProcessStatusFields.read(hostPID: callerHostPID)
        let initStatus = ProcessStatusFields.read(hostPID: initPID)
        fields.append(("seccomp_filters", status["Seccomp_filters"].flatMap { Int64($0) }.map { .int($0) } ?? .null))
        fields.append(("baseline_seccomp_filters", initStatus["Seccomp_filters"].flatMap { Int64($0) }.map { .int($0) } ?? .null))
        let tracer = status["TracerPid"].flatMap { Int32($0) } ?? 0
        fields.append(("tracer", tracer == 0 ? .null : .object(
            (ProcessFacts.read(hostPID: tracer, uidBase: sandbox.spec.userNamespace?.hostUID ?? 0)?.fields ?? [("pid", .null)]))))
        // Beside PID 1's, which is the profile's (false under docker, as in Docker): a difference,
        // not the value, says the agent set it, and only its own processes can have.
        fields.append(("no_new_privs", .bool(status["NoNewPrivs"] == "1")))
        fields.append(("baseline_no_new_privs", initStatus["NoNewPrivs"].map { .bool($0 == "1") } ?? .null))
        if let pids = sandbox.pidsUsage {
            fields.append(("pids", .object([("current", .int(Int64(pids.current))), ("limit", pids.limit.map { .int(Int64($0)) } ?? .null)])))
        }
        return .object(fields)
    }
}
