#if canImport(Glibc)
import Glibc
#endif

/// The one error type of Offswitch. Its message names the stage and the object (a path, a field,
/// a sandbox), and `errno` carries the system's answer when there was one, so a user who reads
/// only the error knows what failed and where.
public struct OffswitchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Stable, machine-readable kinds (also used as API error codes).
    public enum Code: String, Sendable, Codable, CaseIterable {
        case notRoot = "not_root"
        case missingFeature = "missing_feature"
        case invalidArgument = "invalid_argument"
        case invalidProfile = "invalid_profile"
        case invalidScenario = "invalid_scenario"
        case invalidAgent = "invalid_agent"
        case setupFailed = "setup_failed"
        case execFailed = "exec_failed"
        case sandboxShutDown = "sandbox_shut_down"
        case sandboxDestroyed = "sandbox_destroyed"
        case notFound = "not_found"
        /// An image a sandbox uses cannot be removed (docs/images.md).
        case imageInUse = "image_in_use"
        /// The daemon holds no sandbox, or has no trial, of that id.
        case sandboxNotFound = "sandbox_not_found"
        case trialNotFound = "trial_not_found"
        /// A trial's call (steps, verdict) on a sandbox that was not created from a scenario.
        case notATrial = "not_a_trial"
        case isDirectory = "is_directory"
        case permissionDenied = "permission_denied"
        /// A `dir:` root the daemon's operator did not allow (`offswitchd --allow-rootfs DIR`).
        case rootfsNotAllowed = "rootfs_not_allowed"
        case notRegularFile = "not_regular_file"
        /// A write where the sandbox's root is read-only (`read_only`, EROFS).
        case readOnly = "read_only"
        /// A file the file API would read or write is over its limit (`Sandbox.fileLimit`).
        case fileTooLarge = "file_too_large"
        /// The daemon runs as many sandboxes, trials or streams as its operator allows.
        case capacityReached = "capacity_reached"
        case protocolError = "protocol_error"
        /// A registry refused the account, or the pull without one (`image pull`).
        case registryUnauthorized = "registry_unauthorized"
        /// A registry could not be reached or answered what the distribution API does not allow.
        case registryFailed = "registry_failed"
        case system = "system_error"
    }

    public var code: Code
    /// What failed, naming the stage and object: `mount(overlay, /run/offswitch/sb-3/root)`.
    public var message: String
    /// The errno the system returned, if any.
    public var errno: Int32?

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    /// A failed system call: `stage` names the call and its object.
    public static func system(_ stage: String, errno: Int32) -> OffswitchError {
        OffswitchError(code(forErrno: errno), stage, errno: errno)
    }

    public var description: String {
        guard let errno else { return message }
        return "\(message): \(ErrnoName.describe(errno))"
    }

    private static func code(forErrno errno: Int32) -> Code {
        switch errno {
        case ENOENT: return .notFound
        case EISDIR: return .isDirectory
        case EACCES, EPERM: return .permissionDenied
        case EROFS: return .readOnly
        default: return .system
        }
    }
}

/// Symbolic errno names (`EINVAL`), which are what people search for, with the text after them.
public enum ErrnoName {
    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", ESRCH: "ESRCH", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
        E2BIG: "E2BIG", ENOEXEC: "ENOEXEC", EBADF: "EBADF", ECHILD: "ECHILD", EAGAIN: "EAGAIN",
        ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
        EXDEV: "EXDEV", ENODEV: "ENODEV", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL",
        ENFILE: "ENFILE", EMFILE: "EMFILE", ENOTTY: "ENOTTY", ETXTBSY: "ETXTBSY", EFBIG: "EFBIG",
        ENOSPC: "ENOSPC", EROFS: "EROFS", EMLINK: "EMLINK", EPIPE: "EPIPE", ERANGE: "ERANGE",
        ENAMETOOLONG: "ENAMETOOLONG", ENOSYS: "ENOSYS", ENOTEMPTY: "ENOTEMPTY", ELOOP: "ELOOP",
        EOPNOTSUPP: "EOPNOTSUPP", EMSGSIZE: "EMSGSIZE", ECONNREFUSED: "ECONNREFUSED",
        ECONNRESET: "ECONNRESET", ETIMEDOUT: "ETIMEDOUT", ENOTCONN: "ENOTCONN",
        EPROTONOSUPPORT: "EPROTONOSUPPORT", EAFNOSUPPORT: "EAFNOSUPPORT",
    ]

    /// The symbol alone (`ETXTBSY`), or `errno N` for one without a name here.
    public static func name(_ errno: Int32) -> String { names[errno] ?? "errno \(errno)" }

    public static func describe(_ errno: Int32) -> String {
        let text = String(cString: strerror(errno))
        guard let name = names[errno] else { return "errno \(errno) (\(text))" }
        return "\(name) (\(text))"
    }
}
