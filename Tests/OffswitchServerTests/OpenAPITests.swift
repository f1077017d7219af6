import Foundation
import OffswitchSandbox
@testable import OffswitchServer
import Hummingbird
import OffswitchTestSupport
import Testing

@Suite("docs/openapi.yaml")
struct OpenAPITests {
    static func documentedRoutes() throws -> Set<String> {
        var url = URL(fileURLWithPath: productsDirectory)
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("docs/openapi.yaml").path) {
            url.deleteLastPathComponent()
        }
        let text = try String(contentsOf: url.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        var routes: Set<String> = []
        var currentPath: String?
        var inPaths = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            if inPaths && !line.hasPrefix(" ") && !line.isEmpty { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /") && line.hasSuffix(":") {
                currentPath = String(line.dropFirst(2).dropLast())
            } else if let path = currentPath, line.hasPrefix("    "), !line.hasPrefix("     "),
                      let method = ["get", "put", "post", "delete", "patch"].first(where: { line == "    \($0):" }) {
                routes.insert("\(method.uppercased()) \(path)")
            }
        }
        return routes
    }

    @Test("Every route the daemon registers is documented, and nothing else")
    func inSync() throws {
        let router = Router(context: APIContext.self)
        let registered = APIRoutes(registry: SandboxRegistry(paths: StatePaths(base: "/nonexistent")), metrics: ServerMetrics(), paths: StatePaths(base: "/nonexistent"))
            .add(to: router)
        let documented = try Self.documentedRoutes()
        #expect(documented.count >= 10)
        #expect(Set(registered) == documented, "undocumented: \(Set(registered).subtracting(documented)); stale: \(documented.subtracting(registered))")
    }
}
