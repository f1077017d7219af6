import FoundationEssentials
import Glibc
import Hummingbird
import OffswitchCore
import OffswitchImages

/// `/v1/images`: the daemon's image store (docs/images.md). An upload is streamed to a file of the
/// store's own work directory a MiB at a time, bounded, then imported under the store's rules;
/// nothing a client sends names a host path.
struct ImageRoutes {
    let store: ImageStore
    /// What the store may hold once an upload is in (`offswitchd --max-image-bytes`).
    let quota: Int64
    /// The largest archive a client may upload.
    static let uploadLimit: Int64 = 8 << 30
    /// What one uploaded image may unpack to: a quarter of the embedded CLI's bound.
    static let unpackLimits = UnpackLimits(bytes: 8 << 30, entries: 1_000_000)

    /// A path segment with its percent-escapes decoded: a name's slashes come as %2F.
    static func decoded(_ segment: String) -> String {
        var bytes: [UInt8] = [], input = Array(segment.utf8), index = 0
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case 0x30...0x39: byte - 0x30
            case 0x41...0x46: byte - 0x37
            case 0x61...0x66: byte - 0x57
            default: nil
            }
        }
        while index < input.count {
            if input[index] == 0x25, index + 2 < input.count, let high = hex(input[index + 1]), let low = hex(input[index + 2]) {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func add(to table: RouteTable) {
        let store = self.store, quota = self.quota
        table.on(.post, "/v1/images") { request, _ in
            let tags = request.uri.queryParameters.getAll("tag").map { String($0) }
            for tag in tags { _ = try ImageReference(parsing: tag) }
            if let type = request.headers[.contentType], type.lowercased().hasPrefix("application/json") {
                return try await Self.pull(request, tags: tags, store: store, quota: quota)
            }
            if let length = request.headers[.contentLength].flatMap({ Int64($0) }), length > Self.uploadLimit {
                throw OffswitchError(.fileTooLarge, "image upload: \(length) bytes is over the \(Self.uploadLimit >> 30) GiB limit")
            }
            let upload = try await BlockingWork.run { () throws(OffswitchError) in try store.stagingFile("upload") }
            defer { close(upload.fd); unlink(upload.path) }
            var pending: [UInt8] = [], received: Int64 = 0
            func flush() async throws(OffswitchError) {
                let chunk = pending, fd = upload.fd, path = upload.path
                pending.removeAll(keepingCapacity: true)
                try await BlockingWork.run { () throws(OffswitchError) in
                    guard writeAll(fd, chunk) else { throw OffswitchError.system("write(\(path))", errno: errno) }
                }
            }
            for try await buffer in request.body {
                received += Int64(buffer.readableBytes)
                if received > Self.uploadLimit {
                    throw OffswitchError(.fileTooLarge, "image upload: over the \(Self.uploadLimit >> 30) GiB limit")
                }
                pending += buffer.readableBytesView
                if pending.count >= 1 << 20 { try await flush() }
            }
            try await flush()
            guard received > 0 else { throw OffswitchError(.invalidArgument, "image upload: the body is empty; send the archive") }
            var first: UInt8 = 0
            if pread(upload.fd, &first, 1, 0) == 1, first == UInt8(ascii: "{") {
                throw OffswitchError(.invalidArgument, "POST /v1/images: the body looks like JSON; a pull request is sent with Content-Type: application/json, an archive (an OCI layout's tar or a docker save archive) with any other type")
            }
            let path = upload.path
            let imported = try await BlockingWork.run { () throws(OffswitchError) in
                try store.importImages(from: path, tags: tags, limits: Self.unpackLimits, shownAs: "the uploaded archive", quota: quota)
            }
            return try RouteTable.json(imported.map(\.record), status: .created)
        }
        table.on(.get, "/v1/images") { _, _ in
            try RouteTable.json(await BlockingWork.run { () throws(OffswitchError) in store.list() })
        }
        table.on(.get, "/v1/images/:id") { _, context in
            let id = Self.decoded(try context.parameters.require("id"))
            return try RouteTable.json(try await BlockingWork.run { () throws(OffswitchError) in try store.resolve(id) })
        }
        table.on(.delete, "/v1/images/:id") { _, context in
            let id = Self.decoded(try context.parameters.require("id"))
            let removal = try await BlockingWork.run { () throws(OffswitchError) in try store.remove(id) }
            switch removal {
            case .untagged(let reference): return try RouteTable.json(["untagged": reference])
            case .deleted(let record): return try RouteTable.json(["deleted": record.id])
            }
        }
    }

    /// `{"pull": REF, "plain_http": false, "auth": {"username", "password"}}`: the image pulled by
    /// the daemon into its store, under the same limits and quota as an upload. The account is
    /// used for this pull only: neither kept nor logged.
    struct PullRequest: Codable {
        struct Auth: Codable { var username: String; var password: String }
        var pull: String
        var plain_http: Bool?
        var auth: Auth?
    }

    static func pull(_ request: Request, tags: [String], store: ImageStore, quota: Int64) async throws -> Response {
        var bytes: [UInt8] = []
        for try await buffer in request.body {
            bytes += buffer.readableBytesView
            if bytes.count > 64 << 10 { throw OffswitchError(.fileTooLarge, "image pull: the request body is over 64 KiB") }
        }
        let body = try OCI.decode(PullRequest.self, bytes, what: "POST /v1/images (a pull request)")
        let options = ImageStore.PullOptions(
            plainHTTP: body.plain_http ?? false,
            credentials: body.auth.map { RegistryCredentials(username: $0.username, password: $0.password, source: "the request's auth") },
            limits: unpackLimits, quota: quota)
        let pulled = try await BlockingWork.run { () throws(OffswitchError) in
            try store.pull(body.pull, tags: tags, options: options)
        }
        return try RouteTable.json([pulled.record], status: .created)
    }
}
