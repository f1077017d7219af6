import FoundationEssentials
import Glibc
public import OffswitchCore

/// A client of one repository on one registry, speaking the OCI distribution API
/// (`/v2/NAME/manifests/REF`, `/v2/NAME/blobs/DIGEST`). It answers a `401` the way Docker does:
/// a `Bearer` challenge is met with a token from the realm it names (asked with the account's
/// password when there is one, anonymously when not), a `Basic` one with the account itself.
/// Every redirect is followed by hand: `https` only (or `http` to loopback when plain HTTP was
/// asked for), and the registry's credentials never go to another host.
final class RegistryClient {
    let reference: ImageReference
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    let endpoint: String
    let plainHTTP: Bool
    let credentials: RegistryCredentials?
    /// What answered the last challenge: `Authorization: Bearer ...` or `Basic ...`.
    private var authorization: String?

    init(reference: ImageReference, plainHTTP: Bool, credentials: RegistryCredentials?) throws(OffswitchError) {
        self.reference = reference
        self.credentials = credentials
        let host = reference.registry == ImageReference.defaultRegistry ? "registry-1.docker.io" : reference.registry
        if plainHTTP && !Self.isLoopback(host: host) {
            throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): plain HTTP is only for a registry on loopback (localhost, 127.0.0.0/8, [::1]); \(reference.registry) is not, so it is reached over HTTPS")
        }
        self.plainHTTP = plainHTTP
        endpoint = (plainHTTP ? "http://" : "https://") + host
    }

    /// `localhost`, `127.x.y.z` or `[::1]`, with or without a port, and nothing else: a URL's
    /// user-info (`127.0.0.1:1@other.example`, where curl connects to other.example) is not loopback.
    static func isLoopback(host: String) -> Bool {
        var name = Substring(host.lowercased())
        func isPort(_ text: Substring) -> Bool { text.utf8.allSatisfy { (0x30...0x39).contains($0) } }
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            let after = name[name.index(after: close)...]
            guard after.isEmpty || (after.hasPrefix(":") && isPort(after.dropFirst())) else { return false }
            return name[name.index(after: name.startIndex)..<close] == "::1"
        }
        if let colon = name.firstIndex(of: ":") {
            guard isPort(name[name.index(after: colon)...]) else { return false }
            name = name[..<colon]
        }
        if name == "localhost" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The manifest or index that `reference` (a tag or a digest) names, with its media type and
    /// digest. Fetched by digest, its content must have that digest; fetched by tag, it must match
    /// the registry's `Docker-Content-Digest` when the registry sends one.
    func manifest(_ tagOrDigest: String) throws(OffswitchError) -> (bytes: [UInt8], mediaType: String?, digest: String) {
        let accept = "Accept: " + (OCI.indexTypes.sorted() + OCI.manifestTypes.sorted()).joined(separator: ", ")
        let response = try request("/v2/\(reference.repository)/manifests/\(tagOrDigest)", headers: [accept], sink: .memory(limit: 4 << 20),
                                   what: "manifest \(tagOrDigest)")
        let digest = "sha256:" + SHA256.hex(response.body)
        if tagOrDigest.hasPrefix("sha256:"), digest != tagOrDigest {
            throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): the registry's manifest \(tagOrDigest) has content of digest \(digest)")
        }
        if let said = response.header("Docker-Content-Digest"), said.hasPrefix("sha256:"), said != digest {
            throw OffswitchError(.invalidArgument, "image pull \(reference.familiar): manifest \(tagOrDigest) has content of digest \(digest), the registry's Docker-Content-Digest says \(said)")
        }
        // `Content-Type: ;` or an empty one has no type (and must not trap).
        let type = response.header("Content-Type").map { String($0.prefix { $0 != ";" }.filter { $0 != " " && $0 != "\t" }).lowercased() }
            .flatMap { $0.isEmpty ? nil : $0 }
        return (response.body, type, digest)
    }

    /// A blob into `fd`, at most `size` bytes (its descriptor's). Its digest is checked by who
    /// reads it (the layer's unpacking, the configuration's decoding).
    func blob(_ digest: String, size: Int64, into fd: Int32, progress: ((Int64) -> Void)?) throws(OffswitchError) {
        _ = try request("/v2/\(reference.repository)/blobs/\(digest)", headers: [], sink: .file(fd: fd, limit: size),
                        what: "blob \(digest)", progress: progress)
    }

    // MARK: requests

    private func request(_ path: String, headers: [String], sink: HTTPTransfer.Sink, what: String,
                         progress: ((Int64) -> Void)? = nil) throws(OffswitchError) -> HTTPTransfer.Response {
        var url = endpoint + path
        var challenged = false
        var hops = 0
        while true {
            let sameHost = Self.origin(of: url) == Self.origin(of: endpoint)
            var sent = headers
            if sameHost, let authorization { sent.append(authorization) }
            if case .file(let fd, _) = sink { _ = ftruncate(fd, 0); _ = lseek(fd, 0, SEEK_SET) }
            let response: HTTPTransfer.Response
            do throws(OffswitchError) {
                response = try HTTPTransfer.get(url, headers: sent, sink: sink, plainHTTP: plainHTTP, progress: progress)
            } catch {
                var hint = ""
                if !plainHTTP, Self.isLoopback(host: reference.registry), error.message.contains("SSL") {
                    hint = " (a registry on loopback that speaks plain HTTP needs --plain-http)"
                }
                throw OffswitchError(error.code, "image pull \(reference.familiar): \(what): \(error.message)\(hint)", errno: error.errno)
            }
            switch response.status {
            case 200..<300:
                return response
            case 301, 302, 303, 307, 308:
                hops += 1
                guard hops <= 5, let location = response.header("Location") else {
                    throw failure(response, what: what, detail: hops > 5 ? "more than 5 redirects" : "a redirect without a Location")
                }
                url = try redirected(from: url, to: location, what: what)
            case 401 where !challenged && sameHost:
                challenged = true
                authorization = try answer(challenges: response.headers("WWW-Authenticate"), what: what)
            default:
                throw failure(response, what: what, detail: nil)
            }
        }
    }

    /// `scheme://host[:port]` of a URL, lowercased; what "the same host" means for credentials.
    static func origin(of url: String) -> String {
        guard let scheme = url.firstRange(of: "://") else { return "" }
        let rest = url[scheme.upperBound...]
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return (url[..<scheme.upperBound] + host).lowercased()
    }

    private func redirected(from url: String, to location: String, what: String) throws(OffswitchError) -> String {
        let next: String
        if location.contains("://") {
            next = location
        } else if location.hasPrefix("/") {
            next = Self.origin(of: url) + location
        } else {
            throw OffswitchError(.registryFailed, "image pull \(reference.familiar): \(what): a redirect to \"\(Self.shown(location))\", which is not an absolute URL or path")
        }
        let lowered = next.lowercased()
        if lowered.hasPrefix("https://") { return next }
        let host = String(Self.origin(of: next).dropFirst("http://".count))
        guard plainHTTP, lowered.hasPrefix("http://"), Self.isLoopback(host: host) else {
            throw OffswitchError(.registryFailed, "image pull \(reference.familiar): \(what): the registry redirects to \(Self.shown(next)), which is not HTTPS (plain HTTP only to loopback, when asked for)")
        }
        return next
    }

    /// The `Authorization` header that meets one of a 401's challenges.
    private func answer(challenges: [String], what: String) throws(OffswitchError) -> String {
        let parsed = challenges.flatMap { AuthChallenge.parse($0) }
        if let bearer = parsed.first(where: { $0.scheme == "bearer" }) {
            return "Authorization: Bearer " + (try token(bearer, what: what))
        }
        if parsed.contains(where: { $0.scheme == "basic" }) {
            guard let credentials else {
                throw OffswitchError(.registryUnauthorized, "image pull \(reference.familiar): \(reference.registry) asks for a user name and password, and there are none for it (docker login \(reference.registry), or --auth-file)")
            }
            return credentials.basicHeader
        }
        throw OffswitchError(.registryUnauthorized, "image pull \(reference.familiar): \(what): the registry answered 401 with no challenge Offswitch can meet (\(Self.shown(challenges.joined(separator: "; "))))")
    }

    /// A token from a `Bearer` challenge's realm, for pulling this repository.
    private func token(_ challenge: AuthChallenge, what: String) throws(OffswitchError) -> String {
        guard let realm = challenge.parameters["realm"], !realm.isEmpty else {
            throw OffswitchError(.registryFailed, "image pull \(reference.familiar): a Bearer challenge without a realm")
        }
        let lowered = realm.lowercased()
        let realmHost = String(Self.origin(of: realm).drop { $0 != "/" }.dropFirst(2))
        guard lowered.hasPrefix("https://") || (plainHTTP && lowered.hasPrefix("http://") && Self.isLoopback(host: realmHost)) else {
            throw OffswitchError(.registryFailed, "image pull \(reference.familiar): the token realm \(Self.shown(realm)) is not HTTPS; no password is sent to it")
        }
        var query: [String] = []
        if let service = challenge.parameters["service"] { query.append("service=" + Self.escaped(service)) }
        query.append("scope=" + Self.escaped(challenge.parameters["scope"] ?? "repository:\(reference.repository):pull"))
        let url = realm + (realm.contains("?") ? "&" : "?") + query.joined(separator: "&")
        let response = try HTTPTransfer.get(url, headers: credentials.map { [$0.basicHeader] } ?? [], sink: .memory(limit: 1 << 20), plainHTTP: plainHTTP)
        guard response.status == 200 else {
            if response.status == 401 || response.status == 403 {
                throw OffswitchError(.registryUnauthorized, "image pull \(reference.familiar): the token service \(Self.origin(of: realm)) refused "
                    + (credentials.map { "user \($0.username)'s credentials (from \($0.source))" } ?? "an anonymous pull (there are no credentials for \(reference.registry): docker login, or --auth-file)")
                    + " with \(response.status)\(Self.registryMessage(response.body).map { ": \($0)" } ?? "")")
            }
            throw failure(response, what: "token for \(what)", detail: nil)
        }
        struct Token: Codable { var token: String?; var access_token: String? }
        let decoded = try OCI.decode(Token.self, response.body, what: "the token service's answer")
        guard let token = decoded.token ?? decoded.access_token, !token.isEmpty,
              token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw OffswitchError(.registryFailed, "image pull \(reference.familiar): the token service's answer holds no usable token")
        }
        return token
    }

    static func escaped(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            let unreserved = (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte) || [0x2d, 0x2e, 0x5f, 0x7e].contains(byte)
            out += unreserved ? String(UnicodeScalar(byte)) : "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 15, radix: 16, uppercase: true)
        }
        return out
    }

    /// The registry's own words from an error body (`{"errors": [{"code", "message"}]}`).
    static func registryMessage(_ body: [UInt8]) -> String? {
        struct Errors: Codable { struct Item: Codable { var code: String?; var message: String? }; var errors: [Item]? }
        guard let errors = try? OCI.decode(Errors.self, body, what: "error"), let items = errors.errors, !items.isEmpty else { return nil }
        return shown(items.prefix(3).map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; "), limit: 300)
    }

    /// Text a registry chose (its error messages, a Location, a media type), made safe to print:
    /// at most `limit` characters, control characters (an escape sequence, a CR that would
    /// overwrite the line) written as `\u{1B}`.
    static func shown(_ text: String, limit: Int = 200) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private func failure(_ response: HTTPTransfer.Response, what: String, detail: String?) -> OffswitchError {
        let said = detail ?? Self.registryMessage(response.body) ?? "no error document"
        let code: OffswitchError.Code
        switch response.status {
        case 401, 403: code = .registryUnauthorized
        case 404: code = .notFound
        default: code = .registryFailed
        }
        var message = "image pull \(reference.familiar): \(what): \(reference.registry) answered \(response.status) (\(said))"
        if response.status == 401, let credentials {
            message += "; user \(credentials.username)'s credentials from \(credentials.source) were refused"
        } else if response.status == 401 || response.status == 403 {
            message += credentials == nil ? "; there are no credentials for \(reference.registry) (docker login, or --auth-file)" : ""
        }
        return OffswitchError(code, message)
    }
}

