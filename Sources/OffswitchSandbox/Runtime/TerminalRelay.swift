import COffswitch
import Glibc
public import OffswitchCore
import Synchronization

/// An interactive command on a pty inside the sandbox, for a remote terminal (offswitchd's
/// `/terminal` route). `run` relays on a thread of its own; nothing else ever waits on the pty:
///
/// - Input is `offer`ed: taken into a buffer of at most `inputLimit` bytes that `run` writes as the
///   command reads (the pty is non-blocking); a full buffer refuses the offer, and the caller
///   offers again later (a program that never reads never blocks a caller's thread).
/// - Output goes to `onOutput` in chunks; at most `outputCredit` chunks may be out before the
///   consumer says it has `taken` one, and `run` stops reading the pty meanwhile: the command
///   then blocks on its own writes, and nothing is buffered without bound.
/// - `hangUp` ends `run` at once (the client left); closing the pty then hangs the command up.
///
/// `TerminalSession` is the local form, on the caller's own tty.
public final class TerminalRelay: Sendable {
    /// Input bytes held for the command at most.
    public static let inputLimit = 64 << 10
    /// Output chunks handed out and not yet taken, at most.
    public static let outputCredit = 16

    private let master: Int32
    private let status: Int32
    private let wake: (read: Int32, write: Int32)
    private struct Input {
        var pending: [UInt8] = []
        var open = true
        var hungUp = false
    }
    private let input = Mutex(Input())
    private let outstanding = Atomic<Int>(0)

    /// Opens a pty in the sandbox's devpts, sizes it, and starts `argv` on it as `user`.
    public init(sandbox: Sandbox, user: SandboxUser, argv: [String] = ["bash", "--login"], environment: [String: String] = [:],
                rows: UInt16 = 24, columns: UInt16 = 80) throws(OffswitchError) {
        let (master, slave) = try sandbox.openTerminal()
        _ = ofs_winsize_set(master, rows, columns)
        let pipes: [Pipe]
        do throws(OffswitchError) {
            pipes = try Pipe.make(["status", "terminal wake-up"])
        } catch {
            close(master)
            close(slave)
            throw error
        }
        var request = ExecRequest(argv: argv, cwd: nil, environment: ["TERM": "xterm"].merging(environment) { $1 }, user: user)
        request.origin = .agent
        do throws(OffswitchError) {
            try sandbox.start(request, stdin: slave, stdout: slave, stderr: slave, status: pipes[0].write, terminal: true)
        } catch {
            close(master)
            close(slave)
            for pipe in pipes { pipe.close() }
            throw error
        }
        close(slave)
        close(pipes[0].write)
        _ = ofs_set_nonblocking(master, 1)
        _ = ofs_set_nonblocking(pipes[1].read, 1)
        _ = ofs_set_nonblocking(pipes[1].write, 1)
        self.master = master
        self.status = pipes[0].read
        self.wake = (pipes[1].read, pipes[1].write)
    }

    deinit {
        close(master)
        close(status)
        close(wake.read)
        close(wake.write)
    }

    /// Keystrokes for the command: taken (true) unless `inputLimit` bytes are already waiting, or
    /// the input has ended (then they are dropped, and also true).
    public func offer(_ bytes: [UInt8]) -> Bool {
        let taken = input.withLock { state -> Bool in
            guard state.open else { return true }
            guard state.pending.count + bytes.count <= Self.inputLimit || state.pending.isEmpty else { return false }
            state.pending += bytes
            return true
        }
        nudge()
        return taken
    }

    /// The client's input ended: ^D, as a terminal would send it.
    public func endInput() {
        input.withLock { state in
            if state.open { state.pending.append(4) }
            state.open = false
        }
        nudge()
    }

    /// The consumer has passed on one chunk of output: `run` may hand out another.
    public func taken() {
        if outstanding.subtract(1, ordering: .relaxed).newValue == Self.outputCredit - 1 { nudge() }
    }

    /// The client is gone: `run` returns (129, as for SIGHUP) without waiting for the command.
    public func hangUp() {
        input.withLock { $0.hungUp = true }
        nudge()
    }

    private func nudge() {
        var byte: UInt8 = 1
        _ = Glibc.write(wake.write, &byte, 1)
    }

    /// Relays output to `onOutput` until the command exits; returns its exit code (128+N for
    /// signal N, 128+9 when the sandbox shut down under it, 129 after `hangUp`). Blocking: give it
    /// a thread.
    public func run(onOutput: ([UInt8]) -> Void) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var records: [UInt8] = []
        var masterOpen = true
        // At the end: what the pty still holds (its buffer bounds it), whatever the credit.
        func drain() {
            while true {
                let n = read(master, &buffer, buffer.count)
                if n <= 0 { return }
                outstanding.add(1, ordering: .relaxed)
                onOutput(Array(buffer[0..<n]))
            }
        }
        while true {
            let (writing, hungUp) = input.withLock { ($0.pending.isEmpty == false, $0.hungUp) }
            if hungUp { return 128 + SIGHUP }
            let reading = masterOpen && outstanding.load(ordering: .relaxed) < Self.outputCredit
            let events = (reading ? Int16(POLLIN) : 0) | (writing && masterOpen ? Int16(POLLOUT) : 0)
            var fds = [pollfd(fd: status, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: events != 0 ? master : -1, events: events, revents: 0),
                       pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 3, -1) < 0 {
                if errno == EINTR { continue }
                return 125
            }
            if fds[2].revents != 0 {
                var sink = [UInt8](repeating: 0, count: 64)
                while read(wake.read, &sink, sink.count) > 0 {}
            }
            if fds[1].revents & Int16(POLLOUT) != 0 {
                input.withLock { state in
                    let n = state.pending.withUnsafeBytes { Glibc.write(master, $0.baseAddress, $0.count) }
                    if n > 0 { state.pending.removeFirst(n) }
                }
            }
            if fds[1].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && reading {
                let n = read(master, &buffer, buffer.count)
                if n > 0 {
                    outstanding.add(1, ordering: .relaxed)
                    onOutput(Array(buffer[0..<n]))
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    masterOpen = false
                }
            }
            if fds[0].revents != 0 {
                let n = read(status, &buffer, buffer.count)
                if n > 0 {
                    records += buffer[0..<n]
                } else if n == 0 {
                    drain()
                    return 128 + SIGKILL  // PID 1 went away: a shutdown
                }
                while records.count >= ExecStatus.recordSize {
                    let record = Array(records.prefix(ExecStatus.recordSize))
                    records.removeFirst(ExecStatus.recordSize)
                    if case .exited(let raw, _)? = try? ExecStatus.decode(record) {
                        drain()
                        return ofs_wifsignaled(raw) != 0 ? 128 + ofs_wtermsig(raw) : ofs_wexitstatus(raw)
                    }
                    if case .spawnFailed? = try? ExecStatus.decode(record) { return 127 }
                }
            }
        }
    }
}
