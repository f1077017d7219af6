#if canImport(Glibc)
import Glibc
#endif

extension Array where Element == String {
    /// A NULL-terminated array of C strings (argv, envp) valid for the closure's duration.
    public func withCStrings<R, E: Error>(_ body: ([UnsafeMutablePointer<CChar>?]) throws(E) -> R) throws(E) -> R {
        var pointers: [UnsafeMutablePointer<CChar>?] = map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return try body(pointers)
    }
}
