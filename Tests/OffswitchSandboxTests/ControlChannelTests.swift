import Glibc
import OffswitchCore
@testable import OffswitchSandbox
import Testing

@Suite("The control channel's end: PID 1's last reports")
struct ControlChannelTests {
    @Test("A shutdown report queued behind a reset is still read: PID 1 exited with a request it never read")
    func resetBeforeReport() throws {
        let (channel, peer) = try ControlChannel.pair()
        defer { close(channel.fd) }
        // A request PID 1 never reads: its end closes with it unread, which resets ours.
        try channel.send(.openPTY)
        let report = InitReport.shutdown(ShutdownInfo(signal: SIGTERM, senderPID: 7, senderUID: 1000, unixNanoseconds: 42, code: 0))
        let bytes = report.encoded()
        #expect(bytes.withUnsafeBytes { Glibc.send(peer, $0.baseAddress, $0.count, 0) } == bytes.count)
        close(peer)
        // The kernel says ECONNRESET first, then hands over the report.
        #expect(throws: OffswitchError.self) { _ = try ControlChannel(fd: channel.fd).receiveReport() }
        let (again, other) = try ControlChannel.pair()
        defer { close(again.fd) }
        try again.send(.openPTY)
        #expect(bytes.withUnsafeBytes { Glibc.send(other, $0.baseAddress, $0.count, 0) } == bytes.count)
        close(other)
        #expect(again.drainReports() == [report])
    }
}
