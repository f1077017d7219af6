import ArgumentParser
import OffswitchAPI
import OffswitchSandbox

/// `--socket` for commands that talk to offswitchd.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "offswitchd's socket (default: $OFFSWITCH_SOCKET or /run/offswitch/offswitchd.sock).")
    var socket: String?

    var client: DaemonClient { DaemonClient(socketPath: socket) }
}

/// Why offswitchd cannot take this scenario or profile, if it cannot: it takes bundled names
/// only, as it must not read host files a client names (a directory or a file is the embedded
/// mode's).
func daemonRefusal(scenario: String? = nil, profile: String?) -> String? {
    if let scenario, scenario.contains("/") {
        return "offswitchd takes bundled scenario names only; for the directory \(scenario), add --embedded (needs root)"
    }
    if let profile, ProfileCatalog.isFile(profile) {
        return "offswitchd takes bundled profile names only; for the file \(profile), add --embedded (needs root)"
    }
    return nil
}
