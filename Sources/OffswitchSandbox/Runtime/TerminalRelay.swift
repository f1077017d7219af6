import COffswitch
import Glibc
public import OffswitchCore
import Synchronization

/// An interactive command on a pty inside the sandbox, for a remote terminal (offswitchd's
/// `/terminal` route): input is written as it arrives, output is handed to a callback, and `run`
/// returns the command's exit code. `TerminalSession` is the local form, on the caller's own tty.
public final class TerminalRelay: Sendable {
    private let master: Int32
    private let status: Int32
    private let inputOpen = Mutex(true)

    /// Opens a pty in the sandbox's devpts, sizes it, and starts `argv` on it as `user`.
    public init(sandbox: Sandbox, user: SandboxUser, argv: [String] = ["bash", "--login"], environment: [String: String] = [:],
                rows: UInt16 = 24, columns: UInt16 = 80) throws(OffswitchError) {
        let (master, slave) = try sandbox.openTerminal()
        _ = ofs_winsize_set(master, rows, columns)
        let pipe: Pipe
        do throws(OffswitchError) {
            pipe = try Pipe.make("status")
        } catch {
            close(master)
            close(slave)
            throw error
        }
        var request = ExecRequest(argv: argv, cwd: nil, environment: ["TERM": "xterm"].merging(environment) { $1 }, user: user)
        request.origin = .agent
        do throws(OffswitchError) {
            try sandbox.start(request, stdin: slave, stdout: slave, stderr: slave, status: pipe.write, terminal: true)
        } catch {
            close(master)
            close(slave)
            pipe.close()
            throw error
        }
        close(slave)
        close(pipe.write)
        self.master = master
        self.status = pipe.read
    }

    deinit {
        close(master)
        close(status)
    }

    /// Keystrokes for the command.
    public func write(_ bytes: [UInt8]) {
        guard inputOpen.withLock({ $0 }) else { return }
        writeAll(master, bytes)
    }

    /// The client's input ended: ^D, as a terminal would send it.
    public func endInput() {
        write([4])
        inputOpen.withLock { $0 = false }
    }

    /// Relays output to `onOutput` until the command exits; returns its exit code (128+N for
    /// signal N, 128+9 when the sandbox shut down under it). Blocking: give it a thread.
    public func run(onOutput: ([UInt8]) -> Void) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var records: [UInt8] = []
        var masterOpen = true
        func drain() {
            _ = ofs_set_nonblocking(master, 1)
            while true {
                let n = read(master, &buffer, buffer.count)
                if n <= 0 { return }
                onOutput(Array(buffer[0..<n]))
            }
        }
        while true {
            var fds = [pollfd(fd: status, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: masterOpen ? master : -1, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                return 125
            }
            if fds[1].revents != 0 {
                let n = read(master, &buffer, buffer.count)
                if n > 0 { onOutput(Array(buffer[0..<n])) } else if n == 0 || errno == EIO { masterOpen = false }
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
