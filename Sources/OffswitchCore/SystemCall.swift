#if canImport(Glibc)
import Glibc
#endif

/// The one place where EINTR is retried. `body` returns the raw result of a call that sets errno
/// and returns -1 on failure; on failure this throws with `stage` naming the call and its object.
@discardableResult
public func systemCall<T: BinaryInteger>(_ stage: @autoclosure () -> String, _ body: () -> T) throws(OffswitchError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = errno
        if err == EINTR { continue }
        throw OffswitchError.system(stage(), errno: err)
    }
}

/// Like `systemCall`, for calls that return a negative errno value instead of setting errno.
@discardableResult
public func systemCallNegErrno<T: SignedInteger>(_ stage: @autoclosure () -> String, _ body: () -> T) throws(OffswitchError) -> T {
    while true {
        let result = body()
        if result >= 0 { return result }
        let err = Int32(truncatingIfNeeded: 0 - result)
        if err == EINTR { continue }
        throw OffswitchError.system(stage(), errno: err)
    }
}

/// Monotonic clock in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall clock in nanoseconds since the epoch.
public func unixNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

extension Array where Element == String {
    /// A NULL-terminated array of C strings (argv, envp) valid for the closure's duration.
    public func withCStrings<R, E: Error>(_ body: ([UnsafeMutablePointer<CChar>?]) throws(E) -> R) throws(E) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return try body(pointers)
    }
}

/// The target of a symbolic link (or of a /proc magic link).
public func readLink(_ path: String) throws(OffswitchError) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try systemCall("readlink(\(path))") { readlink(path, &buffer, buffer.count - 1) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// st_mode of a path (lstat when `followLinks` is false). Here rather than at each caller: in
/// modules that also see NIO, `struct stat` resolves to CNIOLinux's copy and fails to compile.
public func fileMode(_ path: String, followLinks: Bool = true) throws(OffswitchError) -> UInt32 {
    var info = stat()
    let rc = followLinks ? stat(path, &info) : lstat(path, &info)
    if rc != 0 { throw OffswitchError.system(followLinks ? "stat(\(path))" : "lstat(\(path))", errno: errno) }
    return UInt32(info.st_mode)
}

/// A path's change time in nanoseconds (for /proc/PID: when that process started).
public func fileStamp(_ path: String) throws(OffswitchError) -> Int {
    var info = stat()
    if stat(path, &info) != 0 { throw OffswitchError.system("stat(\(path))", errno: errno) }
    return Int(info.st_ctim.tv_sec) * 1_000_000_000 + Int(info.st_ctim.tv_nsec)
}

/// The names in a directory, without `.` and `..`; empty when it cannot be opened.
public func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Offswitch's version, recorded in every trial.json.
public enum OffswitchVersion {
    public static let current = "0.3.0"
}

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes; false when the descriptor
/// stops taking bytes (a closed pipe or pty). For relays and terminals, where a dead reader is
/// not an error worth more than stopping.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
    let data = Array(bytes)
    var offset = 0
    while offset < data.count {
        let n = data[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        offset += n
    }
    return true
}
