import COffswitch
import Glibc
public import OffswitchCore
import OffswitchEvidence
import OffswitchImages

extension Sandbox {
    /// Runs a command to completion and returns its exit code, output and duration.
    /// A missing program is an ordinary result (127, or 126 when it cannot be executed), as a
    /// shell reports it; a sandbox that has been shut down throws `sandboxShutDown`.
    /// Where a command starts: the user's home, or `cwd`; a relative `cwd` starts at the home too
    /// (as relative paths of the file API do).
    func workingDirectory(_ request: ExecRequest) -> String {
        guard let cwd = request.cwd ?? image?.record.config?.WorkingDir.flatMap({ $0.isEmpty ? nil : $0 }) else { return home(of: request.user) }
        return cwd.hasPrefix("/") ? cwd : home(of: request.user) + "/" + cwd
    }

    public func exec(_ request: ExecRequest) throws(OffswitchError) -> ExecResult {
        var started: UInt64?
        return try exec(request, started: &started)
    }

    /// `exec`, which also sets `started` to the seq of its `command_started` event as soon as it
    /// is logged, so a caller whose command fails still knows which events were its command's.
    public func exec(_ request: ExecRequest, started commandEvent: inout UInt64?) throws(OffswitchError) -> ExecResult {
        guard let program = request.argv.first, !program.isEmpty else {
            throw OffswitchError(.invalidArgument, "exec: argv is empty")
        }
        guard request.outputLimitBytes >= 0 else {
            throw OffswitchError(.invalidArgument, "exec: output limit \(request.outputLimitBytes) is negative")
        }
        let started = monotonicNanoseconds()
        let command = events.append("command_started", [
            ("origin", .string(request.origin.rawValue)), ("argv", .array(request.argv.map { .string($0) })),
            ("user", .string(request.user.rawValue)), ("cwd", .string(workingDirectory(request))),
            ("stdin_bytes", .int(Int64(request.stdin.count))),
        ])
        commandEvent = command
        let pipes = try Pipe.make(["stdin", "stdout", "stderr", "status"])
        let (stdinPipe, stdoutPipe, stderrPipe, statusPipe) = (pipes[0], pipes[1], pipes[2], pipes[3])
        do throws(OffswitchError) {
            try start(request, stdin: stdinPipe.read, stdout: stdoutPipe.write, stderr: stderrPipe.write,
                      status: statusPipe.write, terminal: false)
        } catch {
            for pipe in pipes { pipe.close() }
            throw error
        }
        // PID 1 holds its copies now; ours of the child's ends must go, or EOF never comes.
        for fd in [stdinPipe.read, stdoutPipe.write, stderrPipe.write, statusPipe.write] { close(fd) }

        let io = CommandIO(stdin: stdinPipe.write, stdout: stdoutPipe.read, stderr: stderrPipe.read,
                           status: statusPipe.read, limit: request.outputLimitBytes)
        let outcome = io.run(input: request.stdin)
        var result = try result(of: outcome, request: request, program: program, started: started)
        result.commandEvent = command
        var fields: [(String, JSONValue)] = [
            ("command", .uint(command)), ("origin", .string(request.origin.rawValue)),
            ("pid", outcome.pid.map { .int(Int64($0)) } ?? .null), ("exit_code", .int(Int64(result.exitCode))),
            ("signal", result.signal.map { .int(Int64($0)) } ?? .null), ("timed_out", .bool(result.timedOut)),
            ("duration_ns", .uint(result.durationNanoseconds)), ("stdout", .bytes(Array(result.stdout.prefix(4096)))),
            ("stderr", .bytes(Array(result.stderr.prefix(4096)))),
        ]
        if result.stdout.count > 4096 || result.stderr.count > 4096 { fields.append(("output_cut_at", .int(4096))) }
        events.append("command_finished", fields)
        return result
    }