/// One challenge of a `WWW-Authenticate` header (RFC 7235): `Bearer realm="...",service="..."`.
/// A header may hold several, separated by commas like their parameters.
struct AuthChallenge: Equatable {
    /// Lowercased: `bearer`, `basic`.
    var scheme: String
    /// Parameter names lowercased, values unquoted.
    var parameters: [String: String]

    static func parse(_ header: String) -> [AuthChallenge] {
        var challenges: [AuthChallenge] = []
        let text = Array(header.unicodeScalars)
        var index = 0
        func skipSpace() { while index < text.count && (text[index] == " " || text[index] == "\t" || text[index] == ",") { index += 1 } }
        func token() -> String {
            var out = ""
            while index < text.count, text[index] != " ", text[index] != "\t", text[index] != ",", text[index] != "=" {
                out.unicodeScalars.append(text[index]); index += 1
            }
            return out
        }
        while true {
            skipSpace()
            guard index < text.count else { break }
            let scheme = token()
            guard !scheme.isEmpty else { index += 1; continue }
            var challenge = AuthChallenge(scheme: scheme.lowercased(), parameters: [:])
            // Parameters: name=value or name="quoted", until a token not followed by '='.
            while true {
                skipSpace()
                let start = index
                let name = token()
                var probe = index
                while probe < text.count && (text[probe] == " " || text[probe] == "\t") { probe += 1 }
                guard !name.isEmpty, probe < text.count, text[probe] == "=" else { index = start; break }
                index = probe + 1
                while index < text.count && (text[index] == " " || text[index] == "\t") { index += 1 }
                var value = ""
                if index < text.count && text[index] == "\"" {
                    index += 1
                    while index < text.count && text[index] != "\"" {
                        if text[index] == "\\" && index + 1 < text.count { index += 1 }
                        value.unicodeScalars.append(text[index]); index += 1
                    }
                    index += 1
                } else {
                    while index < text.count && text[index] != "," && text[index] != " " { value.unicodeScalars.append(text[index]); index += 1 }
                }
                challenge.parameters[name.lowercased()] = value
            }
            challenges.append(challenge)
        }
        return challenges
    }
}
