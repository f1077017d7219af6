import COffswitch
import Glibc
public import OffswitchCore

/// The `offswitch-init` binary as a sealed memfd. PID 1 is executed from it, so `/proc/1/exe`
/// inside the sandbox names an object nobody can write to (runc's CVE-2019-5736), and the host
/// file it came from is never reachable from inside.
enum InitImage {
    /// Sealed once per process and shared by every sandbox it starts.
    static let sealed: Result<Int32, OffswitchError> = {
        do throws(OffswitchError) {
            let path = try locate()
            let source = try systemCall("open(\(path))") { open(path, O_RDONLY | O_CLOEXEC) }
            defer { close(source) }
            return .success(try systemCall("memfd seal(\(path))") { ofs_sealed_copy(source, "offswitch-init") })
        } catch {
            return .failure(error)
        }
    }()

    /// `OFFSWITCH_INIT`, else `offswitch-init` beside the running executable.
    static func locate() throws(OffswitchError) -> String {
        try HelperBinary.locate("offswitch-init", override: "OFFSWITCH_INIT")
    }
}

/// Programs Offswitch builds beside its own executables (`offswitch-init`, `next-question`).
public enum HelperBinary {
    /// The path in the environment variable `override` when set, else `name` beside the running
    /// executable; an error says how to get it.
    public static func locate(_ name: String, override: String) throws(OffswitchError) -> String {
        if let value = getenv(override) {
            let path = String(cString: value)
            guard access(path, X_OK) == 0 else {
                throw OffswitchError(.missingFeature, "\(override)=\(path) is not an executable file", errno: errno)
            }
            return path
        }
        let executable = (try? readLink("/proc/self/exe")) ?? ""
        let directory = executable.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let candidate = directory + "/" + name
        guard access(candidate, X_OK) == 0 else {
            throw OffswitchError(.missingFeature,
                "cannot find \(name) beside \(executable); build it (make build) or set \(override)")
        }
        return candidate
    }
}
