import ArgumentParser
import Glibc
import OffswitchCore
import OffswitchImages

/// `offswitch image import|ls|inspect|rm|prune`: the image store (docs/images.md).
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Pull, import, list, inspect and remove OCI images: sandbox roots (--image REF).",
        discussion: """
            Images live in a root-only store on disk: OFFSWITCH_IMAGE_STORE or --store, else \
            /var/lib/offswitch/images. Each layer is unpacked once and shared, read-only, by every \
            sandbox of every image that has it. Needs root. Format and rules: docs/images.md.
            """,
        subcommands: [Pull.self, Import.self, Ls.self, Inspect.self, Rm.self, Prune.self])

    struct StoreOptions: ParsableArguments {
        @Option(name: .long, help: "The image store's directory (default: OFFSWITCH_IMAGE_STORE or /var/lib/offswitch/images).")
        var store: String?

        var imageStore: ImageStore { store.map { ImageStore(root: $0, source: "--store") } ?? .standard }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import images from an OCI image layout (a directory or a tar) or a docker save archive.",
            discussion: """
                Every digest is checked on the way in and every layer is unpacked under the \
                store's rules (no path outside it, no device node, bounded size); a refused \
                archive names the entry and leaves nothing in the store.

                Examples:
                  offswitch image import ./alpine-oci --tag alpine:3.20
                  skopeo copy docker://... oci-archive:app.tar && offswitch image import app.tar --tag app:1
                  docker save app:1 -o app.tar && offswitch image import app.tar
                """)

        @Argument(help: "An OCI image layout (directory or tar, maybe compressed) or a docker save archive.")
        var path: String

        @Option(name: .long, help: "Name the image (repeatable; only when the archive holds one image).")
        var tag: [String] = []

        @Flag(name: .long, help: "Print the imported images' records as JSON (offswitch.image/1) instead of lines.")
        var json = false

        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            let imported = try translated { () throws(OffswitchError) in
                try options.imageStore.importImages(from: path, tags: tag, progress: { line in
                    StandardStreams.err("offswitch: \(line)\n")
                })
            }
            if json {
                StandardStreams.out(imported.map { String(decoding: $0.record.json, as: UTF8.self) }.joined(separator: "\n") + "\n")
                return
            }
            for image in imported {
                let made = image.unpacked.filter { $0 }.count
                let name = image.record.references.first.map { "\($0) " } ?? ""
                StandardStreams.out("imported \(name)\(image.record.id) (\(image.record.layers.count) layers, \(made) unpacked, \(image.unpacked.count - made) already in the store)\(image.record.references.isEmpty ? "; no name: give one with --tag" : "")\n")
            }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pull an image from a registry (OCI distribution API), with no Docker daemon.",
            discussion: """
                An image index (a multi-platform image) is resolved to this host's platform. Every \
                digest is checked and every layer unpacked under the same rules as an import; a \
                layer the store has is not downloaded again. Credentials are Docker's: \
                $DOCKER_CONFIG/config.json, else ~/.docker/config.json (auths, credHelpers, \
                credsStore), as `docker login` writes them; with none, the pull is anonymous.

                Examples:
                  offswitch image pull debian:12
                  offswitch image pull ghcr.io/org/app:v1 --auth-file ./ci-auth.json
                  offswitch image pull --plain-http localhost:5000/app:test
                """)

        @Argument(help: "An image reference: alpine:3.20, docker.io/library/debian:12, localhost:5000/app@sha256:HEX.")
        var reference: String

        @Option(name: .long, help: "Also name the image so (repeatable).")
        var tag: [String] = []

        @Flag(name: .long, help: "Speak plain HTTP, not HTTPS: only for a registry on loopback (localhost, 127.0.0.0/8, [::1]).")
        var plainHTTP = false

        @Option(name: .long, help: "Read credentials from this Docker config.json instead of $DOCKER_CONFIG/config.json or ~/.docker/config.json.")
        var authFile: String?

        @Flag(name: .long, help: "Print the image's record as JSON (offswitch.image/1) instead of a line.")
        var json = false

        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            let pulled = try translated { () throws(OffswitchError) in
                let reference = try ImageReference(parsing: self.reference)
                let credentials = try DockerConfig.load(path: authFile).credentials(for: reference.registry)
                return try options.imageStore.pull(self.reference, tags: tag, options: .init(plainHTTP: plainHTTP, credentials: credentials),
                                                   progress: { line in StandardStreams.err("offswitch: \(line)\n") })
            }
            if json {
                StandardStreams.out(String(decoding: pulled.record.json, as: UTF8.self) + "\n")
                return
            }
            let made = pulled.unpacked.filter { $0 }.count
            let name = pulled.record.references.first.map { (try? ImageReference(parsing: $0).familiar) ?? $0 } ?? pulled.record.id
            StandardStreams.out("pulled \(name) \(pulled.record.id) (\(pulled.record.layers.count) layers, \(made) downloaded and unpacked, \(pulled.unpacked.count - made) already in the store)\n")
        }
    }

    struct Ls: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the store's images.")
        @Flag(name: .long, help: "Print a JSON array of records (offswitch.image/1).") var json = false
        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            let images = options.imageStore.list()
            if json {
                StandardStreams.out("[" + images.map { String(decoding: $0.json, as: UTF8.self) }.joined(separator: ",\n") + "]\n")
                return
            }
            StandardStreams.out(pad("IMAGE ID", 14) + pad("NAME", 48) + pad("LAYERS", 8) + "SIZE\n")
            for image in images {
                let names = image.references.isEmpty ? ["<none>"] : image.references.map { (try? ImageReference(parsing: $0).familiar) ?? $0 }
                for name in names {
                    StandardStreams.out(pad(String(image.hex.prefix(12)), 14) + pad(name, 48) + pad("\(image.layers.count)", 8) + "\(image.size >> 20) MiB\n")
                }
            }
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show an image's record: layers, platform, and the configuration (Env, WorkingDir, User, Entrypoint, Cmd).",
            discussion: "Entrypoint and Cmd are shown, never run: a sandbox's PID 1 is offswitch-init.")
        @Argument(help: "A name (alpine:3.20) or an id (sha256:HEX, or 12 or more of its hex digits).") var image: String
        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            let record = try translated { () throws(OffswitchError) in try options.imageStore.resolve(image) }
            StandardStreams.out(record.json + [0x0a])
        }
    }

    struct Rm: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a name, or an image (by id or its last name); its layers go at the next prune.",
            discussion: "An image a sandbox uses is not removed (error image_in_use).")
        @Argument(help: "Names or ids.") var images: [String]
        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            for image in images {
                switch try translated({ () throws(OffswitchError) in try options.imageStore.remove(image) }) {
                case .untagged(let reference): StandardStreams.out("untagged \(reference)\n")
                case .deleted(let record): StandardStreams.out("deleted \(record.id)\n")
                }
            }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the layers and blobs no image references, and leftover work.")
        @OptionGroup var options: StoreOptions

        func run() throws {
            try requireRoot()
            let result = try translated { () throws(OffswitchError) in try options.imageStore.prune() }
            StandardStreams.out("removed \(result.layers) layers and \(result.blobs) blobs (\(result.bytes >> 20) MiB)\n")
            for path in result.failed { StandardStreams.err("offswitch: could not remove \(path)\n") }
            if !result.failed.isEmpty { throw ExitCode(1) }
        }
    }
}

private func requireRoot() throws {
    if geteuid() != 0 { throw CLIError(OffswitchError(.notRoot, "offswitch image: the image store is root-only; run as root")) }
}
