import COffswitch
import Glibc

/// The caller's terminal while a sandbox's terminal is relayed to it: raw mode (every key goes
/// through as typed, ^C included, so it reaches the program inside) and its window size. Used by
/// the embedded shell and by the CLI's relay through offswitchd.
public struct RawTerminal {
    private let fd: Int32
    private let saved: termios?

    /// Puts `fd` in raw mode when it is a terminal; does nothing otherwise (a piped script).
    /// `restore()` undoes it.
    public init(_ fd: Int32) {
        self.fd = fd
        guard isatty(fd) == 1 else {
            saved = nil
            return
        }
        var original = termios()
        guard tcgetattr(fd, &original) == 0 else {
            saved = nil
            return
        }
        var raw = original
        cfmakeraw(&raw)
        tcsetattr(fd, TCSANOW, &raw)
        saved = original
    }

    /// The terminal's size when `fd` is a terminal that knows it.
    public static func size(of fd: Int32) -> (rows: UInt16, cols: UInt16)? {
        var rows: UInt16 = 0, cols: UInt16 = 0
        guard isatty(fd) == 1, ofs_winsize_get(fd, &rows, &cols) == 0, rows > 0, cols > 0 else { return nil }
        return (rows, cols)
    }

    /// Gives `fd` its settings back.
    public func restore() {
        if var saved { tcsetattr(fd, TCSANOW, &saved) }
    }
}
