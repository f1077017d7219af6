import Glibc
public import OffswitchCore

/// The host directories a client of the daemon may name as a sandbox's root (`dir:PATH`): only
/// those the operator listed (`offswitchd --allow-rootfs DIR`, repeatable), none by default. The
/// daemon runs as root and its socket is shared by a group: a root of the client's choosing would
/// let any member read what only root can (`dir:/` and then the file route on `/etc/shadow`).
/// Paths are compared after resolving symlinks, exactly (a directory below an allowed one is not
/// allowed), and the sandbox is built from the resolved path.
public struct RootfsAllowlist: Sendable {
    /// The allowed directories, resolved.
    public let directories: [String]

    /// No host directory at all (the default).
    public static let none = RootfsAllowlist(resolved: [])

    private init(resolved: [String]) { directories = resolved }

    /// Resolves each directory the operator gave; one that is not an existing directory is an error.
    public init(_ given: [String], option: String = "--allow-rootfs") throws(OffswitchError) {
        var resolved: [String] = []
        for path in given {
            guard path.hasPrefix("/") else {
                throw OffswitchError(.invalidArgument, "\(option) \(path): needs an absolute path")
            }
            let real = try Self.resolve(path, stage: "\(option) \(path)")
            guard (try? fileMode(real)).map({ $0 & S_IFMT == S_IFDIR }) == true else {
                throw OffswitchError(.invalidArgument, "\(option) \(path): not a directory")
            }
            if !resolved.contains(real) { resolved.append(real) }
        }
        directories = resolved
    }

    /// The root a request may have: `host` as it is; `dir:PATH` only when PATH resolves to an
    /// allowed directory, and then as that resolved directory. `field` names the request's field.
    public func check(_ source: RootfsSource, field: String) throws(OffswitchError) -> RootfsSource {
        guard case .directory(let path) = source else { return source }
        let allowed = directories.isEmpty ? "none is allowed" : "allowed: \(directories.joined(separator: ", "))"
        let refusal = OffswitchError(.rootfsNotAllowed,
                                     "\(field): dir:\(path) is not a root this daemon's operator allowed (\(allowed); offswitchd --allow-rootfs DIR adds one, or run the CLI with --embedded)")
        guard !directories.isEmpty, let real = try? Self.resolve(path, stage: field), directories.contains(real) else {
            throw refusal
        }
        return .directory(real)
    }

    private static func resolve(_ path: String, stage: String) throws(OffswitchError) -> String {
        guard let pointer = realpath(path, nil) else { throw OffswitchError.system("realpath(\(path)) for \(stage)", errno: errno) }
        defer { free(pointer) }
        return String(cString: pointer)
    }
}
