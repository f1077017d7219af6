import COffswitch
import Glibc
import OffswitchCore

/// The commands PID 1 started for the host: their status pipes and deadlines.
struct CommandTable {
    private struct Running {
        var status: Int32
        var deadline: UInt64?
        var timedOut = false
    }

    private var running: [pid_t: Running] = [:]
    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    mutating func start(_ order: ExecOrder, stdin: Int32, stdout: Int32, stderr: Int32, status: Int32) {
        defer {
            close(stdin)
            close(stdout)
            close(stderr)
        }
        let path = order.environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? Self.defaultPath
        var pid: pid_t = -1
        var stage: Int32 = 0
        let err: Int32 = order.argv.withCStrings { argv in
            order.environment.withCStrings { envp in
                order.identity.groups.map { gid_t($0) }.withUnsafeBufferPointer { groups in
                    path.withCString { path in order.cwd.withCString { cwd in
                    var command = ofs_command(
                        path_env: path, cwd: cwd, stdin_fd: stdin, stdout_fd: stdout, stderr_fd: stderr,
                        controlling_tty: order.controllingTTY ? 1 : 0,
                        identity: ofs_identity(uid: order.identity.uid, gid: order.identity.gid, groups: groups.baseAddress,
                                               group_count: Int32(groups.count), capabilities: order.identity.capabilities))
                    return ofs_command_spawn(&command, argv, envp, &pid, &stage)
                    } }
                }
            }
        }
        if err != 0 {
            Self.send(.spawnFailed(stage: stage, errno: err), to: status)
            close(status)
            return
        }
        Self.send(.started(pid: pid), to: status)
        let deadline = order.timeoutMilliseconds == 0 ? nil : monotonicNanoseconds() + order.timeoutMilliseconds * 1_000_000
        running[pid] = Running(status: status, deadline: deadline)
    }

    /// Reap every child that has exited; report the ones the host is waiting for.
    mutating func reapAll() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG | __WALL)
            if pid <= 0 { return }
            guard let entry = running.removeValue(forKey: pid) else { continue }  // orphans and file helpers
            Self.send(.exited(status: status, timedOut: entry.timedOut), to: entry.status)
            close(entry.status)
        }
    }

    func millisecondsUntilNextDeadline(now: UInt64) -> Int32 {
        guard let next = running.values.compactMap({ $0.timedOut ? nil : $0.deadline }).min() else { return -1 }
        if next <= now { return 0 }
        return Int32(min((next - now) / 1_000_000 + 1, UInt64(Int32.max)))
    }

    /// Kill the process tree of every command past its deadline.
    mutating func killExpired(now: UInt64) {
        for (pid, entry) in running where !entry.timedOut {
            guard let deadline = entry.deadline, deadline <= now else { continue }
            running[pid]?.timedOut = true
            ProcessTree.kill(root: pid)
        }
    }

    private static func send(_ status: ExecStatus, to fd: Int32) {
        let bytes = status.encoded()
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    }
}
