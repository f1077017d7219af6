import COffswitch
import Glibc
import OffswitchCore
import OffswitchSandbox

/// A throwaway sandbox for one CLI command: leftovers of dead processes are reclaimed first, and
/// the sandbox is destroyed however the command ends, SIGINT, SIGTERM and SIGHUP included.
enum GuardedSandbox {
    struct Interrupted: Error {
        let signal: Int32
    }

    static func run<R>(_ spec: SandboxSpec, verbose: Bool, eventLog: String? = nil, _ body: (Sandbox) throws -> R) throws -> R {
        // A closed stdout or stderr (`| head`) must end in EPIPE, not kill us before cleanup.
        signal(SIGPIPE, SIG_IGN)
        for reclaimed in Leftovers.reclaim() where verbose {
            StandardStreams.err("offswitch: reclaimed leftovers of \(reclaimed)\n")
        }
        ofs_interrupt_guard(-1)
        defer { ofs_interrupt_guard(0) }
        let sandbox = try translated { try Sandbox.create(spec, eventLog: eventLog) }
        defer { try? sandbox.destroy() }
        ofs_interrupt_guard(sandbox.initPID)
        if verbose { describe(sandbox) }
        if let interrupted = interruption() { throw interrupted }
        let result = try translated { try body(sandbox) }
        if let interrupted = interruption() { throw interrupted }
        try translated { try sandbox.destroy() }
        return result
    }

    /// OffswitchError becomes CLIError; any error after a caught signal becomes `Interrupted`.
    private static func translated<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as OffswitchError {
            if let interrupted = interruption() { throw interrupted }
            throw CLIError(error)
        }
    }

    private static func describe(_ sandbox: Sandbox) {
        StandardStreams.err("offswitch: embedded mode (no daemon); sandbox \(sandbox.id)\n")
        for (phase, nanoseconds) in sandbox.creationPhases {
            StandardStreams.err("offswitch:   \(phase): \(Double(nanoseconds / 1000) / 1000) ms\n")
        }
    }

    private static func interruption() -> Interrupted? {
        let signal = ofs_interrupt_received()
        return signal == 0 ? nil : Interrupted(signal: signal)
    }
}
