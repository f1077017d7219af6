import COffswitch
import Glibc
import Testing

@Suite("Unix socket credentials per message")
struct SenderTests {
    @Test("Each receive names the process that wrote its bytes, at the time it wrote them")
    func senderOfEachWrite() throws {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]); close(pair[1]) }
        try #require(ofs_pass_credentials(pair[0]) == 0)
        let child = fork()
        if child == 0 {
            _ = write(pair[1], "child", 5)
            _exit(0)
        }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        _ = write(pair[1], "parent", 6)
        var buffer = [UInt8](repeating: 0, count: 64)
        var sender: Int32 = -1
        // The kernel does not join the two writers' bytes into one receive.
        let first = ofs_recv_with_sender(pair[0], &buffer, UInt(buffer.count), &sender)
        #expect(String(decoding: buffer[0..<Int(first)], as: UTF8.self) == "child")
        // The child has exited: its pid no longer maps to a process.
        #expect(sender == 0 || sender == child)
        let second = ofs_recv_with_sender(pair[0], &buffer, UInt(buffer.count), &sender)
        #expect(String(decoding: buffer[0..<Int(second)], as: UTF8.self) == "parent")
        #expect(sender == getpid())
    }
}
