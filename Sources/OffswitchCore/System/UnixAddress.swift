#if canImport(Glibc)
public import Glibc
#endif

/// Calls `body` with the `sockaddr_un` of a Unix socket at `path` (for bind and connect). A path
/// that does not fit in `sun_path` is an error naming it, never cut short: a shortened path
/// names another socket.
public func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws(OffswitchError) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path), !bytes.contains(0) else {
        throw OffswitchError(.invalidArgument, "socket path \(path) is too long for a Unix socket")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
