import Glibc
import Hummingbird
public import Logging
import OffswitchCore
import OffswitchImages
import OffswitchSandbox
import ServiceLifecycle
import UnixSignals

/// How `offswitchd` is started.
public struct DaemonOptions: Sendable {
    public var socketPath: String
    public var stateDirectory: String
    /// Optional loopback TCP listener (host, port); requires a token.
    public var listen: (host: String, port: Int)?
    public var tokenFile: String?
    /// The host directories clients may name as `dir:` roots (`--allow-rootfs`); none by default.
    public var allowedRootfs: [String]
    /// How many sandboxes, trials and streams it runs at once.
    public var limits: DaemonLimits
    /// How many finished trial directories it keeps, and for how long.
    public var retention: TrialRetention
    /// The image store `image:` roots come from (`--image-store`); nil is STATE/images.
    public var imageStore: String?
    /// What clients' uploads may fill the store to (`--max-image-bytes`).
    public var imageQuota: Int64 = 64 << 30

    public init(socketPath: String, stateDirectory: String, listen: (host: String, port: Int)?, tokenFile: String?,
                allowedRootfs: [String] = [], limits: DaemonLimits = .standard, retention: TrialRetention = .standard) {
        self.socketPath = socketPath
        self.stateDirectory = stateDirectory
        self.listen = listen
        self.tokenFile = tokenFile
        self.allowedRootfs = allowedRootfs
        self.limits = limits
        self.retention = retention
    }
}

/// `offswitchd`: serves the API on a Unix socket (mode 0660, group `offswitch` when it exists)
/// and optionally on loopback TCP with a bearer token, until SIGTERM or SIGINT; then destroys
/// every sandbox it holds. At start it reclaims what a crashed predecessor left behind.
public enum Daemon {
    public static func run(_ options: DaemonOptions, logger: Logger) async throws {
        try HostCheck.verify()
        try raiseOpenFileLimit(logger: logger, limits: options.limits)
        var paths = StatePaths(base: options.stateDirectory, source: "--state-dir")
        try paths.validate()
        paths.imageStore = options.imageStore.map { ImageStore(root: $0, source: "--image-store") }
            ?? ImageStore(root: options.stateDirectory + "/images", source: "--state-dir's images")
        for reclaimed in Leftovers.reclaim(paths: paths) {
            logger.notice("reclaimed leftovers of a previous run", metadata: ["sandbox": "\(reclaimed.id)", "removed": "\(reclaimed.removed.joined(separator: ", "))"])
        }
        let rootfs = try RootfsAllowlist(options.allowedRootfs)
        if !rootfs.directories.isEmpty {
            logger.notice("clients may name these dir: roots", metadata: ["allowed": "\(rootfs.directories.joined(separator: ", "))"])
        }
        let token = try options.listen.map { _ throws(OffswitchError) in try readToken(options.tokenFile) }
        try prepareSocketPath(options.socketPath)

        // No trial runs yet: every trial directory is finished, and the retention applies at once.
        let trials = TrialDirectories(directory: paths.base + "/trials", retention: options.retention, logger: logger)
        trials.sweep()
        let registry = SandboxRegistry(paths: paths, rootfs: rootfs, capacity: Capacity(options.limits), trialDirectories: trials)
        let metrics = ServerMetrics()
        var routes = APIRoutes(registry: registry, metrics: metrics, paths: paths)
        routes.imageQuota = options.imageQuota

        let socketRouter = Router(context: APIContext.self)
        socketRouter.add(middleware: ErrorMiddleware(metrics: metrics))
        routes.add(to: socketRouter)
        let socketPath = options.socketPath
        var services: [any Service] = [
            Application(
                router: socketRouter,
                server: ClientHangUp.server,
                configuration: .init(address: .unixDomainSocket(path: socketPath), serverName: "offswitchd"),
                onServerRunning: { _ in
                    secureSocket(socketPath, logger: logger)
                    logger.notice("serving", metadata: ["socket": "\(socketPath)", "state": "\(options.stateDirectory)"])
                },
                logger: logger),
        ]
        if let listen = options.listen, let token {
            let tcpRouter = Router(context: APIContext.self)
            tcpRouter.add(middleware: ErrorMiddleware(metrics: metrics))
            tcpRouter.add(middleware: BearerAuthMiddleware(token: Array(token.utf8)))
            routes.add(to: tcpRouter)
            services.append(Application(
                router: tcpRouter, server: ClientHangUp.server, configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "offswitchd"),
                onServerRunning: { _ in logger.notice("serving TCP", metadata: ["address": "\(listen.host):\(listen.port)"]) },
                logger: logger))
        }
        // Shut down in reverse: the reaper first destroys every sandbox, which ends their streams
        // and commands; then the servers finish what is open, for at most `stopGrace`, then cut it.
        var configuration = ServiceGroupConfiguration(
            services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
                + [.init(service: SandboxReaper(registry: registry, logger: logger), successTerminationBehavior: .gracefullyShutdownGroup),
                   .init(service: TrialSweeper(trials: trials), successTerminationBehavior: .gracefullyShutdownGroup)],
            logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        configuration.maximumGracefulShutdownDuration = stopGrace
        // Past it the group ends the process with a fatalError, sandboxes half torn down: a
        // request still waits on a sandbox whose destroy is under way (each bounded, docs/security.md),
        // and the group's 5 s default was passed on a loaded machine.
        configuration.maximumCancellationDuration = .seconds(30)
        let group = ServiceGroup(configuration: configuration)
        do {
            try await group.run()
        } catch {
            await registry.removeAll(logger: logger)
            unlink(socketPath)
            throw error
        }
        await registry.removeAll(logger: logger)
        unlink(socketPath)
        logger.notice("stopped; every sandbox destroyed")
    }

