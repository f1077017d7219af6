import Glibc
public import OffswitchCore
import Synchronization

/// Compiled seccomp programs by policy and capability set: compiling Docker's profile takes
/// milliseconds, and every sandbox of a kind gets the same program.
final class SeccompCache: Sendable {
    static let shared = SeccompCache()

    private struct Key: Hashable {
        var path: String
        var capabilities: UInt64
    }
    private let programs = Mutex<[Key: [UInt8]]>([:])

    func program(for spec: SandboxSpec) throws(OffswitchError) -> [UInt8] {
        let path: String
        if let given = spec.seccompPolicyPath {
            path = given
        } else {
            path = try BundledFiles.path("sandbox-profiles/seccomp/docker-default.json")
        }
        let key = Key(path: path, capabilities: spec.rootCapabilities.mask)
        if let cached = programs.withLock({ $0[key] }) { return cached }
        let policy = try SeccompPolicy.load(path: path)
        let output = try SeccompCompiler(capabilities: spec.rootCapabilities).compile(policy, source: path)
        programs.withLock { $0[key] = output.program }
        return output.program
    }
}

/// Files that ship with Offswitch (profiles, scenarios), found from `OFFSWITCH_HOME`, or from
/// the executable's location inside a checkout (`.build/<config>/` sits two levels below it).
public enum BundledFiles {
    public static func path(_ relative: String) throws(OffswitchError) -> String {
        var candidates: [String] = []
        if let home = getenv("OFFSWITCH_HOME") { candidates.append(String(cString: home)) }
        if let executable = try? readLink("/proc/self/exe") {
            var parts = executable.split(separator: "/").map(String.init)
            for _ in 0..<5 where !parts.isEmpty {
                parts.removeLast()
                candidates.append("/" + parts.joined(separator: "/"))
            }
        }
        candidates.append("/usr/local/share/offswitch")
        for base in candidates where access(base + "/" + relative, R_OK) == 0 {
            return base + "/" + relative
        }
        throw OffswitchError(.missingFeature, "cannot find \(relative) (looked in \(candidates.joined(separator: ", "))); set OFFSWITCH_HOME to the Offswitch checkout")
    }
}
