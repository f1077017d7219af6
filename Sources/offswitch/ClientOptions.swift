import ArgumentParser
import OffswitchAPI

/// `--socket` for commands that talk to offswitchd.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "offswitchd's socket (default: $OFFSWITCH_SOCKET or /run/offswitch/offswitchd.sock).")
    var socket: String?

    var client: DaemonClient { DaemonClient(socketPath: socket) }
}
