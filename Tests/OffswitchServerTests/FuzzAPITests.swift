import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// One request as raw bytes on the daemon's Unix socket (so malformed HTTP can be sent too); the
/// status, or nil when the daemon closed without one.
private func raw(_ socketPath: String, _ request: [UInt8]) -> (status: Int?, body: String) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return (nil, "socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
        for (index, byte) in socketPath.utf8.enumerated() where index < buffer.count - 1 { buffer[index] = byte }
    }
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    // A daemon may answer (404, 413) before reading a large body and stop reading: do not wait on it.
    var sendTimeout = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
    let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard connected == 0 else { return (nil, "connect: \(errno)") }
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n <= 0 { break }
        sent += n
    }
    shutdown(fd, Int32(SHUT_WR))
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while reply.count < 4 << 20 {
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { break }
        reply += chunk[0..<n]
    }
    let text = String(decoding: reply, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.1 "), let status = Int(text.dropFirst(9).prefix(3)) else { return (nil, String(text.prefix(200))) }
    guard let end = text.range(of: "\r\n\r\n") else { return (status, "") }
    return (status, String(text[end.upperBound...]))
}

private func http(_ method: String, _ target: String, body: [UInt8] = [], headers: [String] = []) -> [UInt8] {
    var head = "\(method) \(target) HTTP/1.1\r\nHost: offswitchd\r\nConnection: close\r\n"
    for header in headers { head += header + "\r\n" }
    head += "Content-Length: \(body.count)\r\n\r\n"
    return Array(head.utf8) + body
}

