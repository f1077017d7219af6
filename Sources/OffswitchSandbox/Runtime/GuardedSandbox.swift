import Glibc
public import OffswitchCore

/// A throwaway sandbox for one command: leftovers of dead processes are reclaimed first, and the
/// sandbox is destroyed however the command ends, SIGINT, SIGTERM and SIGHUP included (its PID 1
/// is killed from the signal handler, so a blocked exec returns; then `Interrupted` is thrown).
/// With `watcher` (the arguments that make this program run `OwnerWatch.serve`), even a SIGKILL
/// of this process leaves nothing behind: the watcher reclaims the sandbox when this process dies.
public enum GuardedSandbox {
    public static func run<R>(_ spec: SandboxSpec, eventLog: String? = nil, paths: StatePaths = .standard, watcher: [String]? = nil,
                              reclaimed: (Leftovers.Reclaimed) -> Void = { _ in }, created: (Sandbox) -> Void = { _ in },
                              _ body: (Sandbox) throws -> R) throws -> R {
        for found in Leftovers.reclaim(paths: paths) { reclaimed(found) }
        // Held from before the create: a create that fails half-way is swept too, when we end.
        let owner = try watcher.map { arguments throws(OffswitchError) in try OwnerWatch.start(arguments: arguments, paths: paths) }
        owner?.hold()
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
        defer {
            try? sandbox.destroy()
            // Nothing of it left: the watcher ends quietly with us. A destroy that left something
            // keeps the hold, and the watcher reclaims it once we have ended.
            if access(paths.sandboxDirectory(sandbox.id), F_OK) != 0 { owner?.clear() }
        }
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
