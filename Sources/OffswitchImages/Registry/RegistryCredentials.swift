import FoundationEssentials
import Glibc
public import OffswitchCore

/// A registry account: what `docker login` stored, or what an API client sent.
public struct RegistryCredentials: Sendable, Equatable {
    public var username: String
    public var password: String
    /// Where they came from, for messages: `~/.docker/config.json (auths)`, `the request`.
    public var source: String

    public init(username: String, password: String, source: String) {
        self.username = username
        self.password = password
        self.source = source
    }

    var basicHeader: String {
        "Authorization: Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }
}

/// Docker's client configuration (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
/// read the way `docker pull` reads it: `auths` entries (`auth` is base64 of `user:password`, or
/// `username` and `password`), and `credHelpers` / `credsStore`, programs named
/// `docker-credential-NAME` asked with `get`.
public struct DockerConfig: Sendable {
    struct AuthEntry: Codable, Sendable {
        var auth: String?
        var username: String?
        var password: String?
        var identitytoken: String?
    }

    struct File: Codable, Sendable {
        var auths: [String: AuthEntry]?
        var credHelpers: [String: String]?
        var credsStore: String?
    }

    /// The file read, for messages; nil when there is none.
    public let path: String?
    let file: File

    /// The file at `path`, or Docker's usual place. A missing file is no credentials; a file that
    /// is not Docker's JSON is an error naming it.
    public static func load(path given: String? = nil, environment: [String: String]? = nil) throws(OffswitchError) -> DockerConfig {
        let variables = environment ?? ProcessInfo.processInfo.environment
        let path: String
        if let given {
            path = given
        } else if let directory = variables["DOCKER_CONFIG"], !directory.isEmpty {
            path = directory + "/config.json"
        } else if let home = variables["HOME"], !home.isEmpty {
            path = home + "/.docker/config.json"
        } else {
            return DockerConfig(path: nil, file: File())
        }
        guard access(path, F_OK) == 0 else {
            if given != nil { throw OffswitchError(.notFound, "registry credentials: \(path) does not exist") }
            return DockerConfig(path: nil, file: File())
        }
        // A FIFO or a device (a symlink to /dev/zero) would hang or fill the read: a regular file only.
        var info = stat()
        guard stat(path, &info) == 0 else { throw OffswitchError.system("registry credentials: stat(\(path))", errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw OffswitchError(.invalidArgument, "registry credentials: \(path) is not a regular file")
        }
        guard info.st_size <= 4 << 20 else {
            throw OffswitchError(.fileTooLarge, "registry credentials: \(path) is \(info.st_size) bytes, over 4 MiB")
        }
        guard let bytes = readSmallBytes(path, limit: 4 << 20) else {
            throw OffswitchError.system("registry credentials: read(\(path))", errno: errno)
        }
        return try parse(bytes, path: path)
    }

    public static func parse(_ bytes: [UInt8], path: String) throws(OffswitchError) -> DockerConfig {
        DockerConfig(path: path, file: try OCI.decode(File.self, bytes, what: path))
    }

    /// The key Docker stores a registry under, reduced to `host[:port]`: `https://index.docker.io/v1/`
    /// and `registry-1.docker.io` are both Docker Hub (`docker.io`).
    static func registryKey(_ key: String) -> String {
        var host = Substring(key)
        if let scheme = host.firstRange(of: "://") { host = host[scheme.upperBound...] }
        if let slash = host.firstIndex(of: "/") { host = host[..<slash] }
        let name = host.lowercased()
        return ["index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"].contains(name) ? "docker.io" : name
    }

    /// The credentials for `registry` (a reference's registry: `docker.io`, `localhost:5000`),
    /// nil when the file has none for it. `helper` runs a credential helper (tests give their own).
    public func credentials(for registry: String,
                            helper: (String, String) throws(OffswitchError) -> RegistryCredentials? = DockerConfig.runHelper) throws(OffswitchError) -> RegistryCredentials? {
        let wanted = Self.registryKey(registry)
        let shown = path ?? "the Docker configuration"
        // Docker Hub's helpers and auths use its historical address.
        let serverAddress = wanted == "docker.io" ? "https://index.docker.io/v1/" : wanted
        if let name = file.credHelpers?.first(where: { Self.registryKey($0.key) == wanted })?.value {
            return try helper(name, serverAddress)
        }
        if let entry = file.auths?.first(where: { Self.registryKey($0.key) == wanted })?.value {
            if entry.identitytoken != nil {
                throw OffswitchError(.invalidArgument, "\(shown): the entry for \(wanted) holds an identity token (an OAuth refresh token), which Offswitch does not use yet; log in with a password or an access token")
            }
            if let auth = entry.auth, !auth.isEmpty {
                guard let decoded = Data(base64Encoded: auth).map({ String(decoding: $0, as: UTF8.self) }), let colon = decoded.firstIndex(of: ":") else {
                    throw OffswitchError(.invalidArgument, "\(shown): auths[\"\(wanted)\"].auth is not base64 of user:password")
                }
                return RegistryCredentials(username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]),
                                           source: "\(shown) (auths)")
            }
            if let username = entry.username, let password = entry.password {
                return RegistryCredentials(username: username, password: password, source: "\(shown) (auths)")
            }
            // An empty entry is what `docker login` leaves beside a credsStore: the store has them.
        }
        if let store = file.credsStore, !store.isEmpty { return try helper(store, serverAddress) }
        return nil
    }

