import Foundation
import Glibc
import OffswitchTestSupport
import Testing

@Suite("The CLI as offswitchd's client", needsRoot)
struct CLIClientTests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `offswitch` with its stdin fed from `input`.
    static func offswitch(_ arguments: [String], input: String = "", socket: String, environment extra: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OFFSWITCH_SOCKET"] = socket
        environment.merge(extra) { $1 }
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    @Test("create --network, --add-host, --read-only, --tmpfs: a pod from the command line; bad values refused before the daemon")
    func composeOptions() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let socket = daemon.socket
        let first = try Self.offswitch(["sandbox", "create"], socket: socket).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let port = Int.random(in: 20000...40000)
        #expect(try Self.offswitch(["sandbox", "exec", first, "--", "python3", "-c", podServerScript(port: port, body: "from-cli")], socket: socket).status == 0)
        let created = try Self.offswitch(["sandbox", "create", "--network", "sandbox:\(first)", "--add-host", "web:127.0.0.1", "--add-host", "six:::1",
                                          "--read-only", "--tmpfs", "/run/app:size_mib=4,mode=1777", "--tmpfs", "/tmp"], socket: socket)
        #expect(created.status == 0, "\(created.stderr)")
        let second = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let check = try Self.offswitch(["sandbox", "exec", second, "--", "bash", "-c", """
            curl -sS --max-time 10 http://web:\(port)/; echo; getent hosts six | cut -d' ' -f1
            touch /home/user/x 2>&1 | grep -c 'Read-only'; touch /run/app/x /tmp/x && echo writable
            grep ' /run/app ' /proc/mounts | grep -o 'size=4096k'
            """], socket: socket)
        #expect(check.stdout == "from-cli\n::1\n1\nwritable\nsize=4096k\n", "\(check.stdout)\(check.stderr)")
        let unknown = try Self.offswitch(["sandbox", "create", "--network", "sandbox:000000000000"], socket: socket)
        #expect(unknown.status != 0 && unknown.stderr.contains("network: no sandbox"), "\(unknown.stderr)")
        for bad in [["--add-host", "web"], ["--add-host", "web:1.2.3.4", "--add-host", "web:5.6.7.8"], ["--tmpfs", "/run:size=4m"],
                    ["--tmpfs", "/run:size_mib=x"]] {
            let refused = try Self.offswitch(["sandbox", "create"] + bad, socket: socket)
            #expect(refused.status != 0 && refused.stderr.contains(bad.last!.split(separator: ":")[0]), "\(bad): \(refused.stderr)")
        }
        let help = try Self.offswitch(["sandbox", "create", "--help"], socket: socket).stdout
        for option in ["--network <none|sandbox:ID>", "--add-host <NAME:ADDRESS>", "--read-only", "--tmpfs <PATH[:size_mib=N,mode=OCTAL]>"] {
            #expect(help.contains(option), "\(option) missing from: \(help)")
        }
        for id in [second, first] { #expect(try Self.offswitch(["sandbox", "rm", id], socket: socket).status == 0) }
    }

    @Test("create, put, exec, get, ls, rm")
    func longLived() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let socket = daemon.socket
        let created = try Self.offswitch(["sandbox", "create", "--memory", "256"], socket: socket)
        #expect(created.status == 0, "\(created.stderr)")
        let id = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.count == 12)

        #expect(try Self.offswitch(["sandbox", "put", id, "-", "notes/a b.txt"], input: "hello\n", socket: socket).status == 0)
        let exec = try Self.offswitch(["sandbox", "exec", "-e", "X=1", id, "--", "sh", "-c", "cat 'notes/a b.txt'; echo $X; exit 3"], socket: socket)
        #expect(exec.status == 3 && exec.stdout == "hello\n1\n", "\(exec.stderr)")
        let root = try Self.offswitch(["sandbox", "exec", "--user", "root", id, "--", "id", "-u"], socket: socket)
        #expect(root.stdout == "0\n")
        let got = try Self.offswitch(["sandbox", "get", id, "/home/user/notes/a b.txt"], socket: socket)
        #expect(got.stdout == "hello\n")
        #expect(try Self.offswitch(["sandbox", "ls"], socket: socket).stdout.contains(id))
        let missing = try Self.offswitch(["sandbox", "get", id, "/nope"], socket: socket)
        #expect(missing.status != 0 && missing.stderr.contains("/nope"))

        #expect(try Self.offswitch(["sandbox", "rm", id], socket: socket).status == 0)
        #expect(!(try Self.offswitch(["sandbox", "ls"], socket: socket).stdout.contains(id)))
        let gone = try Self.offswitch(["sandbox", "exec", id, "--", "true"], socket: socket)
        #expect(gone.status != 0 && gone.stderr.contains("no sandbox"))
    }

    @Test("sandbox run uses the daemon when it answers, and says so with --verbose")
    func runThroughDaemon() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let run = try Self.offswitch(["sandbox", "run", "--verbose", "--", "bash", "-c", "kill -s TERM 1; sleep 5; echo survived"], socket: daemon.socket)
        #expect(run.status == 137 && run.stdout.isEmpty)
        #expect(run.stderr.contains("daemon mode"), "\(run.stderr)")
        #expect(run.stderr.contains("shut down by signal 15"))
        #expect(try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any] == nil
            || (try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)

        let embedded = try Self.offswitch(["sandbox", "run", "--verbose", "--", "true"], socket: daemon.directory + "/no-such.sock")
        #expect(embedded.status == 0 && embedded.stderr.contains("embedded mode"))
    }

    @Test("SIGINT during a daemon-mode run deletes the sandbox in the daemon")
    func interruptThroughDaemon() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        process.arguments = ["sandbox", "run", "--socket", daemon.socket, "--", "sleep", "100"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, (try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty != false {
            usleep(20_000)
        }
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.count == 1)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        #expect((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [Any])?.isEmpty == true)
    }

    @Test("GET /events and offswitch events: the log as NDJSON, a timeline, and a stream that ends with destroy")
    func events() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try Self.offswitch(["sandbox", "create"], socket: daemon.socket).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // A follower started before anything happens sees everything, and stops when the sandbox goes.
        let follower = Process()
        follower.executableURL = URL(fileURLWithPath: productsDirectory + "/offswitch")
        follower.arguments = ["events", "--follow", "--json", "--socket", daemon.socket, id]
        let followed = Pipe()
        follower.standardOutput = followed
        try follower.run()
        let run = try Self.offswitch(["sandbox", "exec", id, "--", "bash", "-c", "echo hi > f; mv f g"], socket: daemon.socket)
        #expect(run.status == 0, "\(run.stderr)")
        let check = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["true"], "origin": "harness"])
        #expect(check.status == 200)
        let reply = try daemon.curl("GET", "/v1/sandboxes/\(id)/events")
        #expect(reply.status == 200)
        let kinds = reply.text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["kind"] as? String
        }
        // Process exits come from their own queue and may follow their command's end.
        let ordered = kinds.filter { $0 != "process_exited" && $0 != "file" }
        #expect(ordered.first == "sandbox_created" && ordered.contains("command_started") && ordered.last == "command_finished", "\(kinds)")
        #expect(reply.text.contains("\"kind\":\"command_started\",\"origin\":\"harness\",\"argv\":[\"true\"]"))
        let timeline = try Self.offswitch(["events", id], socket: daemon.socket)
        #expect(timeline.stdout.contains("renameat2 from=/home/user/f to=/home/user/g"), "\(timeline.stdout)")
        #expect(timeline.stdout.contains(" [agent] as user: bash -c echo hi > f; mv f g"), "\(timeline.stdout)")
        #expect(try Self.offswitch(["sandbox", "rm", id], socket: daemon.socket).status == 0)
        let streamed = String(decoding: followed.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        follower.waitUntilExit()
        #expect(follower.terminationStatus == 0)
        let lines = streamed.split(separator: "\n")
        // The follower saw what GET returned, in the same order, then what destroy added.
        #expect(lines.prefix(kinds.count).map(String.init) == reply.text.split(separator: "\n").map(String.init))
        #expect(lines.count > kinds.count, "followed: \(lines.count) lines")
        #expect(lines.last?.contains("\"kind\":\"sandbox_destroyed\"") == true)
        let missing = try Self.offswitch(["events", id], socket: daemon.socket)
        #expect(missing.status == 1 && missing.stderr.contains("404"))
    }
}