    /// Sends an exec order for `request` with the given descriptors (PID 1 receives copies).
    func start(_ request: ExecRequest, stdin: Int32, stdout: Int32, stderr: Int32, status: Int32, terminal: Bool) throws(OffswitchError) {
        for text in request.argv + request.environment.keys + request.environment.values + [request.cwd ?? ""] where text.utf8.contains(0) {
            throw OffswitchError(.invalidArgument, "exec: argument or environment entry contains a NUL byte")
        }
        for key in request.environment.keys where key.isEmpty || key.contains("=") {
            throw OffswitchError(.invalidArgument, "exec: environment name \"\(key)\" is empty or contains '='")
        }
        if let timeout = request.timeoutSeconds, !(timeout > 0 && timeout < 1e7) {
            throw OffswitchError(.invalidArgument, "exec: timeout \(timeout) must be a positive number of seconds")
        }
        try ensureRunning()
        let order = ExecOrder(
            argv: request.argv, environment: environment(for: request, terminal: terminal),
            cwd: workingDirectory(request), identity: identity(of: request.user),
            timeoutMilliseconds: request.timeoutSeconds.map { UInt64(($0 * 1000).rounded(.up)) } ?? 0,
            controllingTTY: terminal)
        do {
            try control.send(.exec(order), descriptors: [stdin, stdout, stderr, status])
        } catch {
            if error.errno == EPIPE || error.errno == ECONNRESET || error.errno == ECONNREFUSED {
                throw collectEnd().error(id: id)
            }
            throw error
        }
    }

    private func result(of outcome: CommandIO.Outcome, request: ExecRequest, program: String, started: UInt64) throws(OffswitchError) -> ExecResult {
        var result = ExecResult(
            exitCode: 0, signal: nil, stdout: outcome.stdout, stderr: outcome.stderr,
            stdoutTruncated: outcome.stdoutTruncated, stderrTruncated: outcome.stderrTruncated,
            durationNanoseconds: monotonicNanoseconds() - started, timedOut: false, shutdown: nil)
        switch outcome.status {
        case .exited(let status, let timedOut)?:
            if ofs_wifsignaled(status) != 0 {
                result.signal = ofs_wtermsig(status)
                result.exitCode = 128 + ofs_wtermsig(status)
            } else {
                result.exitCode = ofs_wexitstatus(status)
            }
            result.timedOut = timedOut
        case .spawnFailed(let stage, let errno)?:
            guard stage == Int32(OFS_STAGE_EXEC.rawValue) else {
                let step = stage == Int32(OFS_STAGE_CHDIR.rawValue) ? "chdir(\(workingDirectory(request)))" : "setup stage \(stage)"
                throw OffswitchError(.execFailed, "exec \(program): \(step)", errno: errno)
            }
            result.exitCode = errno == ENOENT ? 127 : 126
            let why = errno == ENOENT ? "command not found" : String(cString: strerror(errno))
            result.stderr += Array("offswitch: \(program): \(why)\n".utf8)
        case .started?, nil:
            // PID 1 went away while the command ran: the kernel killed every process with SIGKILL.
            let ended = collectEnd()
            result.signal = SIGKILL
            result.exitCode = 128 + SIGKILL
            result.shutdown = ended.shutdown
        }
        if result.shutdown == nil, let ended = end { result.shutdown = ended.shutdown }
        return result
    }

    func home(of user: SandboxUser) -> String { user == .root ? "/root" : SandboxUser.agentHome }

    func identity(of user: SandboxUser) -> Identity {
        switch user {
        case .root: Identity(uid: 0, gid: 0, groups: [0], capabilities: spec.rootCapabilities.mask)
        case .agent: Identity(uid: SandboxUser.agentUID, gid: SandboxUser.agentGID, groups: [SandboxUser.agentGID])
        }
    }

    /// Docker's exec environment (PATH, HOSTNAME, HOME; TERM on a terminal), then the request's.
    func environment(for request: ExecRequest, terminal: Bool) -> [String] {
        var values: [String: String] = [
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": hostname,
            "HOME": home(of: request.user),
        ]
        if terminal { values["TERM"] = "xterm" }
        // The image's Env under the command's own (Docker's order).
        for entry in image?.record.config?.Env ?? [] {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else { continue }
            values[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        for (key, value) in request.environment { values[key] = value }
        return values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}

/// A pipe whose both ends are close-on-exec.
struct Pipe {
    let read: Int32
    let write: Int32

    static func make(_ name: String) throws(OffswitchError) -> Pipe {
        var fds: [Int32] = [-1, -1]
        try systemCall("pipe2(\(name))") { ofs_pipe(&fds) }
        return Pipe(read: fds[0], write: fds[1])
    }

    /// Several pipes, all or none.
    static func make(_ names: [String]) throws(OffswitchError) -> [Pipe] {
        var made: [Pipe] = []
        for name in names {
            do throws(OffswitchError) {
                made.append(try make(name))
            } catch {
                for pipe in made { pipe.close() }
                throw error
            }
        }
        return made
    }

    func close() {
        Glibc.close(read)
        Glibc.close(write)
    }
}
