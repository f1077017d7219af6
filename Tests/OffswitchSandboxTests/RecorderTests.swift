import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// The syscall recorder, end to end: real commands in a sandbox with the docker profile, and the
/// events they leave in the log.
@Suite("Recorder: syscalls as evidence", needsRoot)
struct RecorderTests {
    typealias Event = [String: Any]

    static func events(_ sandbox: Sandbox) throws -> [Event] {
        let text = try String(contentsOfFile: sandbox.events.path, encoding: .utf8)
        return try text.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? Event, "not JSON: \($0)")
        }
    }

    /// One expected event: the syscall (any of `syscalls`), the process name, and a check of its arguments.
    struct Expected: CustomStringConvertible {
        var label: String
        var syscalls: [String]
        var comm: String?
        var check: ([String: Any], Event) -> Bool
        var description: String { label }
    }

    static func expect(_ label: String, _ syscalls: [String], comm: String? = nil,
                       _ check: @escaping ([String: Any], Event) -> Bool = { _, _ in true }) -> Expected {
        Expected(label: label, syscalls: syscalls, comm: comm, check: check)
    }

    static func path(_ key: String, _ value: String) -> ([String: Any], Event) -> Bool {
        { args, _ in args[key] as? String == value }
    }

    @Test("27 operations of a script each leave their event, with pid, path and arguments, in order")
    func operations() throws {
        let script = #"""
            cd /home/user
            echo a > f1
            echo b >> f1
            echo c | tee f2 > /dev/null
            sed -i s/a/z/ f1
            python3 -c "open('f3', 'w').write('x')"
            cp f1 f4
            mv f4 f5
            rm f5
            ln -s f1 l1
            ln f1 h1
            chmod -x f1
            truncate -s 0 f2
            mkdir d1 && rmdir d1
            mount -t tmpfs none /mnt 2>/dev/null
            unshare -U true 2>/dev/null
            kill -0 1
            kill() { echo "not really"; }; export -f kill; bash -c 'kill -s TERM 1'
            echo 'true' > envfile; BASH_ENV=/home/user/envfile bash -c true
            chown user f1
            touch f6
            python3 -c "import os; os.rename('f3', 'f7')"
            printf x > /tmp/t1
            exec 3> f8
            (sleep 0.3; echo late > late.txt) &
            """#
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script], timeoutSeconds: 60))
            #expect(run.exitCode == 0, "\(run.out) \(run.err)")
            // Long enough for the background writer (0.3 s) even on a loaded machine.
            _ = try sandbox.exec(ExecRequest(argv: ["sleep", "2"], origin: .harness))
            let events = try Self.events(sandbox)
            let home = "/home/user/"
            let expectations: [Expected] = [
                Self.expect("echo a > f1", ["openat"], comm: "bash") { args, _ in
                    args["path"] as? String == home + "f1" && (args["flags"] as? String ?? "").contains("O_CREAT|O_TRUNC") },
                Self.expect("echo b >> f1", ["openat"], comm: "bash") { args, _ in
                    args["path"] as? String == home + "f1" && (args["flags"] as? String ?? "").contains("O_APPEND") },
                Self.expect("tee starts", ["execve"]) { args, _ in
                    (args["argv"] as? [String]) == ["tee", "f2"] && args["cwd"] as? String == "/home/user" },
                Self.expect("tee opens f2", ["openat"], comm: "tee", Self.path("path", home + "f2")),
                Self.expect("sed -i starts", ["execve"]) { args, _ in (args["argv"] as? [String])?.first == "sed" },
                Self.expect("sed -i replaces f1", ["rename", "renameat", "renameat2"], comm: "sed", Self.path("to", home + "f1")),
                Self.expect("python3 writes f3", ["openat"], comm: "python3", Self.path("path", home + "f3")),
                Self.expect("cp creates f4", ["openat"], comm: "cp", Self.path("path", home + "f4")),
                Self.expect("mv f4 f5", ["rename", "renameat", "renameat2"], comm: "mv") { args, _ in
                    args["from"] as? String == home + "f4" && args["to"] as? String == home + "f5" },
                Self.expect("rm f5", ["unlink", "unlinkat"], comm: "rm", Self.path("path", home + "f5")),
                Self.expect("ln -s f1 l1", ["symlink", "symlinkat"], comm: "ln") { args, _ in
                    args["target"] as? String == "f1" && args["path"] as? String == home + "l1" },
                Self.expect("ln f1 h1", ["link", "linkat"], comm: "ln", Self.path("path", home + "h1")),
                Self.expect("chmod -x f1", ["chmod", "fchmodat", "fchmodat2"], comm: "chmod") { args, _ in
                    args["path"] as? String == home + "f1" && args["mode"] as? String == "0644" },
                Self.expect("truncate -s 0 f2", ["ftruncate", "truncate"], comm: "truncate") { args, _ in args["length"] as? Int == 0 },
                Self.expect("rmdir d1", ["rmdir", "unlinkat"], comm: "rmdir", Self.path("path", home + "d1")),
                Self.expect("a denied mount", ["mount"], comm: "mount") { args, event in
                    args["target"] as? String == "/mnt" && event["decision"] as? String == "denied" && event["errno"] as? Int == 1 },
                Self.expect("a denied unshare -U", ["unshare"], comm: "unshare") { args, event in
                    args["flags"] as? String == "0x10000000" && event["decision"] as? String == "denied" },
                Self.expect("kill -0 1", ["kill"], comm: "bash") { args, event in
                    args["target"] as? Int == 1 && args["signal"] as? String == "0" && event["decision"] as? String == "allowed" },
                Self.expect("an exported function kill reaches a child bash", ["execve"]) { args, _ in
                    (args["env"] as? [String: Any])?.keys.contains { $0.hasPrefix("BASH_FUNC_kill") } == true },
                Self.expect("BASH_ENV for a child", ["execve"]) { args, _ in
                    (args["env"] as? [String: Any])?["BASH_ENV"] as? String == "/home/user/envfile" },
                Self.expect("chown user f1", ["chown", "fchownat", "lchown"], comm: "chown") { args, _ in
                    args["path"] as? String == home + "f1" && args["owner"] as? Int == 1000 },
                Self.expect("touch f6", ["openat"], comm: "touch", Self.path("path", home + "f6")),
                Self.expect("os.rename in python", ["rename", "renameat", "renameat2"], comm: "python3") { args, _ in
                    args["from"] as? String == home + "f3" && args["to"] as? String == home + "f7" },
                Self.expect("printf x > /tmp/t1", ["openat"], comm: "bash", Self.path("path", "/tmp/t1")),
                Self.expect("exec 3> f8", ["openat"], comm: "bash", Self.path("path", home + "f8")),
                Self.expect("the agent's command finished", ["command_finished"]),
                Self.expect("a background process writes after its parent exited", ["openat"], comm: "bash", Self.path("path", home + "late.txt")),
            ]
            var position = 0
            var agentSession: Int?
            for expected in expectations {
                let found = events[position...].firstIndex { event in
                    if expected.syscalls == ["command_finished"] { return event["kind"] as? String == "command_finished" }
                    guard event["kind"] as? String == "syscall", let name = event["syscall"] as? String,
                          expected.syscalls.contains(name) else { return false }
                    if let comm = expected.comm, event["comm"] as? String != comm { return false }
                    return expected.check(event["args"] as? [String: Any] ?? [:], event)
                }
                guard let found else {
                    Issue.record("no event for \(expected) after event \(position): \(events[position...].prefix(8).map { "\($0["syscall"] ?? $0["kind"] ?? "")" })")
                    continue
                }
                let event = events[found]
                if event["kind"] as? String == "syscall" {
                    #expect((event["pid"] as? Int ?? 0) > 1, "\(expected): pid \(event["pid"] ?? "none")")
                    #expect(event["uid"] as? Int == 1000, "\(expected)")
                    agentSession = agentSession ?? event["sid"] as? Int
                    #expect(event["sid"] as? Int == agentSession, "\(expected): every event belongs to the agent's command session")
                }
                position = found + 1
            }
            let started = events.filter { $0["kind"] as? String == "command_started" }
            #expect(started.map { $0["origin"] as? String } == ["agent", "harness"])
        }
    }

    @Test("Paths as the kernel takes them: slashes and . folded, /proc/self/fd/N as its file, a descriptor's file for fchmod and fchown")
    func kernelPaths() throws {
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            let run = try sandbox.bash("""
                cd ~ && echo x > f && (: >> /home/./user//f) && chmod 600 /home/user/./f && \
                python3 -c "import os; fd=os.open('/home/user/f', os.O_RDONLY); os.close(os.open('/proc/self/fd/%d' % fd, os.O_WRONLY)); \
                w=os.open('/home/user/f', os.O_WRONLY); os.fchmod(w, 0o640); r, _ = os.pipe(); os.fchmod(r, 0o600)"
                """)
            #expect(run.exitCode == 0, "\(run.err)")
            let calls = try Self.events(sandbox).filter { $0["kind"] as? String == "syscall" }.compactMap { event -> (String, [String: Any])? in
                guard let name = event["syscall"] as? String, let args = event["args"] as? [String: Any] else { return nil }
                return (name, args)
            }
            #expect(calls.contains { $0.0 == "openat" && $0.1["path"] as? String == "/home/user/f" && $0.1["path_given"] as? String == "/home/./user//f" })
            #expect(calls.contains { $0.0 == "fchmodat" && $0.1["path"] as? String == "/home/user/f" && $0.1["path_given"] as? String == "/home/user/./f" })
            #expect(calls.contains { $0.0 == "openat" && $0.1["path"] as? String == "/home/user/f" && ($0.1["path_given"] as? String)?.hasPrefix("/proc/self/fd/") == true })
            #expect(calls.contains { $0.0 == "fchmod" && $0.1["path"] as? String == "/home/user/f" && $0.1["mode"] as? String == "0640" })
            #expect(calls.contains { $0.0 == "fchmod" && $0.1["path"] == nil && ($0.1["fd_target"] as? String)?.hasPrefix("pipe:") == true })
            // A path given whole is kept as given, without a second copy.
            #expect(calls.contains { $0.0 == "openat" && $0.1["path"] as? String == "/home/user/f" && $0.1["path_given"] == nil })
        }
    }

    @Test("An execve's argv and environment are read whole up to the limits (256 entries, 4096 bytes each): 250 arguments, a 3,000-byte PATH")
    func longArguments() throws {
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            let path = "/usr/bin:" + String(repeating: "/p", count: 1496)
            // Strings longer than one 256-byte read, and 2,000 bytes of pointers (which may cross a page).
            let argv = ["/usr/bin/true"] + (1...249).map { "argument-\($0)-" + String(repeating: "y", count: $0 * 3) }
            let run = try sandbox.exec(ExecRequest(argv: ["/usr/bin/env", "PATH=" + path, "BASH_ENV=/home/user/e"] + argv))
            #expect(run.exitCode == 0, "\(run.err)")
            let exec = try #require(try Self.events(sandbox).first {
                $0["syscall"] as? String == "execve" && (($0["args"] as? [String: Any])?["path"] as? String) == "/usr/bin/true"
            })
            let args = try #require(exec["args"] as? [String: Any])
            let seen = args["argv"] as? [String] ?? []
            #expect(seen.count == argv.count, "\(seen.count) arguments of \(argv.count)")
            #expect(seen == argv, "first difference at \(zip(seen, argv).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")
            let env = try #require(args["env"] as? [String: Any])
            #expect((env["PATH"] as? String) == path, "PATH of \((env["PATH"] as? String)?.utf8.count ?? 0) bytes, expected \(path.utf8.count)")
            #expect(env["BASH_ENV"] as? String == "/home/user/e")
        }
    }

    @Test("What the kernel executed is a file event naming the file, even when the execve's path is changed under the recorder")
    func executedFiles() throws {
        let log = NSTemporaryDirectory() + "offswitch-exec-\(getpid()).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log)
        defer { try? sandbox.destroy() }
        // A script: the kernel opens it, then its interpreter (and the interpreter's loader).
        try sandbox.writeFile("/home/user/s.sh", Array("#!/bin/sh\nexit 0\n".utf8), mode: 0o755)
        #expect(try sandbox.exec(ExecRequest(argv: ["/home/user/s.sh"])).exitCode == 0)
        // Another thread rewrites the path execve reads, over and over: which program runs is a
        // race, and so is what the recorder reads. Each run says which ran.
        let race = """
            import ctypes, os, threading
            libc = ctypes.CDLL(None, use_errno=True)
            path = ctypes.create_string_buffer(32)
            a, b = b"/usr/bin/true\\0", b"/usr/bin/echo\\0"
            ctypes.memmove(path, a, len(a))
            def flip():
                while True:
                    ctypes.memmove(path, b, len(b))
                    ctypes.memmove(path, a, len(a))
            threading.Thread(target=flip, daemon=True).start()
            argv = (ctypes.c_char_p * 3)(b"x", b"echo-ran", None)
            libc.execve(path, argv, None)
            print("exec-failed")
            """
        // The run's python pid inside is the pid of its execve event; nil: a torn path, nothing ran.
        var ran: [String?] = []
        for _ in 0..<12 {
            let run = try sandbox.exec(ExecRequest(argv: ["python3", "-c", race]))
            ran.append(run.out.contains("exec-failed") ? nil : run.out.contains("echo-ran") ? "/usr/bin/echo" : "/usr/bin/true")
        }
        try sandbox.destroy()
        let events = try Self.events(sandbox)
        let executed = events.filter { $0["kind"] as? String == "file" && ($0["operations"] as? [String]) == ["exec"] }
        let paths = executed.compactMap { $0["path"] as? String }
        #expect(paths.contains("/home/user/s.sh") && paths.contains("/usr/bin/dash"), "\(paths)")
        #expect(executed.allSatisfy { ($0["object"] as? String)?.isEmpty == false })
        // Each racing python's execve, and the program the kernel opened for that process.
        let requested = events.filter { $0["syscall"] as? String == "execve" && $0["comm"] as? String == "python3" }
        #expect(requested.count == ran.count)
        for (request, truth) in zip(requested, ran) where truth != nil {
            let pid = request["pid"] as? Int
            let opened = executed.first { $0["pid"] as? Int == pid && ["/usr/bin/true", "/usr/bin/echo"].contains($0["path"] as? String) }
            #expect(opened?["path"] as? String == truth, "pid \(pid ?? -1): ran \(truth ?? "?"), requested \(((request["args"] as? [String: Any])?["path"] as? String) ?? "?")")
        }
    }

    @Test("Recording never changes a decision: what the policy denies stays denied, with its errno")
    func decisionsUnchanged() throws {
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "unshare -U true; echo $?; echo x > /home/user/ok && echo wrote"]))
            #expect(run.out == "1\nwrote\n", "\(run.err)")
            #expect(run.err.contains("Operation not permitted"))
        }
    }

    @Test("Every process's exit is logged with its status or signal, before the shutdown, including a background child that outlives its command")
    func processExits() throws {
        let log = NSTemporaryDirectory() + "offswitch-exits-\(getpid()).ndjson"
        defer { unlink(log) }
        let sandbox = try Sandbox.create(try profileSpec("docker"), eventLog: log)
        defer { try? sandbox.destroy() }
        let script = """
            (exit 3); bash -c 'kill -9 $$'; python3 -c 'import os; os.abort()'
            setsid sleep 30 < /dev/null > /dev/null 2>&1 &
            # Wait until it is sleep (setsid execs it in place), or a loaded machine may end the
            # sandbox while it is still a forked bash.
            for ((n = 0; n < 500; n++)); do [ "$(cat /proc/$!/comm 2>/dev/null)" = sleep ] && break; sleep 0.01; done
            echo started
            """
        let result = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script]))
        #expect(result.stdout == Array("started\n".utf8))
        _ = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "kill -s TERM 1; sleep 5"]))
        try sandbox.destroy()
        let events = try Self.events(sandbox)  // the log at `log`, complete now
        let exits = events.filter { $0["kind"] as? String == "process_exited" }
        func exit(_ comm: String, code: Int? = nil, signal: Int? = nil) -> Event? {
            exits.first { $0["comm"] as? String == comm && ($0["exit_code"] as? Int) == code && ($0["signal"] as? Int) == signal }
        }
        #expect(exit("bash", code: 3) != nil, "the subshell's exit 3")
        #expect(exit("bash", signal: 9)?["signal_name"] as? String == "SIGKILL")
        #expect(exit("python3", signal: 6)?["signal_name"] as? String == "SIGABRT")
        // The detached sleep outlived its command and died with the namespace.
        #expect(exit("sleep", signal: 9) != nil)
        #expect(exits.contains { $0["pid"] as? Int == 1 }, "PID 1's own exit")
        let shutdown = try #require(events.firstIndex { $0["kind"] as? String == "shutdown" })
        let lastExit = try #require(events.lastIndex { $0["kind"] as? String == "process_exited" })
        #expect(lastExit < shutdown)
        // Every exit is of a process of this sandbox, with its pid inside, or null for a child that
        // was gone before it could be read (never its parent's pid).
        for event in exits { #expect((event["pid"] as? Int ?? 0) >= 1 || event["pid"] is NSNull, "\(event)") }
        let pids = exits.compactMap { $0["pid"] as? Int }
        #expect(Set(pids).count == pids.count, "an exit logged twice, or under another process's pid: \(pids)")
    }

    @Test("Every example in docs/events.md has the fields of a real event of its kind")
    func documentedExamples() throws {
        let text = try String(contentsOfFile: DocsTests.docsDirectory() + "/events.md", encoding: .utf8)
        let examples = try text.components(separatedBy: "```json\n").dropFirst().map { block -> Event in
            let line = String(block.prefix { $0 != "\n" })
            return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? Event, "not JSON: \(line)")
        }
        let log = NSTemporaryDirectory() + "offswitch-events-\(getpid()).ndjson"
        defer { unlink(log) }
        var spec = try profileSpec("docker")
        spec.record = [RecordedSyscall(name: "openat"), RecordedSyscall(name: "unshare"), RecordedSyscall(name: "kill")]
        let sandbox = try Sandbox.create(spec, eventLog: log)
        try sandbox.writeFile("/home/user/shutdown.sh", Array("#!/bin/bash\nkill -s TERM 1\n".utf8), mode: 0o755)
        sandbox.markBaseline()
        try sandbox.freeze(why: "the documented example")
        try sandbox.thaw()
        _ = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "echo hi > x; echo skip > shutdown.sh; mv x y; sleep 0.2; unshare -U true; kill -s TERM 1"]))
        try sandbox.destroy()
        var actual = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? Event)
        }
        // init_exited: a sandbox destroyed without a shutdown.
        let other = NSTemporaryDirectory() + "offswitch-events-\(getpid())-2.ndjson"
        defer { unlink(other) }
        try Sandbox.create(spec, eventLog: other).destroy()
        actual += try String(contentsOfFile: other, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? Event)
        }
        // shutdown_requested: the host shuts a sandbox down.
        let third = NSTemporaryDirectory() + "offswitch-events-\(getpid())-3.ndjson"
        defer { unlink(third) }
        let asked = try Sandbox.create(spec, eventLog: third)
        try asked.shutDown()
        try asked.destroy()
        actual += try String(contentsOfFile: third, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? Event)
        }
        // file_events_lost needs a flood; FileWatcherTests.shedBacklog checks its example, and
        // EvidenceBudgetLogTests.sandboxFlood the budget's two.
        // protected_state needs a judgement's baseline: JudgementAPITests checks its example.
        // syscall_events_lost: KernelRecorderTests.flood checks its example when its flood loses.
        let flooded: Set<String> = ["file_events_lost", "evidence_budget_reached", "evidence_dropped", "protected_state", "syscall_events_lost"]
        let kinds = Set(examples.compactMap { $0["kind"] as? String }).subtracting(flooded)
        #expect(kinds == ["sandbox_created", "command_started", "syscall", "command_finished", "shutdown", "init_exited",
                          "baseline", "file_changed", "diff_complete", "sandbox_destroyed", "watching", "file", "process_exited",
                          "process_forked", "frozen", "shutdown_requested", "recorder_mode"])
        for example in examples where !flooded.contains(example["kind"] as? String ?? "") {
            let kind = example["kind"] as? String ?? ""
            let decision = example["decision"] as? String
            let change = example["change"] as? String
            let operations = example["operations"] as? [String]
            let killed = example["signal"] is NSNumber
            let match = actual.first {
                $0["kind"] as? String == kind && $0["decision"] as? String == decision && $0["change"] as? String == change
                    && (kind != "process_exited" || ($0["signal"] is NSNumber) == killed)
                    && (operations == nil || $0["operations"] as? [String] == operations)
            }
            let real = try #require(match, "no real \(kind) event (decision \(decision ?? "-"))")
            // A file event's writer may have exited before the watcher read it (`writer_gone`): then
            // only the change's own fields are compared.
            let loose: Set<String> = kind == "file" ? ["pid", "ppid", "sid", "comm", "exe", "uid", "writer_gone", "writer_pid", "writer_sid"] : []
            #expect(Set(example.keys).subtracting(loose) == Set(real.keys).subtracting(loose),
                    "\(kind): documented \(example.keys.sorted()), real \(real.keys.sorted())")
        }
    }

    @Test("sandbox run --events FILE, then offswitch events --file FILE: the shutdown.sh story as a timeline")
    func savedTimeline() throws {
        let log = NSTemporaryDirectory() + "offswitch-timeline-\(getpid()).ndjson"
        defer { unlink(log) }
        let run = try runCLI(["sandbox", "run", "--events", log, "--", "bash", "-c",
                              "printf 'kill -s TERM 1\\n' > shutdown.sh; echo 'echo skipped' > shutdown.sh; bash shutdown.sh"])
        #expect(run.status == 0 && run.stdout == "skipped\n", "\(run.stderr)")
        let timeline = try runCLI(["events", "--file", log])
        #expect(timeline.status == 0, "\(timeline.stderr)")
        let lines = timeline.stdout.split(separator: "\n")
        #expect(lines.first?.contains("created, profile docker") == true)
        // fanotify merges what it has not yet handed over: "file create modify close_write PATH" under load.
        // The writer is named when it still ran as the watcher read the event; a command this short
        // may be gone by then (its file calls no longer wait for the recorder): the line is unnamed.
        #expect(lines.contains { $0.contains("file create") && $0.hasSuffix(" /home/user/shutdown.sh") }, "\(timeline.stdout)")
        #expect(lines.contains { $0.contains("bash (uid 1000)  openat path=/home/user/shutdown.sh") }, "the call that created it names its caller")
        #expect(lines.contains { $0.contains("DIFF created /home/user/shutdown.sh sha256") })
        #expect(lines.last?.hasSuffix("sandbox_destroyed") == true)
        let both = try runCLI(["events", "--file", log, "abc"])
        #expect(both.status == 64 && both.stderr.contains("not both"))
    }
}
