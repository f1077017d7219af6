import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
@testable import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// The host's refusals (audit and uevent netlink sockets, i386 socketcall's socket), evaluated on
/// the program the kernel gets: no root needed.
@Suite("Host refusals in front of every policy")
struct HostRefusalsProgramTests {
    static let x86_64 = SeccompCompiler.archToken("SCMP_ARCH_X86_64")
    static let i386 = SeccompCompiler.archToken("SCMP_ARCH_X86")

    /// Docker's policy behind the refusals, for x86-64 and i386 (Docker's archMap on amd64).
    static func program(_ policy: SeccompPolicy) throws -> [UInt8] {
        let compiled = try SeccompCompiler(capabilities: .dockerDefault).compile(policy, source: "test")
        return try HostRefusals.prepend(to: compiled.program, architectures: [x86_64, i386])
    }

    static func verdict(_ program: [UInt8], arch: UInt32 = x86_64, nr: Int32 = 41, _ args: [UInt64]) -> SeccompVerdict {
        SeccompVerdict.evaluate(program, nr: nr, arch: arch, instructionPointer: 0, args: args + [0, 0, 0])
    }

    static let refused = SeccompVerdict(returnValue: SeccompVerdict.errno | UInt32(EPROTONOSUPPORT))
    static let allowed = SeccompVerdict(returnValue: SeccompVerdict.allow)

    @Test("Audit and uevent netlink sockets are refused with EPROTONOSUPPORT; other sockets get Docker's answer")
    func dockerPolicy() throws {
        #if arch(x86_64)
        let path = try BundledFiles.path("sandbox-profiles/seccomp/docker-default.json")
        let program = try Self.program(try #require(ProfileReader.readSeccompPolicy(path: path).policy))
        for type: UInt64 in [2, 3, 0x80003] {  // SOCK_DGRAM, SOCK_RAW, SOCK_RAW | SOCK_CLOEXEC
            #expect(Self.verdict(program, [16, type, 9]) == Self.refused, "NETLINK_AUDIT, type \(type)")
            #expect(Self.verdict(program, [16, type, 15]) == Self.refused, "NETLINK_KOBJECT_UEVENT, type \(type)")
            #expect(Self.verdict(program, [16, type, 0]) == Self.allowed, "NETLINK_ROUTE stays allowed")
        }
        // The kernel reads ints: junk in the upper halves still names the same family and protocol.
        #expect(Self.verdict(program, [16 | 1 << 32, 3, 9 | 7 << 32]) == Self.refused)
        #expect(Self.verdict(program, [2, 1, 0]) == Self.allowed, "AF_INET")
        #expect(Self.verdict(program, [40, 1, 0]).action == SeccompVerdict.errno, "Docker's own AF_VSOCK refusal still holds")
        // i386: socket (359) is checked like x86-64's; socketcall(SYS_SOCKET) cannot be, and is refused.
        #expect(Self.verdict(program, arch: Self.i386, nr: 359, [16, 3, 9]) == Self.refused)
        #expect(Self.verdict(program, arch: Self.i386, nr: 359, [16, 3, 0]) == Self.allowed)
        #expect(Self.verdict(program, arch: Self.i386, nr: 102, [1, 0]) == Self.refused, "socketcall(SYS_SOCKET)")
        #expect(Self.verdict(program, arch: Self.i386, nr: 102, [3, 0]) == Self.allowed, "socketcall(SYS_CONNECT)")
        #endif
    }

    @Test("A policy allowing socket unconditionally cannot take the refusal away (libseccomp would merge a rule away)")
    func unconditionalAllow() throws {
        #if arch(x86_64)
        let policy = SeccompPolicy(defaultAction: "SCMP_ACT_ERRNO", syscalls: [SeccompPolicy.Rule(names: ["socket"], action: "SCMP_ACT_ALLOW")])
        let program = try Self.program(policy)
        #expect(Self.verdict(program, [16, 3, 9]) == Self.refused)
        #expect(Self.verdict(program, [16, 3, 15]) == Self.refused)
        #expect(Self.verdict(program, [16, 3, 0]) == Self.allowed)
        #expect(Self.verdict(program, nr: 39, [0]).action == SeccompVerdict.errno, "getpid: the policy's default")
        #endif
    }
}

/// The refusals as the kernel answers them in real sandboxes, and as the recorder logs them.
@Suite("Host refusals in sandboxes", needsRoot)
struct HostRefusalsSandboxTests {
    static let probe = """
        import socket
        for name, proto in (("audit", 9), ("uevent", 15), ("route", 0)):
            try:
                socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto).close()
                print(name, "open")
            except OSError as error:
                print(name, error.errno)
        """

    @Test("Root cannot open audit or uevent netlink sockets under any profile; each refusal is logged as denied", arguments: bundledProfiles)
    func refused(profile: String) throws {
        try withSandbox(try profileSpec(profile)) { (sandbox: Sandbox) throws in
            let run = try sandbox.exec(ExecRequest(argv: ["python3", "-c", Self.probe], user: .root))
            #expect(run.out == "audit \(EPROTONOSUPPORT)\nuevent \(EPROTONOSUPPORT)\nroute open\n", "\(run.err)")
            let text = try String(contentsOfFile: sandbox.events.path, encoding: .utf8)
            let sockets = try text.split(separator: "\n").compactMap { line -> [String: Any]? in
                let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                guard event["syscall"] as? String == "socket", let args = event["args"] as? [String: Any],
                      args["domain"] as? Int == 16 else { return nil }
                return event
            }
            let decisions = sockets.map { (($0["args"] as? [String: Any])?["protocol"] as? Int ?? -1, $0["decision"] as? String ?? "?") }
            #expect(decisions.contains { $0 == (9, "denied") } && decisions.contains { $0 == (15, "denied") }, "\(decisions)")
            #expect(decisions.contains { $0 == (0, "allowed") }, "\(decisions)")
            #expect(sockets.filter { $0["decision"] as? String == "denied" }.allSatisfy { $0["errno_name"] as? String == "EPROTONOSUPPORT" })
        }
    }
}
