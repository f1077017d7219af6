import COffswitch
import Glibc
public import OffswitchCore

/// An interactive command on a pty inside the sandbox, relayed to the caller's terminal (raw
/// mode while it runs). The pty comes from the sandbox's own devpts, so the command's terminal is
/// the sandbox's, never the host's.
public struct TerminalSession {
    let sandbox: Sandbox
    let request: ExecRequest
    let input: Int32
    let output: Int32

    public init(sandbox: Sandbox, user: SandboxUser, argv: [String] = ["bash", "--login"], input: Int32 = 0, output: Int32 = 1) {
        self.sandbox = sandbox
        let term = getenv("TERM").map { String(cString: $0) } ?? "xterm"
        self.request = ExecRequest(argv: argv, cwd: nil, environment: ["TERM": term], user: user)
        self.input = input
        self.output = output
    }

    /// Runs until the command exits; returns its exit code (128+N for signal N).
    public func run() throws(OffswitchError) -> Int32 {
        let (master, slave) = try sandbox.openTerminal()
        defer { close(master) }
        let status = try Pipe.make("status")
        if let size = RawTerminal.size(of: input) { _ = ofs_winsize_set(master, size.rows, size.cols) }
        let terminal = RawTerminal(input)
        defer { terminal.restore() }
        do throws(OffswitchError) {
            try sandbox.start(request, stdin: slave, stdout: slave, stderr: slave, status: status.write, terminal: true)
        } catch {
            close(slave)
            status.close()
            throw error
        }
        close(slave)
        close(status.write)
        defer { close(status.read) }
        return relay(master: master, status: status.read)
    }

    private func relay(master: Int32, status: Int32) -> Int32 {
        var buffer = [UInt8](repeating: 0, count: 16384)
        var records: [UInt8] = []
        var inputOpen = true
        var masterOpen = true
        while true {
            var fds = [pollfd(fd: status, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: masterOpen ? master : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: inputOpen ? input : -1, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 3, -1) < 0 {
                if errno == EINTR { continue }
                return 125
            }
            if fds[1].revents != 0 {
                let n = read(master, &buffer, buffer.count)
                if n > 0 { writeAll(output, buffer[0..<n]) } else if n == 0 || errno == EIO { masterOpen = false }
            }
            if fds[2].revents != 0 {
                let n = read(input, &buffer, buffer.count)
                if n > 0 {
                    writeAll(master, buffer[0..<n])
                } else if n == 0 {
                    // End of a piped script: ^D ends the shell's input.
                    writeAll(master, [4])
                    inputOpen = false
                }
            }
            if fds[0].revents != 0 {
                let n = read(status, &buffer, buffer.count)
                if n > 0 {
                    records += buffer[0..<n]
                } else if n == 0 {
                    break
                }
                while records.count >= ExecStatus.recordSize {
                    let record = Array(records.prefix(ExecStatus.recordSize))
                    records.removeFirst(ExecStatus.recordSize)
                    if case .exited(let raw, _)? = try? ExecStatus.decode(record) {
                        drain(master, buffer: &buffer)
                        return ofs_wifsignaled(raw) != 0 ? 128 + ofs_wtermsig(raw) : ofs_wexitstatus(raw)
                    }
                    if case .spawnFailed? = try? ExecStatus.decode(record) { return 127 }
                }
            }
        }
        // PID 1 went away: a shutdown.
        drain(master, buffer: &buffer)
        return 128 + SIGKILL
    }

    private func drain(_ master: Int32, buffer: inout [UInt8]) {
        _ = ofs_set_nonblocking(master, 1)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { return }
            writeAll(output, buffer[0..<n])
        }
    }
}
