import HummingbirdCore
import NIOCore
import Synchronization

/// Notices a client that has gone while nothing is written to it. A response the daemon streams
/// (an event log followed on an idle sandbox) would otherwise learn of it only at its next write,
/// holding its `--max-streams` place until then. One is in every connection's pipeline, after the
/// HTTP decoder (`server`); the event loop reads the socket as it always does, so no thread waits:
/// a zero read (the client closed its side: `inputClosed`, the server allows half-closure) or a
/// connection closed for any reason marks the client gone, and a stream asks `hasHungUp` while it
/// waits for lines.
final class ClientHangUp: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    /// HTTP parts pass through untouched.
    typealias InboundIn = NIOAny

    private let gone = Atomic(false)

    var hasHungUp: Bool { gone.load(ordering: .relaxed) }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { gone.store(true, ordering: .relaxed) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        gone.store(true, ordering: .relaxed)
        context.fireChannelInactive()
    }

    /// HTTP/1 as Hummingbird serves it, with a watcher in each connection.
    static var server: HTTPServerBuilder { .http1(configuration: .init(additionalChannelHandlers: [ClientHangUp()])) }

    /// The watcher of `channel`'s connection; nil when it has none (a server built without `server`).
    static func of(_ channel: any Channel) async -> ClientHangUp? {
        try? await channel.pipeline.handler(type: ClientHangUp.self).get()
    }
}
