import ArgumentParser
import Logging
import OffswitchServer

/// The Offswitch daemon. All logic lives in OffswitchServer.
@main
struct OffswitchDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "offswitchd",
        abstract: "Serve the Offswitch HTTP API: long-lived sandboxes that harnesses drive call by call.",
        discussion: """
            The API (/v1/..., /healthz, /metrics) is documented in docs/openapi.yaml. The Unix socket \
            has mode 0660 and group `offswitch` when that group exists. SIGTERM or SIGINT stops the \
            daemon and destroys every sandbox; after a crash the next start removes what was left.
            """)

    @Option(help: "Unix socket to serve on.")
    var socket = "/run/offswitch/offswitchd.sock"

    @Option(name: .customLong("state-dir"), help: "Where sandboxes keep their host-side state.")
    var stateDirectory = "/var/lib/offswitch"

    @Option(name: .customLong("image-store"), help: ArgumentHelp("The image store clients' image:REF roots come from (default: STATE/images; offswitch image --store DIR fills it).", valueName: "DIR"))
    var imageStore: String?

    @Option(name: .customLong("max-image-bytes"), help: ArgumentHelp("What the image store may hold, in bytes, before uploads are refused (429 capacity_reached).", valueName: "BYTES"))
    var maxImageBytes: Int64 = 64 << 30

    @Option(help: "Also serve on loopback TCP, HOST:PORT (needs --token-file).")
    var listen: String?

    @Option(name: .customLong("token-file"), help: "File holding the bearer token for --listen (mode 600).")
    var tokenFile: String?

    @Option(name: .customLong("allow-rootfs"),
            help: ArgumentHelp("A host directory clients may name as a sandbox's root (dir:DIR); repeatable. None by default.",
                               valueName: "DIR"))
    var allowedRootfs: [String] = []

    @Option(name: .customLong("max-sandboxes"), help: "Live sandboxes at most, trials' included; more is 429 capacity_reached.")
    var maxSandboxes = DaemonLimits.standard.sandboxes

    @Option(name: .customLong("max-trials"), help: "Running trials at most (POST /v1/trials and scenario sandboxes).")
    var maxTrials = DaemonLimits.standard.trials

    @Option(name: .customLong("max-streams"), help: "Open event and terminal streams at most.")
    var maxStreams = DaemonLimits.standard.streams

    @Option(name: .customLong("keep-trials"), help: "Finished trial directories kept at most (STATE/trials); the oldest beyond go.")
    var keepTrials = TrialRetention.standard.keep

    @Option(name: .customLong("trial-retention"), help: ArgumentHelp("Finished trial directories older than AGE go: 90s, 30m, 12h, 7d, or forever.", valueName: "AGE"))
    var trialRetention = "7d"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "notice"

    func run() async throws {
        var logger = Logger(label: "offswitchd")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .notice
        var address: (String, Int)?
        if let listen {
            let parts = listen.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (1...65535).contains(port) else {
                throw ValidationError("--listen \(listen): expected HOST:PORT, such as 127.0.0.1:7878")
            }
            guard parts[0] == "127.0.0.1" || parts[0] == "localhost" || parts[0] == "::1" else {
                throw ValidationError("--listen \(listen): only loopback addresses are allowed")
            }
            address = (String(parts[0]), port)
        }
        for (name, value) in [("--max-sandboxes", maxSandboxes), ("--max-trials", maxTrials), ("--max-streams", maxStreams),
                              ("--keep-trials", keepTrials)] where value < 1 {
            throw ValidationError("\(name) \(value): needs 1 or more")
        }
        let maxAge: Int?
        do { maxAge = try TrialRetention.parseAge(trialRetention) } catch { throw ValidationError("\(error)") }
        var options = DaemonOptions(socketPath: socket, stateDirectory: stateDirectory, listen: address, tokenFile: tokenFile,
                                    allowedRootfs: allowedRootfs,
                                    limits: DaemonLimits(sandboxes: maxSandboxes, trials: maxTrials, streams: maxStreams),
                                    retention: TrialRetention(keep: keepTrials, maxAgeSeconds: maxAge))
        options.imageStore = imageStore
        guard maxImageBytes > 0 else { throw ValidationError("--max-image-bytes \(maxImageBytes): needs 1 or more") }
        options.imageQuota = maxImageBytes
        try await Daemon.run(options, logger: logger)
    }
}
