import Glibc

/// Runs blocking work on a new detached pthread and resumes the caller when it is done.
package enum BlockingWork {
    private final class Job: @unchecked Sendable {
        let work: () -> Void
        init(_ work: @escaping () -> Void) { self.work = work }
    }

    package static func run<T: Sendable>(_ body: @escaping @Sendable () throws(OffswitchError) -> T) async throws(OffswitchError) -> T {
        let result: Result<T, OffswitchError> = await withCheckedContinuation { continuation in
            let job = Job { continuation.resume(returning: Result { () throws(OffswitchError) in try body() }) }
            var thread = pthread_t()
            let retained = Unmanaged.passRetained(job)  // released by the thread
            let started = pthread_create(&thread, nil, { raw in
                Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue().work()
                return nil
            }, retained.toOpaque())
            if started == 0 {
                pthread_detach(thread)
            } else {
                retained.release()
                continuation.resume(returning: .failure(OffswitchError.system("pthread_create", errno: started)))
            }
        }
        return try result.get()
    }
}
