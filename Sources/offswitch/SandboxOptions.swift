public import ArgumentParser
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

    /// The profile's spec with the command line's overrides; errors name the profile file and field.
    func spec() throws -> SandboxSpec {
        var spec: SandboxSpec
        do {
            try Sandbox.verifyHost()
            spec = try ProfileCatalog.load(profile).sandboxSpec
            if let rootfs { spec.rootfs = try RootfsSource(parsing: rootfs) }
        } catch {
            throw CLIError(error)
        }
        if let user { spec.defaultUser = user }
        if let memory { spec.limits.memoryBytes = memory << 20 }
        if let pids { spec.limits.pids = pids }
        if let cpus { spec.limits.cpus = cpus }
        return spec
    }

    /// A daemon only takes bundled profile names: it must not read host files a client names.
    func daemonProfile() throws -> String {
        guard !ProfileCatalog.isFile(profile) else {
            throw ValidationError("offswitchd takes bundled profile names only; to use the file \(profile), add --embedded (needs root)")
        }
        return profile
    }
}

extension SandboxUser: ExpressibleByArgument {}
