import COffswitch
import Glibc
import OffswitchCore

/// The host's end of a SOCK_SEQPACKET socket: one message per packet, descriptors attached.
/// Sending is safe from many threads at once (each sendmsg is one atomic packet).
struct ControlChannel: Sendable {
    let fd: Int32

    /// A connected pair, both ends close-on-exec, with buffers big enough for the largest message.
    static func pair() throws(OffswitchError) -> (ControlChannel, Int32) {
        var fds: [Int32] = [-1, -1]
        try systemCall("socketpair(AF_UNIX, SOCK_SEQPACKET)") {
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        var size = Int32(ControlProtocol.maxMessageBytes * 2)
        for fd in fds {
            // SO_SNDBUFFORCE (32) lets root exceed wmem_max; a packet must fit in one send buffer.
            _ = setsockopt(fd, SOL_SOCKET, 32, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        return (ControlChannel(fd: fds[0]), fds[1])
    }

    func send(_ request: InitRequest, descriptors: [Int32] = []) throws(OffswitchError) {
        let bytes = request.encoded()
        guard bytes.count <= ControlProtocol.maxMessageBytes else {
            throw OffswitchError(.invalidArgument,
                "request of \(bytes.count) bytes exceeds the \(ControlProtocol.maxMessageBytes)-byte control limit (argv and environment too large)")
        }
        try Self.send(bytes, descriptors: descriptors, on: fd, stage: "sendmsg(control)")
    }

    static func send(_ bytes: [UInt8], descriptors: [Int32], on fd: Int32, stage: String) throws(OffswitchError) {
        let n = bytes.withUnsafeBytes { raw in
            descriptors.withUnsafeBufferPointer { fds in
                ofs_send_with_fds(fd, raw.baseAddress!, raw.count, fds.baseAddress, Int32(fds.count))
            }
        }
        if n < 0 { throw OffswitchError.system(stage, errno: errno) }
    }

    /// One packet and its descriptors; nil at EOF.
    static func receive(on fd: Int32, capacity: Int, maxDescriptors: Int, stage: String) throws(OffswitchError) -> ([UInt8], [Int32])? {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var fds = [Int32](repeating: -1, count: max(maxDescriptors, 1))
        var count: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { raw in
            ofs_recv_with_fds(fd, raw.baseAddress!, raw.count, &fds, Int32(maxDescriptors), &count)
        }
        if n < 0 { throw OffswitchError.system(stage, errno: errno) }
        if n == 0 && count == 0 { return nil }
        return (Array(buffer.prefix(n)), Array(fds.prefix(Int(count))))
    }

    func receiveReport() throws(OffswitchError) -> InitReport? {
        try receiveReportWithDescriptors()?.0
    }

    /// Every report PID 1 left, up to the end of the channel, once it has exited. A peer that
    /// exits with requests it never read leaves ECONNRESET pending on our end, and the kernel
    /// returns that error before the packets queued ahead of it (a SEQPACKET socket checks the
    /// error first): so a reset is read past, not taken for the end, or the `shutdown` report
    /// PID 1 sent just before it exited would be lost.
    func drainReports() -> [InitReport] {
        var reports: [InitReport] = []
        var resets = 0
        while true {
            do throws(OffswitchError) {
                guard let report = try receiveReport() else { return reports }
                reports.append(report)
            } catch {
                guard error.errno == ECONNRESET, resets < 8 else { return reports }
                resets += 1
            }
        }
    }

    /// A report and the descriptors attached to it (the recorder's listener comes with `ready`).
    func receiveReportWithDescriptors() throws(OffswitchError) -> (InitReport, [Int32])? {
        guard let (bytes, fds) = try Self.receive(on: fd, capacity: 65536, maxDescriptors: 1, stage: "recvmsg(control)") else {
            return nil
        }
        do throws(OffswitchError) {
            return (try InitReport.decode(bytes), fds)
        } catch {
            for extra in fds { close(extra) }
            throw error
        }
    }
}
