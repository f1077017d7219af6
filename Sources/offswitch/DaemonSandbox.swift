import FoundationEssentials
import Glibc
import OffswitchAPI
import OffswitchCore

/// A throwaway sandbox held by offswitchd for one CLI command: deleted however the command
/// ends, SIGINT, SIGTERM and SIGHUP included (a watcher thread sigwaits and sends the DELETE).
enum DaemonSandbox {
    static func run<T>(_ client: DaemonClient, create: CreateSandboxBody, verbose: Bool,
                       _ body: (String) throws(OffswitchError) -> T) throws -> T {
        let created = try translated { () throws(OffswitchError) in
            try client.call("POST", "/v1/sandboxes", body: try encode(create))
        }
        let document = try APIJSON.decode(SandboxDocument.self, from: created)
        if verbose { StandardStreams.err("offswitch: daemon mode (\(client.socketPath)); sandbox \(document.id)\n") }
        let watcher = InterruptWatcher.start { _ = try? client.call("DELETE", "/v1/sandboxes/\(document.id)") }
        let result: Result<T, OffswitchError> = Result { () throws(OffswitchError) in try body(document.id) }
        if let signal = watcher.stop() { throw GuardedSandbox.Interrupted(signal: signal) }
        _ = try? client.call("DELETE", "/v1/sandboxes/\(document.id)")
        return try translated { () throws(OffswitchError) in try result.get() }
    }

    static func encode(_ value: some Encodable) throws(OffswitchError) -> [UInt8] {
        do { return try APIJSON.encode(value) } catch { throw OffswitchError(.invalidArgument, "cannot encode request: \(error)") }
    }

    static func translated<T>(_ body: () throws(OffswitchError) -> T) throws -> T {
        do { return try body() } catch { throw CLIError(error) }
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and waits for them on another, which
/// runs `onSignal` once. Threads created later inherit the block, so only the watcher sees them.
final class InterruptWatcher: @unchecked Sendable {
    private var thread = pthread_t()
    private var caught: Int32 = 0
    private let onSignal: () -> Void
    private var previous = sigset_t()

    private init(onSignal: @escaping () -> Void) { self.onSignal = onSignal }

    static func start(_ onSignal: @escaping () -> Void) -> InterruptWatcher {
        let watcher = InterruptWatcher(onSignal: onSignal)
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGUSR2] { sigaddset(&set, signal) }
        pthread_sigmask(SIG_BLOCK, &set, &watcher.previous)
        pthread_create(&watcher.thread, nil, { raw in
            let watcher = Unmanaged<InterruptWatcher>.fromOpaque(raw!).takeUnretainedValue()
            var set = sigset_t()
            sigemptyset(&set)
            for signal in [SIGINT, SIGTERM, SIGHUP, SIGUSR2] { sigaddset(&set, signal) }
            var signal: Int32 = 0
            sigwait(&set, &signal)
            if signal != SIGUSR2 {  // SIGUSR2 is our own "stop watching"
                watcher.caught = signal
                watcher.onSignal()
            }
            return nil
        }, Unmanaged.passUnretained(watcher).toOpaque())
        return watcher
    }

    /// Stops watching; returns the signal that arrived, if one did.
    func stop() -> Int32? {
        pthread_kill(thread, SIGUSR2)
        pthread_join(thread, nil)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        return caught == 0 ? nil : caught
    }
}