    /// How long SIGTERM waits for open requests once every sandbox is gone (a terminal or event
    /// stream whose client does not read would otherwise hold the stop for ever); each sandbox's
    /// own destroy is bounded by its diff's deadline before that.
    public static let stopGrace = Duration.seconds(15)

    /// Raises the soft RLIMIT_NOFILE to the hard limit: each sandbox holds a dozen descriptors
    /// (its control socket, pidfd, lock, the recorder's listener, fanotify, the event log), and
    /// under a default soft limit of 1024 the 63rd sandbox failed with EMFILE. Sandboxes set their
    /// own limit (`open_files`), so nothing inside inherits this one.
    static func raiseOpenFileLimit(logger: Logger, limits: DaemonLimits) throws(OffswitchError) {
        var limit = rlimit()
        _ = try systemCall("getrlimit(RLIMIT_NOFILE)") { getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        let before = limit.rlim_cur
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = try systemCall("setrlimit(RLIMIT_NOFILE, \(limit.rlim_max))") { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) }
        }
        logger.notice("open-file limit", metadata: ["soft": "\(limit.rlim_cur)", "was": "\(before)", "hard": "\(limit.rlim_max)",
                                                   "max_sandboxes": "\(limits.sandboxes)"])
        // About 16 descriptors a sandbox, and the daemon's own besides.
        if limit.rlim_cur < rlim_t(limits.sandboxes) * 16 + 256 {
            logger.warning("the open-file limit is low for --max-sandboxes: raise LimitNOFILE (systemd) or ulimit -Hn",
                           metadata: ["soft": "\(limit.rlim_cur)", "max_sandboxes": "\(limits.sandboxes)"])
        }
    }

    /// The socket's directory exists; a stale socket file is removed; a live one is an error.
    static func prepareSocketPath(_ path: String) throws(OffswitchError) {
        guard path.hasPrefix("/"), path.utf8.count < 100 else {
            throw OffswitchError(.invalidArgument, "--socket \(path): needs an absolute path shorter than 100 bytes")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty && access(directory, F_OK) != 0 {
            guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
                throw OffswitchError.system("mkdir(\(directory))", errno: errno)
            }
        }
        guard let mode = try? fileMode(path, followLinks: false) else { return }
        guard mode & S_IFMT == S_IFSOCK else {
            throw OffswitchError(.invalidArgument, "--socket \(path): exists and is not a socket")
        }
        if SocketProbe.isListening(path) {
            throw OffswitchError(.invalidArgument, "--socket \(path): another offswitchd is already serving there")
        }
        unlink(path)
    }

    static func secureSocket(_ path: String, logger: Logger) {
        chmod(path, 0o660)
        if let group = getgrnam("offswitch") {
            chown(path, 0, group.pointee.gr_gid)
        }
    }

    static func readToken(_ path: String?) throws(OffswitchError) -> String {
        guard let path else { throw OffswitchError(.invalidArgument, "--listen needs --token-file FILE with the bearer token") }
        let mode: UInt32
        do throws(OffswitchError) { mode = try fileMode(path) } catch {
            throw OffswitchError.system("--token-file \(path)", errno: error.errno ?? EIO)
        }
        guard mode & 0o077 == 0 else {
            throw OffswitchError(.invalidArgument, "--token-file \(path): readable by others (mode \(String(mode & 0o777, radix: 8))); chmod 600 it")
        }
        let fd = try systemCall("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        let token = String(decoding: buffer.prefix(max(0, n)), as: UTF8.self).trimming(" \n\r\t")
        guard token.utf8.count >= 16 else {
            throw OffswitchError(.invalidArgument, "--token-file \(path): the token must be at least 16 characters")
        }
        return token
    }
}

/// Whether something accepts connections on a Unix socket path.
enum SocketProbe {
    static func isListening(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return (try? withUnixAddress(path) { connect(fd, $0, $1) == 0 }) ?? false
    }
}

/// Applies the trial retention every minute, so that trials age out while none finishes (each
/// finished trial sweeps too). The first to hear SIGTERM, and done at once.
struct TrialSweeper: Service {
    let trials: TrialDirectories
    static let interval = Duration.seconds(60)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: Self.interval)
                await trials.sweepInBackground()
            }
        }
    }
}

/// Then this one: destroys every sandbox before the servers wait for open requests,
/// so that streams and commands of sandboxes end instead of holding the stop.
struct SandboxReaper: Service {
    let registry: SandboxRegistry
    let logger: Logger

    /// Returns when every sandbox is destroyed, or at once when the group cancels it (past
    /// `stopGrace`): the group's cancellation allows 5 s before it ends the process with a
    /// fatalError, and a loaded machine once took longer than that to hash a full upper layer.
    /// The destroys go on, and the daemon waits for them after the group (`removeAll` again).
    func run() async throws {
        try? await gracefulShutdown()
        logger.notice("stopping: destroying every sandbox")
        let (destroyed, finish) = AsyncStream<Never>.makeStream()
        let registry = registry
        Task {
            await registry.removeAll(logger: logger)
            finish.finish()
        }
        for await _ in destroyed {}  // ends on cancellation too
    }
}
