import FoundationEssentials
import Glibc
import Hummingbird
import OffswitchAPI
import OffswitchCore
import OffswitchSandbox

/// `/v1/sandboxes`: create, list, inspect and delete sandboxes; exec, files, events, terminal.
struct SandboxRoutes {
    let registry: SandboxRegistry
    let metrics: ServerMetrics

    func add(to table: RouteTable) {
        let registry = self.registry, metrics = self.metrics
        func on(_ method: HTTPRequest.Method, _ path: String,
                _ handler: @escaping @Sendable (Request, APIContext) async throws -> Response) {
            table.on(method, path, handler)
        }
        on(.post, "/v1/sandboxes") { request, context in
            let body = try await request.decode(as: CreateSandboxBody.self, context: context)
            let document = try await registry.create(body)
            metrics.recordCreated()
            return try RouteTable.json(document, status: .created)
        }
        on(.get, "/v1/sandboxes") { _, _ in try RouteTable.json(SandboxListDocument(sandboxes: await registry.documents())) }
        on(.get, "/v1/sandboxes/:id") { _, context in
            try RouteTable.json(try await registry.document(try context.parameters.require("id")))
        }
        on(.delete, "/v1/sandboxes/:id") { _, context in
            try await registry.remove(try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        on(.post, "/v1/sandboxes/:id/exec") { request, context in
            let id = try context.parameters.require("id")
            let sandbox = try await registry.sandbox(id)
            let body = try await request.decode(as: ExecBody.self, context: context)
            var exec = try body.request(defaultUser: sandbox.spec.defaultUser,
                                        defaultTimeout: sandbox.spec.commandTimeoutSeconds.map(Double.init))
            exec.environment = (await registry.environment(id)).merging(exec.environment) { $1 }
            let started = ContinuousClock.now
            do {
                let result = try await sandbox.exec(exec)
                metrics.recordExec(seconds: Self.seconds(ContinuousClock.now - started), failed: false)
                return try RouteTable.json(ExecDocument(result))
            } catch {
                metrics.recordExec(seconds: Self.seconds(ContinuousClock.now - started), failed: true)
                throw error
            }
        }
        // Files move a MiB at a time, each on a thread of its own, up to Sandbox.fileLimit: the
        // daemon never holds a whole file, and a larger one is 413 file_too_large.
        on(.put, "/v1/sandboxes/:id/files") { request, context in
            let sandbox = try await registry.sandbox(try context.parameters.require("id"))
            let (path, user) = try Self.fileTarget(request)
            let mode = try CreateSandboxBody.FileBody.parseMode(request.uri.queryParameters["mode"].map(String.init), field: "mode")
            if let length = request.headers[.contentLength].flatMap({ Int64($0) }) {
                try Sandbox.checkSize(length, limit: Sandbox.fileLimit, operation: "write", path: path)
            }
            let file = try await BlockingWork.run { () throws(OffswitchError) in try sandbox.openForWriting(path, user: user, mode: mode) }
            var pending: [UInt8] = [], written = 0
            func flush() async throws(OffswitchError) {
                let chunk = pending
                pending.removeAll(keepingCapacity: true)
                try await BlockingWork.run { () throws(OffswitchError) in try file.write(chunk) }
            }
            for try await buffer in request.body {
                written += buffer.readableBytes
                do throws(OffswitchError) {
                    try Sandbox.checkSize(Int64(written), limit: Sandbox.fileLimit, operation: "write", path: file.path)
                } catch {
                    try? await BlockingWork.run { () throws(OffswitchError) in try file.discard() }
                    throw error
                }
                pending += buffer.readableBytesView
                if pending.count >= 1 << 20 { try await flush() }
            }
            try await flush()
            return Response(status: .noContent)
        }
        on(.get, "/v1/sandboxes/:id/files") { request, context in
            let sandbox = try await registry.sandbox(try context.parameters.require("id"))
            let (path, user) = try Self.fileTarget(request)
            let file = try await BlockingWork.run { () throws(OffswitchError) in try sandbox.openForReading(path, user: user) }
            var headers = HTTPFields()
            headers[.contentType] = "application/octet-stream"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                var sent = 0
                while true {
                    let chunk = try await BlockingWork.run { () throws(OffswitchError) in try file.read(upTo: 1 << 20) }
                    if chunk.isEmpty { break }
                    sent += chunk.count
                    // Grown past the limit since it was opened: the transfer breaks off rather than end short.
                    try Sandbox.checkSize(Int64(sent), limit: Sandbox.fileLimit, operation: "read", path: file.path)
                    try await writer.write(ByteBuffer(bytes: chunk))
                }
                try await writer.finish(nil)
            })
        }
        on(.get, "/v1/sandboxes/:id/events") { request, context in
            let sandbox = try await registry.sandbox(try context.parameters.require("id"))
            let followText = request.uri.queryParameters["follow"].map(String.init) ?? "0"
            guard ["0", "1", "true", "false"].contains(followText) else {
                throw OffswitchError(.invalidArgument, "follow: \"\(followText)\" is not 0, 1, true or false")
            }
            let follow = followText == "1" || followText == "true"
            // Given back when the response goes: streamed to its end, or its client gone (seen at
            // once while the log is quiet: ClientHangUp).
            let claim = try registry.capacity.claim(.streams)
            let hangUp = await ClientHangUp.of(context.channel)
            // Opened now: the stream goes on to the end even if destroy removes the file meanwhile.
            let fd = open(sandbox.eventLogPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw OffswitchError.system("open(\(sandbox.eventLogPath))", errno: errno)
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/x-ndjson"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                defer { close(fd) }
                let stayed = try await EventStream.copy(from: fd, to: &writer, follow: follow, finished: { sandbox.isDestroyed },
                                                        clientGone: { hangUp?.hasHungUp ?? false })
                withExtendedLifetime(claim) {}
                guard stayed else { return }
                try await writer.finish(nil)
            })
        }
        on(.post, "/v1/sandboxes/:id/terminal") { request, context in
            let id = try context.parameters.require("id")
            let sandbox = try await registry.sandbox(id)
            let user = try SandboxUser.parse(request.uri.queryParameters["user"].map(String.init), field: "user",
                                             default: sandbox.spec.defaultUser)
            func size(_ name: Substring, _ fallback: UInt16) throws -> UInt16 {
                guard let text = request.uri.queryParameters[name] else { return fallback }
                guard let value = UInt16(text), value > 0 else {
                    throw OffswitchError(.invalidArgument, "\(name): \"\(text)\" is not a terminal size (1...65535)")
                }
                return value
            }
            let rows = try size("rows", 24), columns = try size("cols", 80)
            let claim = try registry.capacity.claim(.streams)
            let environment = await registry.environment(id)
            let relay = try await BlockingWork.run { () throws(OffswitchError) in
                try TerminalRelay(sandbox: sandbox, user: user, environment: environment, rows: rows, columns: columns)
            }
            var headers = HTTPFields()
            headers[.contentType] = TerminalFrames.contentType
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                let (frames, continuation) = AsyncStream.makeStream(of: [UInt8].self)
                // The pty is read by a thread of its own: its reads block.
                let reader = try WorkerThread("terminal relay")
                try reader.start("terminal relay") {
                    let code = relay.run { continuation.yield(TerminalFrames.output($0)) }
                    continuation.yield(TerminalFrames.exit(code))
                    continuation.finish()
                }
                // A client gone (a failed write) hangs the command up; the relay thread ends at once.
                defer {
                    relay.hangUp()
                    reader.stop()
                }
                // Keystrokes wait here, not on a thread, while the command does not read them.
                let input = Task {
                    do {
                        for try await buffer in request.body {
                            let bytes = Array(buffer.readableBytesView)
                            while !relay.offer(bytes) { try await Task.sleep(for: .milliseconds(10)) }
                        }
                        relay.endInput()
                    } catch {
                        // The connection broke before the keystrokes ended: the client has gone.
                        // Hung up now, not at the command's next output (an idle shell has none).
                        if !Task.isCancelled { relay.hangUp() }
                    }
                }
                // Each frame passed on lets the relay read the pty again: a client that does not
                // read stops the command's output, not the daemon's memory.
                for await frame in frames {
                    try await writer.write(ByteBuffer(bytes: frame))
                    relay.taken()
                }
                input.cancel()
                try await writer.finish(nil)
                withExtendedLifetime(claim) {}
            })
        }
        on(.post, "/v1/sandboxes/:id/shutdown") { _, context in
            let id = try context.parameters.require("id")
            try await registry.sandbox(id).shutDown()
            return try RouteTable.json(try await registry.document(id))
        }
    }

    private static func fileTarget(_ request: Request) throws -> (String, SandboxUser) {
        guard let path = request.uri.queryParameters["path"], !path.isEmpty else {
            throw OffswitchError(.invalidArgument, "path: query parameter missing (?path=/home/user/file)")
        }
        let user = try SandboxUser.parse(request.uri.queryParameters["user"].map(String.init), field: "user")
        return (String(path), user)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