@Suite("offswitch shell through offswitchd", needsRoot)
struct ShellThroughDaemonTests {
    @Test("shell relays a terminal over the daemon's socket: output, exit code, a real shutdown, and errors")
    func shell() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let run = try CLIClientTests.offswitch(["shell", "--verbose"], input: "echo hello-$((6*7)); tty; exit 3\n", socket: daemon.socket)
        #expect(run.status == 3, "\(run.stderr)")
        #expect(run.stdout.contains("hello-42") && run.stdout.contains("/dev/pts/"), "\(run.stdout)")
        #expect(run.stderr.contains("daemon mode"))
        // The pty echoes what is typed: look for what only the command's output can hold.
        let root = try CLIClientTests.offswitch(["shell", "--user", "root"], input: "echo uid=$(id -u)\nexit\n", socket: daemon.socket)
        #expect(root.status == 0 && root.stdout.contains("uid=0"), "\(root.stdout)")
        let shutdown = try CLIClientTests.offswitch(["shell"], input: "kill -s TERM 1; sleep 5; echo sur$((1))vived\n", socket: daemon.socket)
        #expect(shutdown.status == 137 && !shutdown.stdout.contains("sur1vived"), "\(shutdown.stdout)")
        // Nothing is left behind: the CLI deletes its sandbox.
        let left = try daemon.curl("GET", "/v1/sandboxes")
        #expect((left.json["sandboxes"] as? [Any])?.isEmpty == true, "\(left.text)")
        #expect(try daemon.curl("POST", "/v1/sandboxes/nope/terminal").status == 404)
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:]).json["id"] as? String)
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(id)/terminal?rows=0").errorCode == "invalid_argument")
        #expect(try daemon.curl("POST", "/v1/sandboxes/\(id)/terminal?user=admin").errorCode == "invalid_argument")
        _ = try daemon.curl("DELETE", "/v1/sandboxes/\(id)")
    }
}
