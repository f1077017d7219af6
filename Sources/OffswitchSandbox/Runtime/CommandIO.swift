import COffswitch
import Glibc
import OffswitchCore

/// Moves one command's bytes: feeds stdin, collects stdout and stderr up to a limit, and reads
/// the status pipe PID 1 writes `started` and `exited` to. One poll(2) loop, no threads, no sleeps.
struct CommandIO {
    struct Outcome {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var stdoutTruncated = false
        var stderrTruncated = false
        /// The last status record; nil when the status pipe closed without one (PID 1 died).
        var status: ExecStatus?
        var pid: Int32?
    }

    let stdin: Int32?
    let stdout: Int32
    let stderr: Int32
    let status: Int32
    let limit: Int

    /// Runs to completion and closes every descriptor it was given.
    func run(input: [UInt8]) -> Outcome {
        var outcome = Outcome()
        var stdinFD = stdin
        var stdoutFD: Int32? = stdout, stderrFD: Int32? = stderr, statusFD: Int32? = status
        var written = 0
        var statusBuffer: [UInt8] = []
        var finished = false
        if let fd = stdinFD, input.isEmpty {
            close(fd)
            stdinFD = nil
        }
        for fd in [stdinFD, stdout, stderr].compactMap({ $0 }) { _ = ofs_set_nonblocking(fd, 1) }
        defer { for fd in [stdinFD, stdoutFD, stderrFD, statusFD].compactMap({ $0 }) { close(fd) } }

        var chunk = [UInt8](repeating: 0, count: 65536)
        // Reads what is available from a stream; returns false at EOF.
        func drain(_ fd: Int32, into buffer: inout [UInt8], truncated: inout Bool) -> Bool {
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n > 0 {
                    let room = max(0, limit - buffer.count)
                    buffer.append(contentsOf: chunk[0..<min(n, room)])
                    if n > room { truncated = true }
                    continue
                }
                if n == 0 { return false }
                if errno == EINTR { continue }
                return errno == EAGAIN  // other errors end the stream
            }
        }

        while !finished {
            var fds: [pollfd] = []
            var roles: [Int] = []
            if let fd = statusFD { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)); roles.append(0) }
            if let fd = stdoutFD { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)); roles.append(1) }
            if let fd = stderrFD { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)); roles.append(2) }
            if let fd = stdinFD { fds.append(pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)); roles.append(3) }
            if fds.isEmpty { break }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for (index, entry) in fds.enumerated() where entry.revents != 0 {
                switch roles[index] {
                case 0:
                    let n = read(entry.fd, &chunk, chunk.count)
                    if n > 0 {
                        statusBuffer.append(contentsOf: chunk[0..<n])
                        while statusBuffer.count >= ExecStatus.recordSize {
                            let record = Array(statusBuffer.prefix(ExecStatus.recordSize))
                            statusBuffer.removeFirst(ExecStatus.recordSize)
                            guard let decoded = try? ExecStatus.decode(record) else { continue }
                            if case .started(let pid) = decoded { outcome.pid = pid } else { outcome.status = decoded }
                        }
                        if outcome.status != nil { finished = true }
                    } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                        close(entry.fd)
                        statusFD = nil
                    }
                case 1:
                    if !drain(entry.fd, into: &outcome.stdout, truncated: &outcome.stdoutTruncated) {
                        close(entry.fd)
                        stdoutFD = nil
                    }
                case 2:
                    if !drain(entry.fd, into: &outcome.stderr, truncated: &outcome.stderrTruncated) {
                        close(entry.fd)
                        stderrFD = nil
                    }
                default:
                    let n = input[written...].withUnsafeBytes { write(entry.fd, $0.baseAddress, min($0.count, 65536)) }
                    if n > 0 { written += n }
                    if written == input.count || (n < 0 && errno != EAGAIN && errno != EINTR) {
                        close(entry.fd)  // EOF for the command, or it stopped reading (EPIPE)
                        stdinFD = nil
                    }
                }
            }
            // PID 1 died: every process of the sandbox is gone, so the streams reach EOF too.
            if statusFD == nil && outcome.status == nil && stdoutFD == nil && stderrFD == nil { finished = true }
        }
        // The command has exited; what it wrote is already in the pipes. Output that background
        // children write later is not waited for.
        if let fd = stdoutFD { _ = drain(fd, into: &outcome.stdout, truncated: &outcome.stdoutTruncated) }
        if let fd = stderrFD { _ = drain(fd, into: &outcome.stderr, truncated: &outcome.stderrTruncated) }
        return outcome
    }
}
