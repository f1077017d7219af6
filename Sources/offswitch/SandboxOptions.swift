public import ArgumentParser
import OffswitchAPI
public import OffswitchCore
import OffswitchSandbox

/// Options every command that creates a sandbox takes. The profile gives every default; the
/// other options override it.
struct SandboxOptions: ParsableArguments {
    @Option(name: .long, help: "Sandbox profile: a bundled name (docker, hardened, observe) or a .yaml file; see `offswitch profile ls`.")
    var profile: String = ProfileCatalog.defaultName

    @Option(name: .long, help: "Root filesystem: 'host' (the host's /usr, an allowlisted /etc), 'dir:PATH' or 'image:REF' (default: the profile's).")
    var rootfs: String?

    @Option(name: .long, help: "An image of the store as the root filesystem (see `offswitch image ls`); the same as --rootfs image:REF.")
    var image: String?

    @Option(name: .long, help: "Run as 'user' (uid 1000, the agent) or 'root' (default: the profile's, normally user).")
    var user: SandboxUser?

    @Option(name: .long, help: "Memory limit of the whole sandbox in MiB (default: the profile's).")
    var memory: UInt64?

    @Option(name: .long, help: "Process limit of the whole sandbox (default: the profile's).")
    var pids: UInt64?

    @Option(name: .long, help: "CPU limit in cores, 0.5 = half a core (default: the profile's).")
    var cpus: Double?

    @Flag(inversion: .prefixedNo, help: "--no-new-privileges sets no_new_privs on every process (setuid programs and file capabilities give nothing); --new-privileges lets them work, Docker's default (default: the profile's).")
    var newPrivileges: Bool?

    func validate() throws {
        if image != nil && rootfs != nil { throw ValidationError("--image and --rootfs both name the root filesystem; give one") }
    }

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
            if let user {
                spec.defaultUser = user
                spec.defaultUserChosen = true
            }
            return spec
        }
    }

    private func body(hostname: String? = nil) -> CreateSandboxBody {
        CreateSandboxBody(profile: profile, rootfs: image.map { "image:" + $0 } ?? rootfs, hostname: hostname, limits: .init(memory_mib: memory, pids: pids, cpus: cpus),
                          no_new_privileges: newPrivileges.map { !$0 })
    }
}

extension SandboxUser: ExpressibleByArgument {}
