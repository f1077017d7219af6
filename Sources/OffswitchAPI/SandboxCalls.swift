import FoundationEssentials
public import OffswitchCore

/// The sandbox routes as typed calls: each builds its request, decodes the reply, and throws the
/// daemon's errors as OffswitchErrors. `offswitch sandbox create|exec|put|get|rm|ls`, `events`
/// and `shell` are these calls plus printing.
extension DaemonClient {
    /// `POST /v1/sandboxes`: the new sandbox, and the reply as it came (for `--json`).
    public func createSandbox(_ body: CreateSandboxBody) throws(OffswitchError) -> (document: SandboxDocument, reply: [UInt8]) {
        let reply = try call("POST", "/v1/sandboxes", body: try APIJSON.requestBody(body))
        return (try APIJSON.reply(SandboxDocument.self, from: reply, what: "a sandbox"), reply)
    }

    /// `POST /v1/sandboxes/{id}/exec`.
    public func exec(_ id: String, _ body: ExecBody) throws(OffswitchError) -> ExecDocument {
        let reply = try call("POST", "/v1/sandboxes/\(id)/exec", body: try APIJSON.requestBody(body))
        return try APIJSON.reply(ExecDocument.self, from: reply, what: "an exec result")
    }

    /// `PUT /v1/sandboxes/{id}/files`: `bytes` become the file at `path` (relative to the
    /// user's home), written as `user`, with the octal `mode` if it is new.
    public func putFile(_ id: String, path: String, user: SandboxUser, mode: String, bytes: [UInt8]) throws(OffswitchError) {
        let query = Query.encode(["path": path, "user": user.rawValue, "mode": mode])
        _ = try call("PUT", "/v1/sandboxes/\(id)/files?\(query)", body: bytes, contentType: "application/octet-stream")
    }

    /// `GET /v1/sandboxes/{id}/files`: the file's bytes, read as `user`.
    public func getFile(_ id: String, path: String, user: SandboxUser) throws(OffswitchError) -> [UInt8] {
        try call("GET", "/v1/sandboxes/\(id)/files?\(Query.encode(["path": path, "user": user.rawValue]))")
    }

    /// `DELETE /v1/sandboxes/{id}`.
    public func deleteSandbox(_ id: String) throws(OffswitchError) {
        _ = try call("DELETE", "/v1/sandboxes/\(id)")
    }

    /// `GET /v1/sandboxes`: the list, and the reply as it came (for `--json`).
    public func listSandboxes() throws(OffswitchError) -> (document: SandboxListDocument, reply: [UInt8]) {
        let reply = try call("GET", "/v1/sandboxes")
        return (try APIJSON.reply(SandboxListDocument.self, from: reply, what: "a sandbox list"), reply)
    }

    /// `GET /v1/sandboxes/{id}/events`: the NDJSON log handed to `onData` as it arrives; with
    /// `follow`, until the sandbox is destroyed.
    public func events(_ id: String, follow: Bool, onData: ([UInt8]) -> Void) throws(OffswitchError) {
        try stream("/v1/sandboxes/\(id)/events" + (follow ? "?follow=1" : ""), onData: onData)
    }

    /// `POST /v1/sandboxes/{id}/terminal` relayed from `input` to `output`; `input` is in raw
    /// mode while it runs when it is a terminal, whose size the sandbox's pty takes. Returns the
    /// command's exit code.
    public func terminal(sandbox id: String, user: SandboxUser?, input: Int32 = 0, output: Int32 = 1) throws(OffswitchError) -> Int32 {
        let size = RawTerminal.size(of: input) ?? (rows: 24, cols: 80)
        var query = "rows=\(size.rows)&cols=\(size.cols)"
        if let user { query += "&user=\(user.rawValue)" }
        let raw = RawTerminal(input)
        defer { raw.restore() }
        return try terminal("/v1/sandboxes/\(id)/terminal?" + query, input: input, output: output)
    }
}

extension ExecBody {
    /// A body from a command line's pieces: `stdin` travels as base64 (exact bytes), `user` nil
    /// means the sandbox profile's.
    public init(argv: [String], stdin: [UInt8], cwd: String? = nil, env: [String: String]? = nil, user: SandboxUser?, timeout: Double?) {
        self.init(argv: argv, stdin_base64: stdin.isEmpty ? nil : Data(stdin).base64EncodedString(), cwd: cwd, env: env,
                  user: user?.rawValue, timeout: timeout)
    }

    /// `KEY=VALUE` entries as an environment; an entry without `=` is an error naming it.
    public static func environment(parsing entries: [String]) throws(OffswitchError) -> [String: String] {
        var environment: [String: String] = [:]
        for entry in entries {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw OffswitchError(.invalidArgument, "--env \(entry): expected KEY=VALUE")
            }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return environment
    }
}

extension ExecDocument {
    /// What `run` and `exec` say on stderr after the output: a timeout, a shutdown.
    public func notices(timeout: Double?) -> String {
        var text = ""
        if timed_out { text += "offswitch: timed out after \(timeout ?? 0) s; process tree killed\n" }
        if let shutdown { text += "offswitch: sandbox shut down by signal \(shutdown.signal) from pid \(shutdown.sender_pid)\n" }
        return text
    }
}

extension APIJSON {
    /// A request body as JSON bytes.
    public static func requestBody(_ value: some Encodable) throws(OffswitchError) -> [UInt8] {
        do { return try encode(value) } catch { throw OffswitchError(.invalidArgument, "cannot encode request: \(error)") }
    }

    /// A reply of offswitchd's decoded, or a protocol error naming `what` was expected.
    public static func reply<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws(OffswitchError) -> T {
        do { return try decode(type, from: bytes) } catch {
            throw OffswitchError(.protocolError, "offswitchd sent \(what) that does not decode: \(error)")
        }
    }
}

/// Query strings with every reserved byte percent-encoded.
enum Query {
    static func encode(_ items: [String: String]) -> String {
        items.sorted { $0.key < $1.key }.map { "\($0.key)=\(escape($0.value))" }.joined(separator: "&")
    }

    static func escape(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF")
        var result = ""
        for byte in text.utf8 {
            let unreserved = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x2d || byte == 0x2e || byte == 0x5f || byte == 0x7e || byte == 0x2f
            result += unreserved ? String(UnicodeScalar(byte)) : "%\(hex[Int(byte >> 4)])\(hex[Int(byte & 15)])"
        }
        return result
    }
}
