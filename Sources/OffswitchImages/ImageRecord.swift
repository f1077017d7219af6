import FoundationEssentials
public import OffswitchCore

/// What the store knows of one image (`images/HEX.json`, format `offswitch.image/1`,
/// docs/images.md): its id (the digest of its configuration, as Docker's), the references that
/// name it, its layers bottom first, and the part of its configuration Offswitch applies.
public struct ImageRecord: Codable, Sendable, Equatable {
    public static let formatName = "offswitch.image/1"

    public struct Layer: Codable, Sendable, Equatable {
        /// sha256 of the uncompressed tar: the layer's name in the store (`layers/sha256/HEX`).
        public var diff_id: String
        /// The blob's digest as the manifest named it (nil for a `docker save` layer, whose blob is
        /// the uncompressed tar itself).
        public var digest: String?
        /// Uncompressed bytes of its files.
        public var size: Int64
    }

    public var format: String
    public var id: String
    public var references: [String]
    /// The manifest's digest, when the image came with one (OCI layout, registry).
    public var manifest: String?
    public var platform: String
    public var layers: [Layer]
    public var config: OCI.ImageConfig.Config?
    public var created: String?
    /// Where it came from: `oci-layout PATH`, `docker-archive PATH`.
    public var source: String
    public var imported: String

    public var hex: String { String(id.dropFirst(7)) }
    public var size: Int64 { layers.reduce(0) { $0 + $1.size } }

    public var json: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

/// What a sandbox applies from an image's configuration (Docker's rules): `Env` under the
/// command's own, `WorkingDir` when the command names none, `User` when neither the command nor
/// the sandbox's creator chose one. `Entrypoint` and `Cmd` are not run (PID 1 is offswitch-init).
public struct ImageDefaults: Sendable, Equatable, Codable {
    public var environment: [String: String]
    public var workingDirectory: String?
    /// The image's `User` as written (`1000`, `user`, `0:0`), resolved at creation.
    public var user: SandboxUser?

    public init(environment: [String: String] = [:], workingDirectory: String? = nil, user: SandboxUser? = nil) {
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
    }
}
