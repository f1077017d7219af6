import Glibc
public import OffswitchCore

/// A throwaway sandbox for one command: leftovers of dead processes are reclaimed first, and the
/// sandbox is destroyed however the command ends, SIGINT, SIGTERM and SIGHUP included (its PID 1
/// is killed from the signal handler, so a blocked exec returns; then `Interrupted` is thrown).
public enum GuardedSandbox {
    public static func run<R>(_ spec: SandboxSpec, eventLog: String? = nil, paths: StatePaths = .standard,
                              reclaimed: (Leftovers.Reclaimed) -> Void = { _ in }, created: (Sandbox) -> Void = { _ in },
                              _ body: (Sandbox) throws -> R) throws -> R {
        for found in Leftovers.reclaim(paths: paths) { reclaimed(found) }
        let interrupts = try InterruptGuard.arm()
        defer { interrupts.disarm() }
        func interruption() -> Interrupted? { interrupts.signal.map { Interrupted(signal: $0) } }
        func guarded<T>(_ step: () throws -> T) throws -> T {
            do {
                return try step()
            } catch {
                // Any failure after a caught signal is the signal's doing.
                if let interrupted = interruption() { throw interrupted }
                throw error
            }
        }
        let sandbox = try guarded { try Sandbox.create(spec, paths: paths, eventLog: eventLog) }
        defer { try? sandbox.destroy() }
        let watch = try interrupts.killOnSignal(sandbox.initPID)
        defer { interrupts.release(watch) }
        created(sandbox)
        if let interrupted = interruption() { throw interrupted }
        let result = try guarded { try body(sandbox) }
        if let interrupted = interruption() { throw interrupted }
        try guarded { try sandbox.destroy() }
        return result
    }
}
