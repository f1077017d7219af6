import COffswitch
import Glibc
import Synchronization

/// Ctrl-C, SIGTERM and SIGHUP for a command that holds sandboxes: the one interrupt mechanism of
/// the CLI. While armed, a signal is remembered (not fatal), every PID 1 passed to `killOnSignal`
/// is SIGKILLed from the signal handler itself (so a blocked exec returns at once), and the
/// `onSignal` bodies run once on a thread of their own (for work a handler may not do, such as
/// asking offswitchd to delete a sandbox). Only the kill and the wake-up byte are C
/// (`ofs_interrupt_*`): a signal handler may do nothing else.
///
/// One guard is armed at a time in a process; arming again forgets an earlier signal.
public final class InterruptGuard: Sendable {
    /// A PID 1 watched by the guard; `release` it once its sandbox is gone.
    public struct Watch: Sendable {
        fileprivate let slot: Int32
    }

    private let wake: (read: Int32, write: Int32)
    private let thread: WorkerThread
    /// What runs on a signal; `fired` once the guard's thread took them.
    private let pending = Mutex<(bodies: [@Sendable () -> Void], fired: Bool)>(([], false))
    private let disarmed = Atomic(false)

    private init(wake: (read: Int32, write: Int32), thread: WorkerThread) {
        self.wake = wake
        self.thread = thread
    }

    /// Arms the guard; `disarm()` (or the guard's end) puts the default actions back.
    public static func arm() throws(OffswitchError) -> InterruptGuard {
        var fds: [Int32] = [-1, -1]
        try systemCall("pipe(interrupt wake-up)") { ofs_pipe(&fds) }
        let thread: WorkerThread
        do {
            thread = try WorkerThread("interrupt guard")
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
        let guardian = InterruptGuard(wake: (fds[0], fds[1]), thread: thread)
        ofs_interrupt_arm(fds[1])
        let wakeFD = thread.wakeFD
        let signalFD = fds[0]
        try thread.start("interrupt guard") { [guardian] in
            var polled = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0), pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
            while true {
                let n = poll(&polled, 2, -1)
                if n < 0 && errno == EINTR { continue }
                if n < 0 || polled[0].revents != 0 { return }
                if polled[1].revents != 0 {
                    let bodies = guardian.pending.withLock { pending -> [@Sendable () -> Void] in
                        pending.fired = true
                        return pending.bodies
                    }
                    for body in bodies { body() }
                    return
                }
            }
        }
        return guardian
    }

    deinit {
        disarm()
        close(wake.read)
        close(wake.write)
    }

    /// The signal that came since the guard was armed, if one did.
    public var signal: Int32? {
        let caught = ofs_interrupt_received()
        return caught == 0 ? nil : caught
    }

    /// SIGKILLs `pid` on a signal (at once if one already came).
    public func killOnSignal(_ pid: Int32) throws(OffswitchError) -> Watch {
        Watch(slot: try systemCall("interrupt guard: watch pid \(pid)") { ofs_interrupt_watch(pid) })
    }

    public func release(_ watch: Watch) {
        ofs_interrupt_unwatch(watch.slot)
    }

    /// Runs `body` once, on the guard's thread, when a signal comes (at once if one already came).
    public func onSignal(_ body: @escaping @Sendable () -> Void) {
        let fired = pending.withLock { pending -> Bool in
            if !pending.fired { pending.bodies.append(body) }
            return pending.fired
        }
        if fired { body() }
    }

    /// Puts the default actions back and stops the guard's thread. A signal that came is still
    /// reported by `signal`.
    public func disarm() {
        guard !disarmed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        ofs_interrupt_disarm()
        thread.stop()
    }
}

/// A command stopped by SIGINT, SIGTERM or SIGHUP; its sandbox is gone (a CLI exits 128 + signal).
public struct Interrupted: Error, Sendable {
    public let signal: Int32
    public init(signal: Int32) { self.signal = signal }
}
