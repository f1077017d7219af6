import FoundationEssentials
public import OffswitchCore

/// The JSON documents of an OCI image (image-spec 1.1) and of Docker's equivalents, as far as
/// Offswitch reads them. Unknown fields are ignored; missing required ones are errors naming the
/// document.
public enum OCI {
    public static let indexTypes: Set<String> = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
    public static let manifestTypes: Set<String> = [
        "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json",
    ]
    /// The annotation naming a manifest in an image layout's index.json.
    public static let refName = "org.opencontainers.image.ref.name"

    public struct Platform: Codable, Sendable, Equatable {
        public var architecture: String
        public var os: String
        public var variant: String?

        public init(architecture: String, os: String, variant: String? = nil) {
            self.architecture = architecture
            self.os = os
            self.variant = variant
        }

        /// This host's platform in OCI's words (`linux/amd64`, `linux/arm64`).
        public static var host: Platform {
            #if arch(x86_64)
            Platform(architecture: "amd64", os: "linux")
            #elseif arch(arm64)
            Platform(architecture: "arm64", os: "linux", variant: "v8")
            #else
            Platform(architecture: "unknown", os: "linux")
            #endif
        }

        public var description: String { "\(os)/\(architecture)" + (variant.map { "/\($0)" } ?? "") }
    }

    public struct Descriptor: Codable, Sendable, Equatable {
        public var mediaType: String?
        public var digest: String
        public var size: Int64
        public var annotations: [String: String]?
        public var platform: Platform?
    }

    public struct Index: Codable, Sendable {
        public var schemaVersion: Int
        public var mediaType: String?
        public var manifests: [Descriptor]

        /// The manifest for this host's platform: its os and architecture, the same variant if
        /// one has it. `what` names the index in the error when none fits.
        func forHost(what: String) throws(OffswitchError) -> Descriptor {
            let host = Platform.host
            let candidates = manifests.filter { $0.platform.map { $0.os == host.os && $0.architecture == host.architecture } ?? false }
            guard let chosen = candidates.first(where: { $0.platform?.variant == host.variant }) ?? candidates.first else {
                let offered = manifests.compactMap { $0.platform?.description }.joined(separator: ", ")
                throw OffswitchError(.invalidArgument, "\(what): no manifest for \(host.description) (it has \(offered.isEmpty ? "none with a platform" : offered))")
            }
            return chosen
        }
    }

    public struct Manifest: Codable, Sendable {
        public var schemaVersion: Int
        public var mediaType: String?
        public var config: Descriptor
        public var layers: [Descriptor]
    }

    /// An image's configuration blob: what Offswitch applies (`config`) and what identifies its
    /// layers (`rootfs.diff_ids`, the digests of the uncompressed tars, bottom first).
    public struct ImageConfig: Codable, Sendable {
        public struct Config: Codable, Sendable, Equatable {
            public var User: String?
            public var Env: [String]?
            public var WorkingDir: String?
            public var Entrypoint: [String]?
            public var Cmd: [String]?
            public var Labels: [String: String]?
        }

        public struct RootFS: Codable, Sendable {
            public var type: String
            public var diff_ids: [String]
        }

        public var architecture: String?
        public var os: String?
        public var variant: String?
        public var created: String?
        public var config: Config?
        public var rootfs: RootFS
    }

    /// One entry of a `docker save` archive's manifest.json.
    public struct DockerArchiveEntry: Codable, Sendable {
        public var Config: String
        public var RepoTags: [String]?
        public var Layers: [String]
    }

    /// Decodes `bytes` as `type`, naming `what` (a path or a digest) in the error.
    public static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws(OffswitchError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw OffswitchError(.invalidArgument, "\(what): not a valid \(T.self) document: \(error)")
        }
    }

    /// `sha256:` and 64 lowercase hex digits; anything else (another algorithm, a path in disguise)
    /// is refused before it is used as a file name.
    public static func hexOfDigest(_ digest: String, what: String) throws(OffswitchError) -> String {
        guard digest.hasPrefix("sha256:") else {
            throw OffswitchError(.invalidArgument, "\(what): digest \"\(digest.prefix(80))\" is not sha256:HEX (only sha256 is supported)")
        }
        let hex = String(digest.dropFirst(7))
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw OffswitchError(.invalidArgument, "\(what): digest \"\(digest.prefix(80))\" is not sha256 and 64 lowercase hex digits")
        }
        return hex
    }
}
