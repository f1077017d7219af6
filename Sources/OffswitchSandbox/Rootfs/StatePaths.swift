import Glibc
public import OffswitchCore
public import OffswitchImages

/// Where Offswitch keeps host-side state: one directory per sandbox (mount points, the tmpfs with
/// the upper layers) and the shared rootfs skeletons. Under /run, so a reboot clears it.
public struct StatePaths: Sendable {
    public var base: String
    /// Where images are kept (on disk, not under `base`); `image:` roots come from here.
    public var imageStore: ImageStore = .standard
    /// What set `base`, for error messages (`--state-dir`, `OFFSWITCH_RUN_DIR`).
    public var source: String

    /// `OFFSWITCH_RUN_DIR` overrides the default `/run/offswitch` (an absolute path).
    public static var standard: StatePaths {
        if let override = getenv("OFFSWITCH_RUN_DIR") {
            return StatePaths(base: String(cString: override), source: "OFFSWITCH_RUN_DIR")
        }
        return StatePaths(base: "/run/offswitch")
    }

    public init(base: String, source: String = "state directory") {
        self.base = base
        self.source = source
    }

    public var sandboxesDirectory: String { base + "/sandboxes" }
    public var rootfsDirectory: String { base + "/rootfs" }
    public func sandboxDirectory(_ id: String) -> String { sandboxesDirectory + "/" + id }

    /// Mount sources and leftovers are found by these paths later, from any working directory.
    public func validate() throws(OffswitchError) {
        guard base.hasPrefix("/"), !base.split(separator: "/").contains("..") else {
            throw OffswitchError(.invalidArgument, "\(source) \(base): needs an absolute path without '..'")
        }
    }

    func ensureBase() throws(OffswitchError) {
        try validate()
        try makeDirectory(base, mode: 0o711)
        try makeDirectory(sandboxesDirectory, mode: 0o700)
    }
}
