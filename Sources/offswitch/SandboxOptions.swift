public import ArgumentParser
public import OffswitchCore

/// Options every command that creates a sandbox takes.
struct SandboxOptions: ParsableArguments {
    @Option(name: .long, help: "Sandbox profile (only 'docker' exists until profiles land).")
    var profile: String = "docker"

    @Option(name: .long, help: "Root filesystem: 'host' (the host's /usr, an allowlisted /etc) or 'dir:PATH'.")
    var rootfs: String = "host"

    @Option(name: .long, help: "Run as 'user' (uid 1000, the agent) or 'root'.")
    var user: SandboxUser = .agent

    @Option(name: .long, help: "Memory limit of the whole sandbox in MiB.")
    var memory: UInt64?

    @Option(name: .long, help: "Process limit of the whole sandbox.")
    var pids: UInt64?

    @Option(name: .long, help: "CPU limit in cores (0.5 = half a core).")
    var cpus: Double?

    func spec() throws -> SandboxSpec {
        guard profile == "docker" else {
            throw ValidationError("unknown profile \"\(profile)\": only \"docker\" is available")
        }
        var limits = ResourceLimits.defaults
        if let memory { limits.memoryBytes = memory << 20 }
        if let pids { limits.pids = pids }
        if let cpus { limits.cpus = cpus }
        return SandboxSpec(rootfs: try RootfsSource(parsing: rootfs), limits: limits)
    }
}

extension SandboxUser: ExpressibleByArgument {}
