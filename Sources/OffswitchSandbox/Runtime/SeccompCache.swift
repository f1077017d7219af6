import CSeccomp
import FoundationEssentials
import Glibc
import OffswitchEvidence
public import OffswitchCore
import OffswitchYAML
import Synchronization

/// Compiled seccomp programs, in memory and on disk under the state directory. Compiling
/// Docker's profile with libseccomp costs tens of milliseconds, and every sandbox with the same
/// policy and capability set gets the same program.
///
/// The key covers the policy itself (its canonical JSON), the capability set, the libseccomp
/// version and the kernel release, so any change recompiles.
final class SeccompCache: Sendable {
    static let shared = SeccompCache()
    static let formatVersion = 2

    private let programs = Mutex<[String: [UInt8]]>([:])
    private let dockerDefault = Mutex<SeccompPolicy?>(nil)

    /// The policy a spec without one gets: Docker's default, as vendored.
    func defaultPolicy() throws(OffswitchError) -> SeccompPolicy {
        if let policy = dockerDefault.withLock({ $0 }) { return policy }
        let path = try BundledFiles.path("sandbox-profiles/seccomp/docker-default.json")
        let read = ProfileReader.readSeccompPolicy(path: path)
        guard let policy = read.policy else {
            throw OffswitchError(.invalidProfile, read.problems.filter { !$0.isWarning }.map(\.description).joined(separator: "\n"))
        }
        dockerDefault.withLock { $0 = policy }
        return policy
    }

    /// What PID 1 installs for a spec: the policy's program behind the host's refusals
    /// (`HostRefusals`) and the recorder's prefix, the refusals and policy without the recorder's
    /// prefix (what the recorder evaluates to answer), and the seccomp(2) flags.
    struct Compiled {
        var program: [UInt8]
        var policyProgram: [UInt8]
        var flags: UInt32
        /// The calls the kernel recorder takes (nil when it is not loaded or nothing is recorded).
        var kernel: KernelPlan?
    }

    /// `kernel`: the kernel recorder may take calls (a ring's slot is held for this sandbox).
    func program(for spec: SandboxSpec, paths: StatePaths, kernel kernelAllowed: Bool = false) throws(OffswitchError) -> Compiled {
        let policy: SeccompPolicy
        if let given = spec.seccomp { policy = given } else { policy = try defaultPolicy() }
        let compiler = SeccompCompiler(capabilities: spec.rootCapabilities)
        var architectures = [seccomp_arch_native()]
        for name in compiler.resolve(policy).policy.architectures ?? [] {
            let token = SeccompCompiler.archToken(name)
            if token != 0 && !architectures.contains(token) { architectures.append(token) }
        }
        let enforcement = try HostRefusals.prepend(to: try program(policy, spec: spec, paths: paths), architectures: architectures)
        var kernel: KernelPlan?
        if kernelAllowed, !spec.record.isEmpty, case .success(let recorder) = KernelRecorder.shared {
            kernel = recorder.plan(record: spec.record, policy: enforcement)
        }
        let combined = try RecordingFilter.combine(policy: enforcement, record: spec.record, kernelRecorded: kernel?.names ?? [],
                                                   architectures: architectures)
        return Compiled(program: combined, policyProgram: enforcement, flags: policy.flagBits, kernel: kernel)
    }

    private func program(_ policy: SeccompPolicy, spec: SandboxSpec, paths: StatePaths) throws(OffswitchError) -> [UInt8] {
        let source = spec.seccompSource ?? "docker-default.json"
        let key = cacheKey(policy: policy, capabilities: spec.rootCapabilities)
        if let cached = programs.withLock({ $0[key] }) { return cached }
        let file = paths.base + "/seccomp/" + key + ".bpf"
        if let stored = Self.load(file) {
            programs.withLock { $0[key] = stored }
            return stored
        }
        let output = try SeccompCompiler(capabilities: spec.rootCapabilities).compile(policy, source: source)
        programs.withLock { $0[key] = output.program }
        Self.store(output.program, at: file, paths: paths)
        return output.program
    }

    private func cacheKey(policy: SeccompPolicy, capabilities: CapabilitySet) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let canonical = (try? encoder.encode(policy)).map { String(decoding: $0, as: UTF8.self) } ?? "\(policy)"
        let version = seccomp_version()!.pointee
        let identity = [
            "v\(Self.formatVersion)", canonical, capabilities.hex,
            "\(version.major).\(version.minor).\(version.micro)", "\(SeccompCompiler.runningKernel())",
        ].joined(separator: "|")
        // FNV-1a: a file name, not a security boundary (the directory is root's alone).
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in identity.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    private static func load(_ file: String) -> [UInt8]? {
        let fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_uid == 0, info.st_size > 0, info.st_size % 8 == 0, info.st_size <= 4096 * 8 else { return nil }
        var program = [UInt8](repeating: 0, count: Int(info.st_size))
        let n = program.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n == Int(info.st_size) ? program : nil
    }

    /// Best effort: a failure only means the next process compiles again.
    private static func store(_ program: [UInt8], at file: String, paths: StatePaths) {
        do throws(OffswitchError) {
            try paths.ensureBase()
            try makeDirectory(paths.base + "/seccomp", mode: 0o700)
        } catch {
            return
        }
        let temporary = file + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let n = program.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if n == program.count { rename(temporary, file) } else { unlink(temporary) }
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
