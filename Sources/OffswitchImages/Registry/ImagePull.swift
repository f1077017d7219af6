import Glibc
public import OffswitchCore

/// Pulling an image from a registry into the store: the manifest the reference names (an index
/// resolved to this host's platform), its configuration and each layer the store lacks, under the
/// same checks and the same commit as an import. A layer already in the store is not downloaded;
/// two pulls of one image download and unpack each layer once (the layer's lock).
extension ImageStore {
    public struct PullOptions: Sendable {
        /// `http://`, allowed only for a registry on loopback (a test's, a local mirror).
        public var plainHTTP = false
        /// The account to pull with; nil for an anonymous pull.
        public var credentials: RegistryCredentials?
        public var limits = UnpackLimits.standard
        /// What the store may hold once the image is in; nil for no bound (the CLI, as root).
        public var quota: Int64?

        public init(plainHTTP: Bool = false, credentials: RegistryCredentials? = nil, limits: UnpackLimits = .standard, quota: Int64? = nil) {
            self.plainHTTP = plainHTTP
            self.credentials = credentials
            self.limits = limits
            self.quota = quota
        }
    }

    /// Pulls `text` (`alpine:3.20`, `localhost:5000/app@sha256:...`) and names the image by it and
    /// by `tags`. `progress` receives one line per step and, during a download, every 8 MiB.
    public func pull(_ text: String, tags: [String] = [], options: PullOptions = PullOptions(),
                     progress: (String) -> Void = { _ in }) throws(OffswitchError) -> Imported {
        // The download's progress is kept by curl's transfer for its duration only.
        do throws(OffswitchError) {
            return try withoutActuallyEscaping(progress) { (progress) throws(OffswitchError) in
                try pull(text, tags: tags, options: options, escapingProgress: progress)
            }
        } catch where !error.message.hasPrefix("image pull") {
            // What the shared import path says (a layer refused, a document invalid) names the pull.
            throw OffswitchError(error.code, "image pull \(text.prefix(200)): \(error.message)", errno: error.errno)
        }
    }

