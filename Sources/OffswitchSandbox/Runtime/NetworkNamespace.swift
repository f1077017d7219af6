import COffswitch
import Glibc
public import OffswitchCore

/// A running sandbox's network namespace, held open for another sandbox to join
/// (`SandboxSpec.network = .sandbox(id)`, Docker compose's pod model). Taken from the sandbox's
/// PID 1 through its pidfd, so it is never the namespace of whatever process reused the pid.
/// The namespace lives as long as any sandbox in it (or this descriptor) does.
public final class NetworkNamespace: Sendable {
    /// The sandbox whose namespace this is (its user namespace owns it).
    public let sandboxID: String
    let fd: Int32

    fileprivate init(sandboxID: String, fd: Int32) {
        self.sandboxID = sandboxID
        self.fd = fd
    }

    deinit { close(fd) }
}

extension Sandbox {
    /// This sandbox's network namespace, for another to join; `sandbox_shut_down` once PID 1 has
    /// ended (its namespace may live on in joiners, but no new one may join it).
    public func networkNamespace() throws(OffswitchError) -> NetworkNamespace {
        try ensureRunning()
        let fd = ofs_pidfd_network_namespace(pidfd, initPID)
        guard fd >= 0 else {
            let error = errno
            try ensureRunning()
            throw OffswitchError.system("network namespace of sandbox \(id) (pidfd of PID 1)", errno: error)
        }
        return NetworkNamespace(sandboxID: id, fd: fd)
    }
}
