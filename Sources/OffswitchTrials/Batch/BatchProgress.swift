import Glibc
import OffswitchCore
import Synchronization

/// A batch's progress on stderr: a bar redrawn in place on a terminal, a line per trial otherwise.
final class BatchProgress: Sendable {
    private let total: Int
    private let terminal: Bool
    private let started = monotonicNanoseconds()
    private let lock = Mutex(())

    init(total: Int) {
        self.total = total
        self.terminal = isatty(2) == 1
    }

    func say(_ line: String) {
        lock.withLock { _ in _ = writeAll(2, Array((line + "\n").utf8)) }
    }

    func show(done: Int, verdicts: [String: Int]) {
        guard terminal else { return }
        lock.withLock { _ in _ = writeAll(2, Array(("\r\u{1B}[K" + bar(done: done, verdicts: verdicts)).utf8)) }
    }

    func trialDone(_ name: String, verdict: String, done: Int, verdicts: [String: Int]) {
        if terminal { show(done: done, verdicts: verdicts); return }
        say("[\(done)/\(total)] \(name): \(verdict)")
    }

    func finish() {
        if terminal { lock.withLock { _ in _ = writeAll(2, Array("\n".utf8)) } }
    }

    private func bar(done: Int, verdicts: [String: Int]) -> String {
        let width = 30
        let filled = total == 0 ? width : done * width / total
        let counts = verdicts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: " · ")
        let seconds = (monotonicNanoseconds() - started) / 1_000_000_000
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total) \(seconds)s " + counts
    }
}
