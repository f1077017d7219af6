import ArgumentParser
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
        @Option(name: .long, help: ArgumentHelp(
            "'none' (default: a network of its own, loopback only) or 'sandbox:ID': share the network namespace of the running sandbox ID, as compose services do (one loopback, no route anywhere else).",
            valueName: "none|sandbox:ID"))
        var network: String?
        @Option(name: .customLong("add-host"), help: ArgumentHelp("Add a line to /etc/hosts (repeatable).", valueName: "NAME:ADDRESS"))
        var addHost: [String] = []
        @Flag(name: .customLong("read-only"), help: "Make /, /usr and /tmp read-only inside once the sandbox is created (Docker's --read-only); /dev/shm and --tmpfs mounts stay writable.")
        var readOnly = false
        @Option(name: .long, help: ArgumentHelp(
            "Mount a tmpfs at PATH (repeatable), nosuid, nodev and noexec as Docker's --tmpfs; size_mib defaults to the memory limit, mode to 1777.",
            valueName: "PATH[:size_mib=N,mode=OCTAL]"))
        var tmpfs: [String] = []
        @Flag(name: .long, help: "Print the sandbox as JSON instead of its id.") var json = false

        func validate() throws {
            _ = try hosts()
            _ = try tmpfsMounts()
        }

        /// `--add-host NAME:ADDRESS`, split at the first colon (a name has none; an IPv6 address does).
        func hosts() throws -> [String: String]? {
            guard !addHost.isEmpty else { return nil }
            var hosts: [String: String] = [:]
            for entry in addHost {
                guard let colon = entry.firstIndex(of: ":") else { throw ValidationError("--add-host \(entry): expected NAME:ADDRESS") }
                let name = String(entry[..<colon])
                guard hosts[name] == nil else { throw ValidationError("--add-host \(name) is given twice") }
                hosts[name] = String(entry[entry.index(after: colon)...])
            }
            return hosts
        }

        /// `--tmpfs PATH[:size_mib=N,mode=OCTAL]`.
        func tmpfsMounts() throws -> [CreateSandboxBody.TmpfsBody]? {
            guard !tmpfs.isEmpty else { return nil }
            return try tmpfs.map { text in
                let parts = text.split(separator: ":", maxSplits: 1)
                var mount = CreateSandboxBody.TmpfsBody(path: parts.first.map(String.init) ?? "")
                for option in parts.dropFirst().first?.split(separator: ",") ?? [] {
                    let pair = option.split(separator: "=", maxSplits: 1).map(String.init)
                    switch (pair.first, pair.count) {
                    case ("size_mib", 2):
                        guard let size = UInt64(pair[1]) else { throw ValidationError("--tmpfs \(text): size_mib=\(pair[1]) is not a number of MiB") }
                        mount.size_mib = size
                    case ("mode", 2): mount.mode = pair[1]
                    default: throw ValidationError("--tmpfs \(text): unknown option \(option) (size_mib=N, mode=OCTAL)")
                    }
                }
                return mount
            }
        }

        func run() throws {
            var body = try options.createBody(hostname: hostname)
            body.network = network
            body.hosts = try hosts()
            body.read_only = readOnly ? true : nil
            body.tmpfs = try tmpfsMounts()
            let (document, reply) = try translated { () throws(OffswitchError) in try client.client.createSandbox(body) }
            StandardStreams.out(json ? reply : Array((document.id + "\n").utf8))
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
            do { _ = try ExecBody.environment(parsing: env) } catch { throw ValidationError(error.message) }
        }

        func run() throws {
            let stdin = interactive ? StandardStreams.readAll(0) : []
            let document = try translated { () throws(OffswitchError) in
                let body = ExecBody(argv: command, stdin: stdin, cwd: cwd, env: try ExecBody.environment(parsing: env), user: user, timeout: timeout)
                return try client.client.exec(id, body)
            }
            throw try ExecOutput.print(document, json: json, timeout: timeout)
        }
    }

    struct Attach: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open an interactive bash on a terminal inside a sandbox held by offswitchd.",
            discussion: """
                The sandbox stays when the shell exits (offswitch sandbox rm ends it). What the shell \
                does is recorded as the agent's doing, like any exec. Inspect's `connection()` for an \
                offswitch sample prints this command.
                """)
        @OptionGroup var client: ClientOptions
        @Argument(help: "The sandbox id.") var id: String
        @Option(name: .long, help: "Run as 'user' or 'root' (default: the sandbox profile's, normally user).") var user: SandboxUser?

        func run() throws {
            let code = try translated { () throws(OffswitchError) in try client.client.terminal(sandbox: id, user: user) }
            throw ExitCode(code)
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
            try translated { () throws(OffswitchError) in
                try client.client.putFile(id, path: path, user: user, mode: mode, bytes: try StandardStreams.contents(of: local))
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
            try translated { () throws(OffswitchError) in
                let bytes = try client.client.getFile(id, path: path, user: user)
                if let local { try writeWholeFile(bytes, to: local) } else { StandardStreams.out(bytes) }
            }
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
                    try client.client.deleteSandbox(id)
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
            let (list, reply) = try translated { () throws(OffswitchError) in try client.client.listSandboxes() }
            if json { return StandardStreams.out(reply) }
            StandardStreams.out("ID            STATE      HOSTNAME      ROOTFS\n")
            for sandbox in list.sandboxes {
                StandardStreams.out("\(sandbox.id)  \(pad(sandbox.state, 10)) \(pad(sandbox.hostname, 13)) \(sandbox.rootfs)\n")
            }
        }
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
            StandardStreams.err(document.stderrBytes + Array(document.notices(timeout: timeout).utf8))
        }
        return ExitCode(document.exit_code)
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
