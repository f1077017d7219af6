import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// Each OCI action and comparator, compiled by our loader and answered by the kernel inside a
/// real sandbox. The probe calls getpriority(2) (nr 140 on x86-64, which nothing else in the probe
/// calls) through ctypes and prints the result, the errno, and whether a SIGSYS handler ran.
@Suite("Seccomp actions and comparators, answered by the kernel", needsRoot)
struct SeccompActionTests {
    static let probe = """
        import ctypes, signal, sys
        trapped = []
        signal.signal(signal.SIGSYS, lambda *a: trapped.append(1))
        libc = ctypes.CDLL(None, use_errno=True)
        for who in sys.argv[1:]:
            ctypes.set_errno(0)
            rc = libc.syscall(140, 0, ctypes.c_ulong(int(who, 0)))
            print(rc, ctypes.get_errno(), "trapped" if trapped else "-", flush=True)
        """

    /// A policy allowing everything except what `rule` says about getpriority.
    static func spec(_ rule: SeccompPolicy.Rule, defaultAction: String = "SCMP_ACT_ALLOW") -> SandboxSpec {
        var spec = SandboxSpec()
        spec.seccomp = SeccompPolicy(defaultAction: defaultAction, syscalls: [rule])
        spec.seccompSource = "test policy"
        return spec
    }

    static func run(_ spec: SandboxSpec, _ arguments: [String] = ["0"]) throws -> ExecResult {
        try withSandbox(spec) { (sandbox: Sandbox) throws in
            try sandbox.exec(ExecRequest(argv: ["python3", "-c", probe] + arguments, timeoutSeconds: 60))
        }
    }

    /// (action, errnoRet, expected: exit status and the probe's line, or nil when killed). The raw
    /// getpriority syscall returns 20 - nice, so 20 when it ran.
    static let actions: [(String, UInt32?, Int32, String?)] = [
        ("SCMP_ACT_ALLOW", nil, 0, "20 0 -\n"),  // under a LOG default, below
        ("SCMP_ACT_ERRNO", 42, 0, "-1 42 -\n"),
        ("SCMP_ACT_ERRNO", nil, 0, "-1 1 -\n"),  // EPERM when errnoRet is absent
        ("SCMP_ACT_LOG", nil, 0, "20 0 -\n"),
        // Not run, SIGSYS delivered; the return register still holds the syscall number (140).
        ("SCMP_ACT_TRAP", nil, 0, "140 0 trapped\n"),
        ("SCMP_ACT_KILL", nil, 128 + SIGSYS, nil),
        ("SCMP_ACT_KILL_THREAD", nil, 128 + SIGSYS, nil),
        ("SCMP_ACT_KILL_PROCESS", nil, 128 + SIGSYS, nil),
        // No recorder is attached yet (the evidence layer adds it): the kernel answers ENOSYS.
        ("SCMP_ACT_NOTIFY", nil, 0, "-1 38 -\n"),
    ]

    @Test("Every action", arguments: 0..<actions.count)
    func action(index: Int) throws {
        let (action, errno, status, line) = Self.actions[index]
        let rule = SeccompPolicy.Rule(names: ["getpriority"], action: action, errnoRet: errno)
        let result = try Self.run(Self.spec(rule, defaultAction: action == "SCMP_ACT_ALLOW" ? "SCMP_ACT_LOG" : "SCMP_ACT_ALLOW"))
        #expect(result.exitCode == status, "\(action): \(result.out) \(result.err)")
        if let line {
            #expect(result.out == line, "\(action): \(result.err)")
        } else {
            #expect(result.signal == SIGSYS && result.out.isEmpty, "\(action): \(result.out)")
        }
    }

    /// (comparator, value, valueTwo, argument values that match, values that do not).
    static let comparators: [(String, UInt64, UInt64?, [String], [String])] = [
        ("SCMP_CMP_NE", 5, nil, ["4", "6"], ["5"]),
        ("SCMP_CMP_LT", 5, nil, ["0", "4"], ["5", "6"]),
        ("SCMP_CMP_LE", 5, nil, ["4", "5"], ["6"]),
        ("SCMP_CMP_EQ", 5, nil, ["5"], ["4", "6"]),
        ("SCMP_CMP_GE", 5, nil, ["5", "6"], ["4"]),
        ("SCMP_CMP_GT", 5, nil, ["6"], ["4", "5"]),
        ("SCMP_CMP_MASKED_EQ", 0xF0, 0x50, ["0x50", "0x5a"], ["0x60", "0x0a"]),
    ]

    @Test("Every comparator matches what it should and nothing else", arguments: 0..<comparators.count)
    func comparator(index: Int) throws {
        let (op, value, valueTwo, matching, other) = Self.comparators[index]
        let rule = SeccompPolicy.Rule(names: ["getpriority"], action: "SCMP_ACT_ERRNO", errnoRet: 42,
                                      args: [SeccompPolicy.Argument(index: 1, value: value, valueTwo: valueTwo, op: op)])
        let result = try Self.run(Self.spec(rule), matching + other)
        let errnos = result.out.split(separator: "\n").map { $0.split(separator: " ").dropFirst().first.map(String.init) ?? "" }
        #expect(errnos.count == matching.count + other.count, "\(op): \(result.out) \(result.err)")
        for (position, argument) in (matching + other).enumerated() where position < errnos.count {
            let denied = errnos[position] == "42"
            #expect(denied == (position < matching.count), "\(op) with \(argument): errno \(errnos[position])")
        }
    }

    @Test("Policy flags are passed to seccomp(2), which accepts LOG, SPEC_ALLOW and TSYNC")
    func flags() throws {
        var spec = SandboxSpec()
        spec.seccomp = SeccompPolicy(
            defaultAction: "SCMP_ACT_ALLOW",
            syscalls: [SeccompPolicy.Rule(names: ["getpriority"], action: "SCMP_ACT_ERRNO", errnoRet: 42)],
            flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"])
        #expect(spec.seccomp?.flagBits == 7)
        let result = try Self.run(spec)
        #expect(result.out == "-1 42 -\n", "\(result.err)")
    }

    @Test("Docker's profile as in Docker: keyctl and unshare EPERM without CAP_SYS_ADMIN, clone3 ENOSYS")
    func dockerBehaviour() throws {
        let script = """
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            for name, nr, args in [("keyctl", 250, (0,)), ("unshare", 272, (0x10000000,)), ("clone3", 435, (0, 0)),
                                   ("mount", 165, (0, 0, 0, 0, 0))]:
                ctypes.set_errno(0)
                rc = libc.syscall(nr, *args)
                print(name, rc, ctypes.get_errno())
            """
        try withSandbox(try profileSpec("docker")) { (sandbox: Sandbox) throws in
            for user in SandboxUser.allCases {
                let result = try sandbox.exec(ExecRequest(argv: ["python3", "-c", script], user: user))
                #expect(result.out == "keyctl -1 1\nunshare -1 1\nclone3 -1 38\nmount -1 1\n", "\(user): \(result.out) \(result.err)")
            }
        }
    }
}
