import COffswitch
import Glibc
import Synchronization

/// A thread of the recorder (the notify supervisor, the file watcher). Either it runs a poll loop
/// that also watches `wakeFD`, or (`interruptible`) it blocks in one call and checks `stopping`
/// whenever that call returns EINTR. `stop()` makes `wakeFD` readable, sets `stopping`, interrupts
/// an interruptible thread with a signal until it ends, and joins it.
package final class WorkerThread: Sendable {
    private let wake: (read: Int32, write: Int32)
    private let handle = Mutex<pthread_t?>(nil)
    private let interruptible: Bool
    private let stopRequested = Atomic(false)

    /// Readable once `stop()` was called.
    package var wakeFD: Int32 { wake.read }
    /// True once `stop()` was called.
    package var stopping: Bool { stopRequested.load(ordering: .acquiring) }

    package init(_ purpose: String, interruptible: Bool = false) throws(OffswitchError) {
        self.interruptible = interruptible
        var fds: [Int32] = [-1, -1]
        try systemCall("pipe(\(purpose) wake-up)") { ofs_pipe(&fds) }
        wake = (fds[0], fds[1])
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    private final class Box: @unchecked Sendable {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    package func start(_ purpose: String, _ body: @escaping @Sendable () -> Void) throws(OffswitchError) {
        var thread = pthread_t()
        let interruptible = self.interruptible
        let box = Unmanaged.passRetained(Box {
            // The wake signal is unblocked in this thread only; stop() sends it here.
            if interruptible { _ = ofs_thread_interruptible() }
            body()
        })
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw OffswitchError.system("pthread_create(\(purpose))", errno: rc)
        }
        handle.withLock { $0 = thread }
    }

    /// Wakes the thread and waits for it to return. Does nothing when it was never started.
    package func stop() {
        guard let thread = handle.withLock({ current -> pthread_t? in
            defer { current = nil }
            return current
        }) else { return }
        stopRequested.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        guard interruptible else {
            pthread_join(thread, nil)
            return
        }
        // A signal that lands between the thread's check of `stopping` and its blocking call is
        // lost, so keep sending until the thread has ended.
        while true {
            _ = ofs_thread_interrupt(thread)
            if ofs_thread_join_within(thread, 5) == 0 { return }
        }
    }
}
