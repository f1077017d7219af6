public import Hummingbird
import NIOCore
import OffswitchAPI
public import OffswitchCore

/// An error as the API returns it: a status and `{"error": {"code", "message"}}`. The one place
/// where errors become HTTP: registries and routes throw `OffswitchError`; the middleware below
/// maps it, and the framework's own errors, here.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String

    public init(_ status: HTTPResponse.Status, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// The status for each runtime error: bad input is 4xx, never 500.
    public init(_ error: OffswitchError) {
        let status: HTTPResponse.Status
        switch error.code {
        case .invalidArgument, .invalidProfile, .invalidScenario, .invalidAgent, .isDirectory, .notRegularFile, .execFailed, .notATrial:
            status = .badRequest
        case .permissionDenied, .rootfsNotAllowed: status = .forbidden
        case .notFound, .sandboxNotFound, .trialNotFound: status = .notFound
        case .sandboxShutDown, .imageInUse, .readOnly: status = .conflict
        case .fileTooLarge: status = .contentTooLarge
        case .capacityReached: status = .tooManyRequests
        case .registryUnauthorized: status = .forbidden
        case .registryFailed: status = .badGateway
        case .sandboxDestroyed: status = .notFound  // destroyed while the request ran: it no longer exists
        case .notRoot, .missingFeature, .setupFailed, .protocolError, .system: status = .internalServerError
        }
        self.init(status, code: error.code.rawValue, message: error.description)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = (try? APIJSON.encode(ErrorDocument(code: code, message: message))) ?? Array(#"{"error":{}}"#.utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body + [10])))
    }
}

/// Turns every error into the API's JSON form: framework errors (404 route, 413 body too large,
/// 401 auth), decoding errors (400 naming the field) and runtime errors.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await translate { try await next(request, context) }
        } catch let error as APIError {
            metrics.recordError(status: error.status.code)
            throw error
        }
    }

    private func translate(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let error as APIError {
            throw error
        } catch let error as OffswitchError {
            throw APIError(error)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, code: "body_too_large",
                           message: "request body exceeds \(APIContext.bodyLimit >> 20) MiB")
        } catch let error as DecodingError {
            throw APIError(.badRequest, code: "invalid_request", message: Self.describe(error))
        } catch let error as HTTPError {
            let code: String
            switch error.status {
            case .notFound: code = "not_found"
            case .contentTooLarge: code = "body_too_large"
            case .unauthorized: code = "unauthorized"
            case .methodNotAllowed: code = "method_not_allowed"
            default: code = error.status.code >= 500 ? "internal_error" : "invalid_request"
            }
            throw APIError(error.status, code: code, message: error.body ?? error.status.reasonPhrase)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        error.describe(document: "body")
    }
}