    /// Runs `docker-credential-NAME get` with the server's address on its standard input, as
    /// Docker does; its answer is `{"ServerURL", "Username", "Secret"}`. A helper that says it has
    /// nothing ("credentials not found") gives nil.
    public static func runHelper(_ name: String, _ serverAddress: String) throws(OffswitchError) -> RegistryCredentials? {
        guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x2f }) else {
            throw OffswitchError(.invalidArgument, "registry credentials: credential helper name \"\(name.prefix(80))\" is not a program name")
        }
        let program = "docker-credential-" + name
        let output = try HelperProcess.run(program, arguments: ["get"], input: Array((serverAddress + "\n").utf8))
        if output.status != 0 {
            let said = String(decoding: output.stdout.prefix(300), as: UTF8.self).lowercased()
            if said.contains("not found") { return nil }
            // Its output is not shown: a helper that failed half-way may have printed the secret.
            throw OffswitchError(.invalidArgument, "registry credentials: \(program) get \(serverAddress) exited with status \(output.status)")
        }
        struct Answer: Codable { var Username: String; var Secret: String }
        let answer = try OCI.decode(Answer.self, output.stdout, what: "the answer of \(program) get")
        if answer.Username == "<token>" {
            throw OffswitchError(.invalidArgument, "registry credentials: \(program) holds an identity token for \(serverAddress), which Offswitch does not use yet")
        }
        return RegistryCredentials(username: answer.Username, password: answer.Secret, source: program)
    }
}

/// A short-lived program run to completion with its output read (credential helpers), searched
/// on PATH, with a default signal mask (a Swift thread's blocked SIGTERM is not passed on).
enum HelperProcess {
    struct Output { var status: Int32; var stdout: [UInt8] }

    static func run(_ program: String, arguments: [String], input: [UInt8]) throws(OffswitchError) -> Output {
        var inPipe: [Int32] = [-1, -1], outPipe: [Int32] = [-1, -1]
        try systemCall("pipe(\(program) stdin)") { pipe(&inPipe) }
        defer { for fd in inPipe where fd >= 0 { close(fd) } }
        try systemCall("pipe(\(program) stdout)") { pipe(&outPipe) }
        defer { for fd in outPipe where fd >= 0 { close(fd) } }
        // Close-on-exec: the helper gets them only as its 0 and 1 (dup2 clears the flag there).
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
        guard spawned == 0 else {
            throw OffswitchError(spawned == ENOENT ? .notFound : .system,
                                 "registry credentials: \(program), named by the Docker configuration, cannot be run (is it on PATH?)", errno: spawned)
        }
        close(inPipe[0]); inPipe[0] = -1
        close(outPipe[1]); outPipe[1] = -1
        _ = writeAll(inPipe[1], input)
        close(inPipe[1]); inPipe[1] = -1
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while output.count < 1 << 20 {
            let n = read(outPipe[0], &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += chunk[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Output(status: exited, stdout: output)
    }
}
