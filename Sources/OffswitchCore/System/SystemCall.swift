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
