import FoundationEssentials
public import Hummingbird
import NIOCore
import OffswitchAPI
import OffswitchEvidence
import OffswitchSandbox

/// The request context of every route: bodies up to 256 MiB (50 MiB files and stdin, base64 in
/// JSON, fit), beyond that 413; and the connection, whose `ClientHangUp` a stream asks.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    public init(source: Source) {
        coreContext = .init(source: source)
        channel = source.channel
    }
    public var maxUploadSize: Int { Self.bodyLimit }
    public static let bodyLimit = 256 << 20
}

/// Every route of the daemon, by resource: the service itself (`/healthz`, `/metrics`), sandboxes
/// (SandboxRoutes.swift), trials (TrialRoutes.swift), scenarios (ScenarioRoutes.swift) and images
/// (ImageRoutes.swift).
/// Handlers translate HTTP to registry and sandbox calls and throw `OffswitchError`; APIError.swift
/// turns errors into HTTP.
struct APIRoutes {
    let registry: SandboxRegistry
    let metrics: ServerMetrics
    let paths: StatePaths
    /// What uploads may fill the image store to.
    var imageQuota: Int64 = 64 << 30

    /// Registers every route and returns them as "METHOD /path/{param}" (what docs/openapi.yaml lists).
    @discardableResult
    func add(to router: Router<APIContext>) -> [String] {
        let table = RouteTable(router)
        let registry = self.registry, metrics = self.metrics
        // The recorder's mode: what this daemon records sandboxes with, and whether the kernel's
        // object hooks load (probed at the first request).
        table.on(.get, "/healthz") { _, _ in
            try RouteTable.json(HealthDocument(status: "ok", recorder: RecorderDocument(KernelRecorder.report(probingHooks: true))))
        }
        table.on(.get, "/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            let text = metrics.render(liveSandboxes: await registry.count, capacity: registry.capacity, trials: registry.trialDirectories)
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        SandboxRoutes(registry: registry, metrics: metrics).add(to: table)
        TrialRoutes(paths: paths, registry: registry).add(to: table)
        JudgementRoutes(registry: registry).add(to: table)
        ScenarioRoutes().add(to: table)
        ImageRoutes(store: paths.imageStore, quota: imageQuota).add(to: table)
        return table.registered
    }
}

/// The router, and the list of what was registered on it (in OpenAPI's path syntax).
final class RouteTable {
    let router: Router<APIContext>
    private(set) var registered: [String] = []

    init(_ router: Router<APIContext>) { self.router = router }

    func on(_ method: HTTPRequest.Method, _ path: String,
            _ handler: @escaping @Sendable (Request, APIContext) async throws -> Response) {
        router.on(RouterPath(path), method: method, use: handler)
        let documented = path.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
        registered.append("\(method.rawValue) /" + documented.joined(separator: "/"))
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: try APIJSON.encode(value) + [10])))
    }


    static func raw(_ text: String, type: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
