public import OffswitchCore

/// A throwaway sandbox held by offswitchd for one client command: deleted however the command
/// ends, SIGINT, SIGTERM and SIGHUP included (the interrupt guard's thread sends the DELETE; then
/// `Interrupted` is thrown).
public enum DaemonSandbox {
    public static func run<T>(_ client: DaemonClient, create: CreateSandboxBody, created: (SandboxDocument) -> Void = { _ in },
                              _ body: (String) throws(OffswitchError) -> T) throws -> T {
        let reply = try client.call("POST", "/v1/sandboxes", body: try encode(create))
        let document: SandboxDocument
        do { document = try APIJSON.decode(SandboxDocument.self, from: reply) } catch {
            throw OffswitchError(.protocolError, "offswitchd sent a sandbox that does not decode: \(error)")
        }
        let path = "/v1/sandboxes/\(document.id)"
        let interrupts = try InterruptGuard.arm()
        defer { interrupts.disarm() }
        interrupts.onSignal { _ = try? client.call("DELETE", path) }
        created(document)
        let result: Result<T, OffswitchError> = Result { () throws(OffswitchError) in try body(document.id) }
        interrupts.disarm()
        if let signal = interrupts.signal { throw Interrupted(signal: signal) }
        _ = try? client.call("DELETE", path)
        return try result.get()
    }

    /// A request body as JSON bytes.
    public static func encode(_ value: some Encodable) throws(OffswitchError) -> [UInt8] {
        do { return try APIJSON.encode(value) } catch { throw OffswitchError(.invalidArgument, "cannot encode request: \(error)") }
    }
}