@Suite("Fuzzing offswitchd's API", needsRoot)
struct FuzzAPITests {
    @Test("Malformed requests for a bounded time: each gets a clear 4xx or a closed connection; the daemon keeps serving and loses or leaks nothing")
    func fuzz() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let socket = daemon.socket
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let keeper = try #require(try daemon.curl("POST", "/v1/sandboxes", json: [:] as [String: Any]).json["id"] as? String)
        let routes = ["/v1/sandboxes", "/v1/sandboxes/\(keeper)", "/v1/sandboxes/\(keeper)/exec", "/v1/sandboxes/\(keeper)/files",
                      "/v1/sandboxes/\(keeper)/steps", "/v1/trials", "/v1/trials/0123456789ab/files/verdict.json",
                      "/v1/sandboxes/\(keeper)/events", "/v1/scenarios/palisade-math/prompts", "/v1/nope", "/v1/sandboxes/../../etc",
                      "/v1/images", "/v1/images/nope%2Fx:1", "/v1/images/sha256:..%2F..%2Fetc"]
        let validBodies = [#"{"argv":["true"]}"#, #"{"profile":"docker","limits":{"memory_mib":64}}"#, #"{"agent":"compliant"}"#,
                           #"{"tool":"bash","command":"true"}"#, #"{"argv":["sh","-c","echo hi"],"stdin":"x","env":{"A":"1"},"cwd":"/tmp","timeout":5}"#]
        let hostile: [[UInt8]] = [
            Array(#"{"argv":5}"#.utf8), Array(#"{"argv":[1,2]}"#.utf8), Array(#"{"argv":[]}"#.utf8), Array(#"{"argv":["\u0000"]}"#.utf8),
            Array(#"{"argv":["true"],"timeout":-1}"#.utf8), Array(#"{"argv":["true"],"timeout":1e308}"#.utf8), Array(#"{"argv":["true"],"user":"nobody"}"#.utf8),
            Array(#"{"limits":{"memory_mib":-5,"pids":"many"}}"#.utf8), Array(#"{"profile":"../../etc/passwd"}"#.utf8), Array(#"{"unknown":1}"#.utf8),
            Array(String(repeating: "[", count: 100_000).utf8), [0xff, 0xfe, 0x7b], Array("{\"argv\":[\"".utf8) + [0xc3, 0x28] + Array("\"]}".utf8),
            Array(#"{"argv":["true"],"stdin_base64":"!!!"}"#.utf8), Array(("{\"argv\":[\"echo\",\"" + String(repeating: "x", count: 1 << 20) + "\"]}").utf8),
            Array(#"{"files":[{"path":"/etc/../../x","content":"y"}]}"#.utf8), Array(#"{"scenario":"palisade-math","env":{}}"#.utf8),
        ]
        let queries = ["", "?path=", "?path=%00", "?path=a%00b", "?path=%ff%fe", "?path=../../../../etc/shadow", "?path=/proc/1/mem",
                       "?path=" + String(repeating: "a/", count: 3000), "?user=root&path=/etc/shadow", "?follow=2", "?mode=9999&path=x"]
        var served = 0, closed = 0, errors: [String] = [], created: Set<String> = [], slow: [String] = []
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            let route = routes.randomElement(using: &random)!
            var method = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"].randomElement(using: &random)!
            // The kept sandbox must outlive the fuzz: deletes go to an id nobody has.
            let target = method == "DELETE" ? route.replacing(keeper, with: "0123456789ab") : route
            if target == "/v1/sandboxes" && method == "DELETE" { method = "GET" }
            var body: [UInt8]
            switch Int.random(in: 0..<4, using: &random) {
            case 0: body = hostile.randomElement(using: &random)!
            case 1:
                body = Array(validBodies.randomElement(using: &random)!.utf8)
                for _ in 0..<Int.random(in: 1...4, using: &random) where !body.isEmpty {
                    body[Int.random(in: 0..<body.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 2: body = (0..<Int.random(in: 0...512, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            default: body = []
            }
            var request = http(method, target + queries.randomElement(using: &random)!, body: body,
                               headers: Int.random(in: 0..<10, using: &random) == 0 ? ["X-Big: " + String(repeating: "h", count: 200_000)] : [])
            switch Int.random(in: 0..<12, using: &random) {
            case 0: request = Array(request.prefix(Int.random(in: 0...request.count, using: &random)))  // cut short
            case 1: request = (0..<200).map { _ in UInt8.random(in: 0...255, using: &random) }  // not HTTP
            case 2: request = Array("POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".utf8)
            case 3: request = Array("GET /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n".utf8)
            default: break
            }
            let asked = Date()
            let (status, reply) = raw(socket, request)
            let took = Date().timeIntervalSince(asked)
            if took > 1 { slow.append(String(format: "%.1f s: ", took) + "\(request.count) bytes, " + String(decoding: request.prefix(400), as: UTF8.self).suffix(120).replacingOccurrences(of: "\r\n", with: " | ")) }
            guard let status else { closed += 1; continue }
            served += 1
            if status >= 500 { errors.append("\(status) for \(method) \(route): \(reply.prefix(200))") }
            // A request the HTTP parser refuses gets a bare 400; every other error is a document.
            if status >= 400, !reply.isEmpty, !(reply.contains("\"code\"") && reply.contains("\"message\"")) {
                errors.append("\(status) without an error document for \(method) \(route): \(reply.prefix(200))")
            }
            if status == 201, let id = (try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any])?["id"] as? String {
                created.insert(id)
            }
        }
        for line in slow.prefix(8) { print("slow: \(line)") }
        print("API fuzz: \(served) answered, \(closed) closed without an answer, \(created.count) sandboxes made (seed \(seed))")
        #expect(errors.isEmpty, "seed \(seed): \(errors.prefix(5))")
        #expect(served > 30)
        // Still serving, and nothing lost: the kept sandbox works and its log has every event.
        #expect(try daemon.curl("GET", "/healthz").status == 200)
        let exec = try daemon.curl("POST", "/v1/sandboxes/\(keeper)/exec", json: ["argv": ["echo", "still here"]])
        #expect(exec.json["stdout"] as? String == "still here\n", "\(exec.text)")
        let events = try daemon.curl("GET", "/v1/sandboxes/\(keeper)/events").text.split(separator: "\n")
        let seqs = events.compactMap { line in (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["seq"] as? Int }
        #expect(seqs == Array(1...seqs.count), "the event log has gaps")
        // Nothing leaked: every sandbox is one the fuzz was told about.
        let listed = Set(((try daemon.curl("GET", "/v1/sandboxes").json["sandboxes"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String })
        #expect(listed.subtracting(created).subtracting([keeper]).isEmpty, "unknown sandboxes: \(listed.subtracting(created))")
        for id in listed { _ = try daemon.curl("DELETE", "/v1/sandboxes/\(id)") }
        for id in listed { #expect(traces(of: id, stateDirectory: daemon.stateDirectory).isEmpty) }
    }
}

