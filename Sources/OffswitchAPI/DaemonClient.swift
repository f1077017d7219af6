import FoundationEssentials
import Glibc
public import OffswitchCore

/// A minimal HTTP/1.1 client for `offswitchd`'s Unix socket: one request per connection
/// (`Connection: close`), Content-Length or chunked responses. Enough for the CLI, without a
/// networking stack that would slow every invocation down.
public struct DaemonClient: Sendable {
    public let socketPath: String

    /// `--socket`, else `OFFSWITCH_SOCKET`, else the default path.
    public init(socketPath: String? = nil) {
        self.socketPath = socketPath ?? getenv("OFFSWITCH_SOCKET").map { String(cString: $0) } ?? "/run/offswitch/offswitchd.sock"
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    /// Whether a daemon answers on the socket.
    public var isReachable: Bool { (try? request("GET", "/healthz").status) == 200 }

    public func request(_ method: String, _ path: String, body: [UInt8] = [], contentType: String = "application/json") throws(OffswitchError) -> Response {
        let fd = try connect()
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: offswitchd\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: \(contentType)\r\n" }
        head += "\r\n"
        try send(fd, Array(head.utf8) + body)
        return try parse(receiveAll(fd))
    }

    /// A JSON request whose error responses become `OffswitchError`s carrying the daemon's message.
    public func call(_ method: String, _ path: String, body: [UInt8] = [], contentType: String = "application/json") throws(OffswitchError) -> [UInt8] {
        let response = try request(method, path, body: body, contentType: contentType)
        guard (200..<300).contains(response.status) else {
            var message = String(decoding: response.body, as: UTF8.self)
            var code = OffswitchError.Code.system
            if let document = try? APIJSON.decode(ErrorDocument.self, from: response.body) {
                message = document.error.message
                code = OffswitchError.Code(rawValue: document.error.code) ?? (response.status < 500 ? .invalidArgument : .system)
            }
            throw OffswitchError(code, "offswitchd (\(response.status)): \(message)")
        }
        return response.body
    }

    /// A GET whose body is handed to `onData` as it arrives (chunked or not), for streams such
    /// as `/events?follow=1`. Error statuses throw like `call`.
    public func stream(_ path: String, onData: ([UInt8]) -> Void) throws(OffswitchError) {
        let fd = try connect()
        defer { close(fd) }
        try send(fd, Array("GET \(path) HTTP/1.1\r\nHost: offswitchd\r\nConnection: close\r\n\r\n".utf8))
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        func more() throws(OffswitchError) -> Bool {
            let n = try systemCall("recv(\(socketPath))") { recv(fd, &chunk, chunk.count, 0) }
            buffer += chunk[0..<n]
            return n > 0
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            headEnd = buffer.indices.first { buffer[$0...].starts(with: separator) }
            if headEnd == nil, try !more() { throw OffswitchError(.protocolError, "offswitchd closed the connection before its headers") }
        }
        let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let chunked = head.lowercased().contains("transfer-encoding: chunked")
        buffer.removeSubrange(..<(headEnd! + 4))
        guard status == 200 else {
            while try more() {}
            var raw = Array(head.utf8) + separator + buffer
            let response = try parse(raw)
            raw = response.body
            let message = (try? APIJSON.decode(ErrorDocument.self, from: raw))?.error.message ?? String(decoding: raw, as: UTF8.self)
            throw OffswitchError(status == 404 ? .notFound : .invalidArgument, "offswitchd (\(status)): \(message)")
        }
        guard chunked else {
            onData(buffer)
            buffer = []
            while try more() {
                onData(buffer)
                buffer = []
            }
            return
        }
        while true {
            guard let lineEnd = buffer.firstIndex(of: 13), lineEnd + 1 < buffer.count else {
                if try !more() { return }
                continue
            }
            guard let size = Int(String(decoding: buffer[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? "", radix: 16) else {
                throw OffswitchError(.protocolError, "offswitchd sent a malformed chunk")
            }
            if size == 0 { return }
            while buffer.count < lineEnd + 2 + size + 2 {
                if try !more() { throw OffswitchError(.protocolError, "offswitchd sent a truncated chunk") }
            }
            onData(Array(buffer[(lineEnd + 2)..<(lineEnd + 2 + size)]))
            buffer.removeSubrange(..<(lineEnd + 2 + size + 2))
        }
    }

    /// A full-duplex POST for a terminal: what `input` reads is sent as the chunked request body
    /// while the response's frames (TerminalFrames) are written to `output`, until the command's
    /// exit frame, whose code is returned. End of input ends the body (the command gets ^D).
    public func terminal(_ path: String, input: Int32, output: Int32) throws(OffswitchError) -> Int32 {
        let fd = try connect()
        defer { close(fd) }
        try send(fd, Array(("POST \(path) HTTP/1.1\r\nHost: offswitchd\r\nContent-Type: application/octet-stream\r\n"
                            + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").utf8))
        var inputOpen = true
        var received: [UInt8] = []
        var body: [UInt8] = []
        var frames: [UInt8] = []
        var status: Int?
        var chunked = false
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        func emit(_ bytes: [UInt8]) { writeAll(output, bytes) }
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: inputOpen ? input : -1, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                throw OffswitchError.system("poll(terminal)", errno: errno)
            }
            if fds[1].revents != 0 {
                let n = read(input, &chunk, chunk.count)
                if n > 0 {
                    try send(fd, Array((String(n, radix: 16) + "\r\n").utf8) + chunk[0..<n] + [13, 10])
                } else if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) {
                    inputOpen = false
                    try send(fd, Array("0\r\n\r\n".utf8))
                }
            }
            guard fds[0].revents != 0 else { continue }
            let n = try systemCall("recv(\(socketPath))") { recv(fd, &chunk, chunk.count, 0) }
            if n == 0 {
                if let status, status != 200 {
                    let text = String(decoding: body, as: UTF8.self)
                    let message = (try? APIJSON.decode(ErrorDocument.self, from: body))?.error.message ?? text
                    throw OffswitchError(status == 404 ? .notFound : .invalidArgument, "offswitchd (\(status)): \(message)")
                }
                throw OffswitchError(.protocolError, "offswitchd closed the terminal before the command's exit")
            }
            received += chunk[0..<n]
            if status == nil {
                guard let headEnd = received.indices.first(where: { received[$0...].starts(with: [13, 10, 13, 10]) }) else { continue }
                let head = String(decoding: received[..<headEnd], as: UTF8.self)
                status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                chunked = head.lowercased().contains("transfer-encoding: chunked")
                received.removeSubrange(..<(headEnd + 4))
            }
            // The body: dechunk what is complete.
            if chunked {
                while let lineEnd = received.firstIndex(of: 13), lineEnd + 1 < received.count,
                      let size = Int(String(decoding: received[..<lineEnd], as: UTF8.self).split(separator: ";").first ?? "", radix: 16),
                      received.count >= lineEnd + 2 + size + 2 {
                    body += received[(lineEnd + 2)..<(lineEnd + 2 + size)]
                    received.removeSubrange(..<(lineEnd + 2 + size + 2))
                    if size == 0 { break }
                }
            } else {
                body += received
                received = []
            }
            guard status == 200 else { continue }
            frames += body
            body = []
            for event in TerminalFrames.decode(&frames) {
                switch event {
                case .output(let bytes): emit(bytes)
                case .exit(let code): return code
                }
            }
        }
    }

    private func connect() throws(OffswitchError) -> Int32 {
        let fd = try systemCall("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let result: Int32
        do throws(OffswitchError) {
            result = try withUnixAddress(socketPath) { Glibc.connect(fd, $0, $1) }
        } catch {
            close(fd)
            throw error
        }
        if result != 0 {
            let err = errno
            close(fd)
            throw OffswitchError.system("connect(\(socketPath))", errno: err)
        }
        return fd
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) throws(OffswitchError) {
        var offset = 0
        while offset < bytes.count {
            offset += try systemCall("send(\(socketPath))") {
                bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    private func receiveAll(_ fd: Int32) throws(OffswitchError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try systemCall("recv(\(socketPath))") { recv(fd, &chunk, chunk.count, 0) }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<n])
        }
    }

    func parse(_ raw: [UInt8]) throws(OffswitchError) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = raw.indices.first(where: { raw[$0...].starts(with: separator) }) else {
            throw OffswitchError(.protocolError, "offswitchd sent an incomplete HTTP response")
        }
        let lines = String(decoding: raw[..<headEnd], as: UTF8.self).split(separator: "\r\n")
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw OffswitchError(.protocolError, "offswitchd sent no HTTP status line")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingPrefix(" ").description
        }
        var body = Array(raw[(headEnd + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" { body = try dechunk(body) }
        return Response(status: status, body: body)
    }

    private func dechunk(_ raw: [UInt8]) throws(OffswitchError) -> [UInt8] {
        var output: [UInt8] = []
        var index = 0
        while index < raw.count {
            guard let lineEnd = raw[index...].firstIndex(of: 13), lineEnd + 1 < raw.count,
                  let size = Int(String(decoding: raw[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? "", radix: 16) else {
                throw OffswitchError(.protocolError, "offswitchd sent a malformed chunk")
            }
            if size == 0 { break }
            let start = lineEnd + 2
            guard start + size <= raw.count else { throw OffswitchError(.protocolError, "offswitchd sent a truncated chunk") }
            output.append(contentsOf: raw[start..<(start + size)])
            index = start + size + 2
        }
        return output
    }
}

extension APIJSON {
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
