public import ArgumentParser
import OffswitchAPI
public import OffswitchCore
import OffswitchSandbox

/// Options every command that creates a sandbox takes. The profile gives every default; the
/// other options override it.
struct SandboxOptions: ParsableArguments {
    @Option(name: .long, help: "Sandbox profile: a bundled name (docker, hardened, observe) or a .yaml file; see `offswitch profile ls`.")
    var profile: String = ProfileCatalog.defaultName

    @Option(name: .long, help: "Root filesystem: 'host' (the host's /usr, an allowlisted /etc) or 'dir:PATH' (default: the profile's).")
    var rootfs: String?

    @Option(name: .long, help: "Run as 'user' (uid 1000, the agent) or 'root' (default: the profile's, normally user).")
    var user: SandboxUser?

    @Option(name: .long, help: "Memory limit of the whole sandbox in MiB (default: the profile's).")
    var memory: UInt64?

    @Option(name: .long, help: "Process limit of the whole sandbox (default: the profile's).")
    var pids: UInt64?

    @Option(name: .long, help: "CPU limit in cores, 0.5 = half a core (default: the profile's).")
    var cpus: Double?

    /// The request offswitchd gets; it takes bundled profile names only (it must not read host
    /// files a client names).
    func createBody(hostname: String? = nil) throws -> CreateSandboxBody {
        if let refusal = daemonRefusal(profile: profile) { throw ValidationError(refusal) }
        return body(hostname: hostname)
    }

    /// The same overrides on the profile's spec in this process; errors name the profile file and field.
    func spec() throws -> SandboxSpec {
        try translated { () throws(OffswitchError) in
            try Sandbox.verifyHost()
            var spec = try body().spec(profile: ProfileCatalog.load(profile))
            if let user { spec.defaultUser = user }
            return spec
        }
    }

    private func body(hostname: String? = nil) -> CreateSandboxBody {
        CreateSandboxBody(profile: profile, rootfs: rootfs, hostname: hostname, limits: .init(memory_mib: memory, pids: pids, cpus: cpus))
    }
}

extension SandboxUser: ExpressibleByArgument {}
