import Foundation
import OffswitchCore
import OffswitchYAML
@testable import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("Seccomp policies")
struct SeccompPolicyTests {
    static let dockerPath = try! BundledFiles.path("sandbox-profiles/seccomp/docker-default.json")

    /// SHA-256 of moby/profiles `seccomp/default.json` as published.
    static let publishedSHA256 = "536529b665dd0972c37bfb569f5d4ac8a53592e7b00752bc39ff063ca9864c74"

    @Test("The vendored Docker profile is byte for byte the published one")
    func vendoredCopy() throws {
        #expect(try sha256(Self.dockerPath) == Self.publishedSHA256)
    }

    private func sha256(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    @Test("Docker's profile compiles; rules depend on the capability set")
    func compileDocker() throws {
        let policy = try #require(ProfileReader.readSeccompPolicy(path: Self.dockerPath).policy)
        let docker = try SeccompCompiler(capabilities: .dockerDefault).compile(policy, source: "docker")
        #expect(docker.instructionCount > 100 && docker.instructionCount <= 4096)
        let admin = try SeccompCompiler(capabilities: CapabilitySet(mask: CapabilitySet.dockerDefault.mask | 1 << 21))
            .compile(policy, source: "docker")
        #expect(admin.program != docker.program, "CAP_SYS_ADMIN includes mount, unshare and clone3")
    }

    @Test("Includes and excludes follow Docker's rules")
    func filters() throws {
        let compiler = SeccompCompiler(capabilities: .dockerDefault)
        func rule(_ includes: SeccompPolicy.Filter?, _ excludes: SeccompPolicy.Filter?) -> SeccompPolicy.Rule {
            SeccompPolicy.Rule(names: ["x"], action: "SCMP_ACT_ALLOW", includes: includes, excludes: excludes)
        }
        #expect(compiler.applies(rule(nil, nil)))
        #expect(!compiler.applies(rule(SeccompPolicy.Filter(caps: ["CAP_SYS_ADMIN"]), nil)))
        #expect(compiler.applies(rule(SeccompPolicy.Filter(caps: ["CAP_KILL"]), nil)))
        #expect(!compiler.applies(rule(nil, SeccompPolicy.Filter(caps: ["CAP_KILL"]))))
        #expect(!compiler.applies(rule(SeccompPolicy.Filter(arches: ["s390x"]), nil)))
        #expect(!compiler.applies(rule(SeccompPolicy.Filter(minKernel: "99.0"), nil)))
        #expect(compiler.applies(rule(SeccompPolicy.Filter(minKernel: "4.8"), nil)))
    }

    @Test("Bad policies name the field and the reason", arguments: [
        (#"{"defaultAction": "SCMP_ACT_NOPE", "syscalls": []}"#, "defaultAction"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_TRACE"}]}"#, "syscalls[0].action"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]}]}"#, "syscalls[0].args[0].op"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#, "syscalls[0].args[0].index"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}]}"#, "syscalls[0].args[0].valueTwo"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}"#, "syscalls[0].names"),
        (#"{"syscalls": []}"#, "defaultAction"),
        (#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["pdp-11"], "syscalls": []}"#, "architectures[0]"),
        ("not json", "p.json"),
    ])
    func badPolicies(json: String, field: String) {
        let read = ProfileReader.readSeccompPolicy(text: json, file: "p.json")
        #expect(read.policy == nil)
        let errors = read.problems.filter { !$0.isWarning }.map(\.description)
        #expect(errors.contains { $0.hasPrefix("p.json") && $0.contains(field) }, "\(errors)")
    }

    @Test("Unknown syscall names are skipped and reported, as Docker does")
    func unknownSyscall() throws {
        let json = #"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "no_such_call"], "action": "SCMP_ACT_ALLOW"}]}"#
        let read = ProfileReader.readSeccompPolicy(text: json, file: "p")
        #expect(read.problems.map(\.description) == [
            "p: syscalls[0].names[1]: warning: syscall \"no_such_call\" is unknown to libseccomp \(SeccompPolicyReader.libseccompVersion) on this machine; skipped, as Docker does",
        ])
        let output = try SeccompCompiler(capabilities: .dockerDefault).compile(try #require(read.policy), source: "p")
        #expect(output.skippedSyscalls == ["no_such_call"])
    }
}
