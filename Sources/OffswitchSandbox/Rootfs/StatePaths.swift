import Glibc
public import OffswitchCore

/// Where Offswitch keeps host-side state: one directory per sandbox (mount points, the tmpfs with
/// the upper layers) and the shared rootfs skeletons. Under /run, so a reboot clears it.
public struct StatePaths: Sendable {
    public var base: String

    /// `OFFSWITCH_RUN_DIR` overrides the default `/run/offswitch`.
    public static var standard: StatePaths {
        StatePaths(base: getenv("OFFSWITCH_RUN_DIR").map { String(cString: $0) } ?? "/run/offswitch")
    }

    public init(base: String) { self.base = base }

    public var sandboxesDirectory: String { base + "/sandboxes" }
    public var rootfsDirectory: String { base + "/rootfs" }
    public func sandboxDirectory(_ id: String) -> String { sandboxesDirectory + "/" + id }

    func ensureBase() throws(OffswitchError) {
        try makeDirectory(base, mode: 0o711)
        try makeDirectory(sandboxesDirectory, mode: 0o700)
    }
}
