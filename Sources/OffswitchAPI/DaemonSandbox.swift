public import OffswitchCore

/// A throwaway sandbox held by offswitchd for one client command: deleted however the command
/// ends, SIGINT, SIGTERM and SIGHUP included (the interrupt guard's thread sends the DELETE; then
/// `Interrupted` is thrown).
public enum DaemonSandbox {
    public static func run<T>(_ client: DaemonClient, create: CreateSandboxBody, created: (SandboxDocument) -> Void = { _ in },
                              _ body: (String) throws(OffswitchError) -> T) throws -> T {
        let document = try client.createSandbox(create).document
        let id = document.id
        let interrupts = try InterruptGuard.arm()
        defer { interrupts.disarm() }
        interrupts.onSignal { try? client.deleteSandbox(id) }
        created(document)
        let result: Result<T, OffswitchError> = Result { () throws(OffswitchError) in try body(id) }
        interrupts.disarm()
        if let signal = interrupts.signal { throw Interrupted(signal: signal) }
        try? client.deleteSandbox(id)
        return try result.get()
    }
}
