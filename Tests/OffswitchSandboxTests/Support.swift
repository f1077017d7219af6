import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

extension ExecResult {
    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
}

extension Sandbox {
    /// `bash -c SCRIPT` as the given user.
    func bash(_ script: String, user: SandboxUser = .agent, timeout: Double? = 30) throws -> ExecResult {
        try exec(ExecRequest(argv: ["bash", "-c", script], user: user, timeoutSeconds: timeout))
    }
}

/// The bundled profiles; isolation and lockdown tests run once with each.
let bundledProfiles = ["docker", "hardened", "observe"]

/// The spec of a bundled profile.
func profileSpec(_ name: String) throws -> SandboxSpec {
    try ProfileCatalog.load(name).sandboxSpec
}

/// A sandbox destroyed when the test body returns, whatever happens.
func withSandbox<R>(_ spec: SandboxSpec = SandboxSpec(), _ body: (Sandbox) throws -> R) throws -> R {
    let sandbox = try Sandbox.create(spec)
    defer { try? sandbox.destroy() }
    let result = try body(sandbox)
    try sandbox.destroy()
    return result
}

func statusField(_ status: String, _ name: String) -> String? {
    status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
        .map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
}
