import Glibc
public import OffswitchCore

/// Async forms of the blocking calls, for servers and harnesses on Swift concurrency. Each call
/// runs on a thread of its own, so a 15-second exec never holds a cooperative-pool thread.
/// Cancelling the calling task does not stop the call; destroy the sandbox for that.
extension Sandbox {
    /// `create` (see there for `network` and `prepare`; `prepare` runs on the creating thread).
    public static func create(_ spec: SandboxSpec = SandboxSpec(), paths: StatePaths = .standard, network: NetworkNamespace? = nil,
                              prepare: (@Sendable (Sandbox) throws(OffswitchError) -> Void)? = nil) async throws(OffswitchError) -> Sandbox {
        try await BlockingWork.run { () throws(OffswitchError) in
            try Sandbox.create(spec, paths: paths, network: network, prepare: prepare)
        }
    }

    public func exec(_ request: ExecRequest) async throws(OffswitchError) -> ExecResult {
        try await BlockingWork.run { () throws(OffswitchError) in try self.exec(request) }
    }

    public func writeFile(_ path: String, _ contents: [UInt8], user: SandboxUser = .agent, mode: UInt32 = 0o644) async throws(OffswitchError) {
        try await BlockingWork.run { () throws(OffswitchError) in try self.writeFile(path, contents, user: user, mode: mode) }
    }

    public func readFile(_ path: String, user: SandboxUser = .agent, limit: Int = Sandbox.fileLimit) async throws(OffswitchError) -> [UInt8] {
        try await BlockingWork.run { () throws(OffswitchError) in try self.readFile(path, user: user, limit: limit) }
    }

    public func shutDown() async throws(OffswitchError) {
        try await BlockingWork.run { () throws(OffswitchError) in try self.shutDown() }
    }

    public func destroy() async throws(OffswitchError) {
        try await BlockingWork.run { () throws(OffswitchError) in try self.destroy() }
    }
}
