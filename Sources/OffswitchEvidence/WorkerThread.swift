import COffswitch
import Glibc
package import OffswitchCore
import Synchronization

/// A thread of the recorder (the notify supervisor, the file watcher): it runs a poll loop that
/// also watches `wakeFD`, and `stop()` makes it readable and joins the thread.
package final class WorkerThread: Sendable {
    private let wake: (read: Int32, write: Int32)
    private let handle = Mutex<pthread_t?>(nil)

    /// Readable once `stop()` was called.
    package var wakeFD: Int32 { wake.read }

    package init(_ purpose: String) throws(OffswitchError) {
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
        let box = Unmanaged.passRetained(Box(body))
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
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
        pthread_join(thread, nil)
    }
}
