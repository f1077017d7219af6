import CCurl
import Glibc
import OffswitchCore

/// One HTTP request, made with libcurl's easy interface: TLS with the system's certificates,
/// proxies from the environment (`https_proxy`, `no_proxy`). curl follows no redirect and sends no
/// credential of its own: `RegistryClient` checks every hop and decides what each carries.
struct HTTPTransfer {
    /// Where a response's body goes: memory, at most `limit` bytes (manifests, tokens, errors), or
    /// a file (blobs), at most `limit` bytes; past it the transfer stops and is an error.
    enum Sink {
        case memory(limit: Int)
        case file(fd: Int32, limit: Int64)
    }

    struct Response {
        var status: Int
        /// The headers of the last response (not of an interim `100 Continue`), in order.
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var bytes: Int64

        /// The first header of that name (case-insensitive).
        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }

        /// All headers of that name, in order (`WWW-Authenticate` may come more than once).
        func headers(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        }
    }

    /// curl_global_init once per process, before the first handle (it is not safe to race).
    private static let initialized: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    /// A GET (or HEAD) of `url` with `headers` (`Name: value`). `plainHTTP` allows `http://`, which
    /// only a loopback registry gets (RegistryClient decides). `progress` is told the bytes
    /// received so far, every 8 MiB.
    static func get(_ url: String, headers: [String], sink: Sink, plainHTTP: Bool, head: Bool = false,
                    progress: ((Int64) -> Void)? = nil) throws(OffswitchError) -> Response {
        let stage = "\(head ? "HEAD" : "GET") \(url)"
        guard initialized == CURLE_OK else {
            throw OffswitchError(.missingFeature, "\(stage): libcurl did not initialise: \(String(cString: curl_easy_strerror(initialized)))")
        }
        guard let handle = curl_easy_init() else { throw OffswitchError(.system, "\(stage): curl_easy_init failed") }
        defer { curl_easy_cleanup(handle) }
        let state = TransferState(sink: sink, progress: progress)
        let user = Unmanaged.passUnretained(state).toOpaque()
        var list: UnsafeMutablePointer<curl_slist>?
        for header in headers { list = curl_slist_append(list, header) }
        defer { curl_slist_free_all(list) }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            var setup: [CURLcode] = [
                ccurl_set_string(handle, CURLOPT_URL, url),
                ccurl_set_long(handle, CURLOPT_NOSIGNAL, 1),
                // Only these schemes, on the first request and (were it ever on) on a redirect.
                ccurl_set_string(handle, CURLOPT_PROTOCOLS_STR, plainHTTP ? "http,https" : "https"),
                ccurl_set_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, plainHTTP ? "http,https" : "https"),
                ccurl_set_long(handle, CURLOPT_FOLLOWLOCATION, 0),
                ccurl_set_long(handle, CURLOPT_CONNECTTIMEOUT, 30),
                // A registry that stalls (under 1 KiB/s for a minute) ends the transfer.
                ccurl_set_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1024),
                ccurl_set_long(handle, CURLOPT_LOW_SPEED_TIME, 60),
                ccurl_set_long(handle, CURLOPT_NOBODY, head ? 1 : 0),
                ccurl_set_string(handle, CURLOPT_USERAGENT, "offswitch/\(OffswitchVersion.current)"),
                ccurl_set_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(list)),
                ccurl_set_pointer(handle, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(buffer.baseAddress)),
                ccurl_set_callback(handle, CURLOPT_WRITEFUNCTION, { data, size, count, user in
                    let state = Unmanaged<TransferState>.fromOpaque(user!).takeUnretainedValue()
                    return state.body(data, size * count)
                }),
                ccurl_set_pointer(handle, CURLOPT_WRITEDATA, user),
                ccurl_set_callback(handle, CURLOPT_HEADERFUNCTION, { data, size, count, user in
                    let state = Unmanaged<TransferState>.fromOpaque(user!).takeUnretainedValue()
                    return state.header(data, size * count)
                }),
                ccurl_set_pointer(handle, CURLOPT_HEADERDATA, user),
            ]
            switch sink {
            case .memory:
                setup.append(ccurl_set_long(handle, CURLOPT_TIMEOUT, 120))
            case .file(_, let limit):
                // A blob has 10 minutes, and one more second per 100 KiB it may hold: a registry
                // trickling just above the stall limit does not hold a pull for days.
                setup.append(ccurl_set_long(handle, CURLOPT_TIMEOUT, Int(600 + limit / 102_400)))
            }
            if let failed = setup.first(where: { $0 != CURLE_OK }) { return failed }
            return curl_easy_perform(handle)
        }
        if code != CURLE_OK {
            if state.overLimit { throw OffswitchError(.fileTooLarge, "\(stage): the response is over its limit of \(state.limit) bytes") }
            if state.writeErrno != 0 { throw OffswitchError.system("\(stage): writing the response", errno: state.writeErrno) }
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let why = String(cString: curl_easy_strerror(code)) + (detail.isEmpty ? "" : ": \(detail)")
            throw OffswitchError(.registryFailed, "\(stage): \(why)")
        }
        var status = 0
        _ = ccurl_info_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return Response(status: status, headers: state.headers, body: state.memory, bytes: state.written)
    }
}

/// What curl's callbacks fill in; passed to them as their user pointer.
private final class TransferState {
    let limit: Int64
    let fd: Int32
    let progress: ((Int64) -> Void)?
    var memory: [UInt8] = []
    var headers: [(name: String, value: String)] = []
    var written: Int64 = 0
    var reported: Int64 = 0
    var overLimit = false
    var writeErrno: Int32 = 0

    init(sink: HTTPTransfer.Sink, progress: ((Int64) -> Void)?) {
        switch sink {
        case .memory(let limit): (self.limit, fd) = (Int64(limit), -1)
        case .file(let fd, let limit): (self.limit, self.fd) = (limit, fd)
        }
        self.progress = progress
    }

    /// Returns `count` to go on, anything else to stop the transfer.
    func body(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        guard written + Int64(count) <= limit else { overLimit = true; return 0 }
        let bytes = UnsafeRawBufferPointer(start: data, count: count)
        if fd >= 0 {
            guard writeAll(fd, bytes) else { writeErrno = errno; return 0 }
        } else {
            memory.append(contentsOf: bytes)
        }
        written += Int64(count)
        if let progress, written - reported >= 8 << 20 { reported = written; progress(written) }
        return count
    }

    /// The headers a registry client reads; others are not kept, so that no number of them
    /// pushes these out.
    static let kept: Set<String> = ["location", "www-authenticate", "docker-content-digest", "content-type"]

    /// One header line; a status line starts a new response (after an interim one).
    func header(_ data: UnsafeMutablePointer<CChar>, _ count: Int) -> Int {
        let line = String(decoding: UnsafeRawBufferPointer(start: data, count: count), as: UTF8.self)
        if line.hasPrefix("HTTP/") { headers.removeAll(); return count }
        guard headers.count < 32, let colon = line.firstIndex(of: ":"), Self.kept.contains(line[..<colon].lowercased()) else { return count }
        let name = String(line[..<colon])
        let value = line[line.index(after: colon)...].trimming(" \t\r\n")
        headers.append((name, value))
        return count
    }
}
