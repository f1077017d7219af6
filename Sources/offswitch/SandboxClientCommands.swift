import ArgumentParser
import FoundationEssentials
import Glibc
import OffswitchAPI
import OffswitchCore

/// `offswitch sandbox create|exec|put|get|rm|ls`: long-lived sandboxes held by offswitchd.
extension SandboxCommand {
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a sandbox in offswitchd and print its id.",
            discussion: "Example: id=$(offswitch sandbox create --memory 256); offswitch sandbox exec $id -- ls")
        @OptionGroup var client: ClientOptions
        @OptionGroup var options: SandboxOptions
        @Option(name: .long, help: "Hostname inside.") var hostname: String?
        @Flag(name: .long, help: "Print the sandbox as JSON instead of its id.") var json = false

        func run() throws {
            let body = CreateSandboxBody(
                profile: try options.daemonProfile(), rootfs: options.rootfs, hostname: hostname,
                limits: .init(memory_mib: options.memory, pids: options.pids, cpus: options.cpus))
            let reply = try translated { () throws(OffswitchError) in
                try client.client.call("POST", "/v1/sandboxes", body: try DaemonSandbox.encode(body))
            }
            if json {
                StandardStreams.out(reply)
            } else {
                StandardStreams.out(try APIJSON.decode(SandboxDocument.self, from: reply).id + "\n")
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command in a sandbox held by offswitchd.",
            discussion: """
                Prints the output and exits with the command's status, as `sandbox run` does. The \
                command follows `--`: offswitch sandbox exec --user root -e X=1 ID -- sh -c 'echo $X'
                """)
        @OptionGroup var client: ClientOptions
        @Argument(help: "The sandbox id.") var id: String
        @Option(name: .long, help: "Run as 'user' or 'root' (default: the sandbox profile's, normally user).") var user: SandboxUser?
        @Option(name: .long, help: "Working directory (default: the user's home).") var cwd: String?
        @Option(name: [.short, .customLong("env")], help: "KEY=VALUE added to the environment (repeatable).") var env: [String] = []
        @Option(name: .long, help: "Kill the command's whole process tree after this many seconds.") var timeout: Double?
        @Flag(name: [.short, .long], help: "Pass standard input to CMD.") var interactive = false
        @Flag(name: .long, help: "Print the result as JSON.") var json = false
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        mutating func validate() throws {
            guard !command.isEmpty else { throw ValidationError("missing the command: offswitch sandbox exec [OPTIONS] ID -- CMD [ARG...]") }
            for entry in env where !entry.contains("=") { throw ValidationError("--env \(entry): expected KEY=VALUE") }
        }

        func run() throws {
            var environment: [String: String] = [:]
            for entry in env {
                let parts = entry.split(separator: "=", maxSplits: 1)
                environment[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
            }
            let stdin = interactive ? StandardStreams.readAll(0) : []
            let body = ExecBody(argv: command, stdin_base64: stdin.isEmpty ? nil : Data(stdin).base64EncodedString(), cwd: cwd,
                                env: environment, user: user?.rawValue, timeout: timeout)
            let reply = try translated { () throws(OffswitchError) in
                try client.client.call("POST", "/v1/sandboxes/\(id)/exec", body: try DaemonSandbox.encode(body))
            }
            let document = try APIJSON.decode(ExecDocument.self, from: reply)
            throw try ExecOutput.print(document, json: json, timeout: timeout)
        }
    }

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a local file (or - for stdin) into a sandbox.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The sandbox id.") var id: String
        @Argument(help: "Local file, or - for standard input.") var local: String
        @Argument(help: "Path inside the sandbox (relative to the user's home).") var path: String
        @Option(name: .long, help: "Write as 'user' or 'root'.") var user: SandboxUser = .agent
        @Option(name: .long, help: "Octal mode of a new file.") var mode: String = "644"

        func run() throws {
            let bytes: [UInt8]
            if local == "-" {
                bytes = StandardStreams.readAll(0)
            } else {
                let fd = open(local, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw CLIError(OffswitchError.system("open(\(local))", errno: errno)) }
                defer { close(fd) }
                bytes = StandardStreams.readAll(fd)
            }
            _ = try translated { () throws(OffswitchError) in
                try client.client.call("PUT", "/v1/sandboxes/\(id)/files?\(Query.encode(["path": path, "user": user.rawValue, "mode": mode]))",
                                       body: bytes, contentType: "application/octet-stream")
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a file out of a sandbox (to stdout without LOCAL).")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The sandbox id.") var id: String
        @Argument(help: "Path inside the sandbox.") var path: String
        @Argument(help: "Local file to write.") var local: String?
        @Option(name: .long, help: "Read as 'user' or 'root'.") var user: SandboxUser = .agent

        func run() throws {
            let bytes = try translated { () throws(OffswitchError) in
                try client.client.call("GET", "/v1/sandboxes/\(id)/files?\(Query.encode(["path": path, "user": user.rawValue]))")
            }
            guard let local else { return StandardStreams.out(bytes) }
            let fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CLIError(OffswitchError.system("open(\(local))", errno: errno)) }
            defer { close(fd) }
            StandardStreams.write(bytes, to: fd)
        }
    }

    struct Rm: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Destroy sandboxes held by offswitchd.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "Sandbox ids.") var ids: [String]

        func run() throws {
            var failed = false
            for id in ids {
                do {
                    _ = try client.client.call("DELETE", "/v1/sandboxes/\(id)")
                } catch {
                    StandardStreams.err("offswitch: \(id): \(error)\n")
                    failed = true
                }
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the sandboxes offswitchd holds.")
        @OptionGroup var client: ClientOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            let reply = try translated { () throws(OffswitchError) in try client.client.call("GET", "/v1/sandboxes") }
            if json { return StandardStreams.out(reply) }
            let list = try APIJSON.decode(SandboxListDocument.self, from: reply)
            StandardStreams.out("ID            STATE      HOSTNAME      ROOTFS\n")
            for sandbox in list.sandboxes {
                StandardStreams.out("\(sandbox.id)  \(pad(sandbox.state, 10)) \(pad(sandbox.hostname, 13)) \(sandbox.rootfs)\n")
            }
        }
    }
}

/// Query strings with every reserved byte percent-encoded.
enum Query {
    static func encode(_ items: [String: String]) -> String {
        items.sorted { $0.key < $1.key }.map { "\($0.key)=\(escape($0.value))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            let unreserved = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x2d || byte == 0x2e || byte == 0x5f || byte == 0x7e || byte == 0x2f
            let hex = Array("0123456789ABCDEF")
            result += unreserved ? String(UnicodeScalar(byte)) : "%\(hex[Int(byte >> 4)])\(hex[Int(byte & 15)])"
        }
        return result
    }
}

/// How `run` and `exec` show a result: the output, then the exit status.
enum ExecOutput {
    /// Prints the result and returns the exit status to end with.
    static func print(_ document: ExecDocument, json: Bool, timeout: Double?) throws -> ExitCode {
        if json {
            StandardStreams.out(try APIJSON.encode(document) + [10])
        } else {
            StandardStreams.out(document.stdoutBytes)
            StandardStreams.err(document.stderrBytes)
            if document.timed_out { StandardStreams.err("offswitch: timed out after \(timeout ?? 0) s; process tree killed\n") }
            if let shutdown = document.shutdown {
                StandardStreams.err("offswitch: sandbox shut down by signal \(shutdown.signal) from pid \(shutdown.sender_pid)\n")
            }
        }
        return ExitCode(document.exit_code)
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
