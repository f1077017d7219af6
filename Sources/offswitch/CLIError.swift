import Glibc
import OffswitchAPI
import OffswitchCore
import OffswitchEvidence
import OffswitchSandbox

/// An OffswitchError as the CLI shows it: `offswitch: <message>`, exit status 1 (2 for bad input).
struct CLIError: Error, CustomStringConvertible {
    let error: OffswitchError
    init(_ error: OffswitchError) { self.error = error }
    var description: String { error.description }
}

/// Runs `body`, showing an OffswitchError the CLI's way.
func translated<T>(_ body: () throws(OffswitchError) -> T) throws -> T {
    do { return try body() } catch { throw CLIError(error) }
}

/// The sandbox of one command in this process (embedded mode), destroyed however it ends.
func embeddedSandbox<R>(_ spec: SandboxSpec, verbose: Bool, eventLog: String? = nil, _ body: (Sandbox) throws -> R) throws -> R {
    // A closed stdout or stderr (`| head`) must end in EPIPE, not kill us before cleanup.
    signal(SIGPIPE, SIG_IGN)
    do {
        // `offswitch watch-owner` (WatchOwnerCommand.swift) cleans up if this process is SIGKILLed.
        return try GuardedSandbox.run(spec, eventLog: eventLog, watcher: [WatchOwnerCommand.name], reclaimed: { found in
            if verbose { StandardStreams.err("offswitch: reclaimed leftovers of \(found)\n") }
        }, created: { sandbox in
            guard verbose else { return }
            StandardStreams.err("offswitch: embedded mode (no daemon); sandbox \(sandbox.id)\n")
            if var report = sandbox.recorderReport {
                report.kernelHooks = KernelRecorder.report(probingHooks: true).kernelHooks
                StandardStreams.err("offswitch:   recorder: \(report.summary)\n")
            }
            for (phase, nanoseconds) in sandbox.creationPhases {
                StandardStreams.err("offswitch:   \(phase): \(Double(nanoseconds / 1000) / 1000) ms\n")
            }
        }, body)
    } catch let error as OffswitchError {
        throw CLIError(error)
    }
}

/// The sandbox of one command in offswitchd, deleted however the command ends.
func daemonSandbox<T>(_ client: DaemonClient, create: CreateSandboxBody, verbose: Bool,
                      _ body: (String) throws(OffswitchError) -> T) throws -> T {
    do {
        return try DaemonSandbox.run(client, create: create, created: { document in
            guard verbose else { return }
            StandardStreams.err("offswitch: daemon mode (\(client.socketPath)); sandbox \(document.id)\n")
            if let recorder = document.recorder {
                let report = RecorderReport(mode: recorder.mode, kernelCalls: recorder.kernel_calls, kernelUnavailable: recorder.kernel_unavailable,
                                            kernelHooks: recorder.kernel_hooks)
                StandardStreams.err("offswitch:   recorder: \(report.summary)\n")
            }
        }, body)
    } catch let error as OffswitchError {
        throw CLIError(error)
    }
}