    private func pull(_ text: String, tags: [String], options: PullOptions,
                      escapingProgress progress: @escaping (String) -> Void) throws(OffswitchError) -> Imported {
        let reference = try ImageReference(parsing: text)
        let extra = try tags.map { (tag) throws(OffswitchError) in try ImageReference(parsing: tag).description }
        let serialized = try quotaLock(options.quota)
        defer { withExtendedLifetime(serialized) {} }
        var budget = ImportBudget(left: options.quota.map { $0 - usedBytes() }, quota: options.quota)
        if let left = budget.left, let quota = options.quota, left <= 0 {
            throw OffswitchError(.capacityReached, "image pull \(reference.familiar): the image store holds \(usedBytes()) bytes, its quota is \(quota) (remove images and prune)")
        }
        let lock = try storeLock(exclusive: false)
        defer { withExtendedLifetime(lock) {} }
        let client = try RegistryClient(reference: reference, plainHTTP: options.plainHTTP, credentials: options.credentials)
        progress("pulling \(reference.familiar) from \(client.endpoint)" + (options.credentials.map { " as \($0.username)" } ?? ""))

        var fetched = try client.manifest(reference.digest ?? reference.tag ?? "latest")
        var type = fetched.mediaType.flatMap { OCI.indexTypes.contains($0) || OCI.manifestTypes.contains($0) ? $0 : nil } ?? mediaType(of: fetched.bytes)
        if OCI.indexTypes.contains(type) {
            let index = try OCI.decode(OCI.Index.self, fetched.bytes, what: "image index \(fetched.digest)")
            let chosen = try index.forHost(what: "image pull \(reference.familiar): image index \(fetched.digest)")
            // Fetched by a sha256 digest, the manifest is checked against it; any other would not be.
            _ = try OCI.hexOfDigest(chosen.digest, what: "image pull \(reference.familiar): image index \(fetched.digest)")
            progress("image index \(fetched.digest.prefix(19)): \(index.manifests.count) manifests, taking \(RegistryClient.shown(chosen.platform?.description ?? "?", limit: 80)) \(chosen.digest.prefix(19))")
            fetched = try client.manifest(chosen.digest)
            guard Int64(fetched.bytes.count) == chosen.size else {
                throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): manifest \(chosen.digest) is \(fetched.bytes.count) bytes, the index says \(chosen.size)")
            }
            type = fetched.mediaType.flatMap { OCI.manifestTypes.contains($0) ? $0 : nil } ?? mediaType(of: fetched.bytes)
        }
        guard OCI.manifestTypes.contains(type) else {
            throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): manifest \(fetched.digest) has media type \(type), neither an image manifest nor an index (a Docker schema 1 image is not supported)")
        }
        let manifest = try OCI.decode(OCI.Manifest.self, fetched.bytes, what: "image manifest \(fetched.digest)")
        _ = try OCI.hexOfDigest(manifest.config.digest, what: "image pull \(reference.familiar): manifest \(fetched.digest), its configuration")
        guard manifest.layers.count <= Self.layerLimit else {
            throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): manifest \(fetched.digest) has \(manifest.layers.count) layers; a sandbox's root stacks at most \(Self.layerLimit)")
        }
        var sizes: [String: (index: Int, size: Int64)] = [manifest.config.digest: (0, manifest.config.size)]
        for (index, layer) in manifest.layers.enumerated() {
            _ = try OCI.hexOfDigest(layer.digest, what: "image pull \(reference.familiar): manifest \(fetched.digest), layer \(index + 1)")
            if layer.size > options.limits.bytes {
                throw OffswitchError(.fileTooLarge, "image pull \(reference.familiar): layer \(layer.digest) is \(layer.size) bytes compressed, over the \(options.limits.bytes)-byte layer limit")
            }
            sizes[layer.digest] = (index + 1, layer.size)
        }
        let references = ([reference.description] + extra).sorted()
        return try commit(manifest: manifest, manifestDigest: fetched.digest, references: references,
                                source: "registry \(reference.registry)", blob: { (digest) throws(OffswitchError) in
            if digest == fetched.digest {
                // The manifest itself, stored beside the configuration.
                let staged = try self.stagingFile("manifest")
                unlink(staged.path)
                guard writeAll(staged.fd, fetched.bytes), lseek(staged.fd, 0, SEEK_SET) == 0 else {
                    let error = errno
                    close(staged.fd)
                    throw OffswitchError.system("write(\(staged.path))", errno: error)
                }
                return staged.fd
            }
            guard let known = sizes[digest] else {
                throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): blob \(digest) is not in manifest \(fetched.digest)")
            }
            let what = known.index == 0 ? "configuration" : "layer \(known.index)/\(manifest.layers.count) blob"
            if known.index > 0 { progress("\(what) \(digest.prefix(19)): downloading \(Self.mebibytes(known.size))") }
            let staged = try self.stagingFile("blob")
            unlink(staged.path)
            do throws(OffswitchError) {
                try client.blob(digest, size: known.size, into: staged.fd, progress: known.index == 0 ? nil : { received in
                    progress("\(what) \(digest.prefix(19)): \(Self.mebibytes(received)) of \(Self.mebibytes(known.size))")
                })
            } catch {
                close(staged.fd)
                throw error
            }
            guard lseek(staged.fd, 0, SEEK_SET) == 0 else {
                let error = errno
                close(staged.fd)
                throw OffswitchError.system("lseek(\(staged.path))", errno: error)
            }
            return staged.fd
        }, progress: progress, limits: options.limits, budget: &budget)
    }

    static func mebibytes(_ bytes: Int64) -> String {
        bytes < 1 << 20 ? "\(bytes) bytes" : "\(bytes >> 20) MiB"
    }
}
