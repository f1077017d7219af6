import COffswitch
import Glibc
import OffswitchCore
import Testing

@Suite("The caller's terminal in raw mode")
struct TerminalTests {
    /// A pty's two ends, opened here; no root needed.
    static func pty() throws -> (master: Int32, slave: Int32) {
        var master: Int32 = -1, slave: Int32 = -1
        try #require(ofs_openpty(&master, &slave) == 0)
        return (master, slave)
    }

    static func lineMode(_ fd: Int32) -> Bool {
        var settings = termios()
        tcgetattr(fd, &settings)
        return settings.c_lflag & tcflag_t(ICANON | ECHO) != 0
    }

    @Test("Raw while held, the old settings back after restore, the pty's size read")
    func rawAndRestored() throws {
        let (master, slave) = try Self.pty()
        defer { close(master); close(slave) }
        #expect(Self.lineMode(slave))
        var size = winsize(ws_row: 33, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0)
        try #require(ioctl(slave, UInt(TIOCSWINSZ), &size) == 0)
        let measured = try #require(RawTerminal.size(of: slave))
        #expect(measured.rows == 33 && measured.cols == 101)
        let terminal = RawTerminal(slave)
        #expect(!Self.lineMode(slave))
        terminal.restore()
        #expect(Self.lineMode(slave))
    }

    @Test("A pipe is left alone and has no size")
    func pipeIsNotATerminal() throws {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        defer { close(ends[0]); close(ends[1]) }
        #expect(RawTerminal.size(of: ends[0]) == nil)
        RawTerminal(ends[0]).restore()
        #expect(fcntl(ends[0], F_GETFD) >= 0)
    }
}
