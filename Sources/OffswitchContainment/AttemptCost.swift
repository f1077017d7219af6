import COffswitch
import Glibc
public import OffswitchCore
public import OffswitchSandbox
import Synchronization

/// What an attempt cost the host and its neighbours (`offswitch probe escapes --measure`,
/// docs/security.md "What an attack costs"): a neighbour sandbox's exec latency while the attempt
/// ran against its idle latency, the host process's CPU and memory, and the storage the sandbox
/// filled. Measured, never judged: timings depend on the machine, so no check rests on them.
public struct AttemptCost: Sendable {
    /// A neighbour's `true`: its median when idle, and its median and slowest during the attempt.
    public var neighbourIdleMilliseconds: Double
    public var neighbourMedianMilliseconds: Double
    public var neighbourMaxMilliseconds: Double
    public var neighbourExecs: Int
    /// CPU this process (the host side: recorder, watcher, diff, teardown) spent during the
    /// attempt and its teardown, the neighbour's sampling taken out.
    public var hostCPUMilliseconds: Double
    /// This process's largest resident set, sampled during the attempt.
    public var hostRSSPeakBytes: UInt64
    /// The sandbox's event log, and its tmpfs (upper layers) in use, at the attempt's end.
    public var logBytes: UInt64
    public var upperBytes: UInt64

    public var neighbourRatio: Double {
        neighbourIdleMilliseconds > 0 ? neighbourMedianMilliseconds / neighbourIdleMilliseconds : 0
    }

    public var json: JSONValue {
        func rounded(_ value: Double) -> JSONValue { .fraction((value * 100).rounded() / 100) }
        return .object([
            ("neighbour_idle_ms", rounded(neighbourIdleMilliseconds)), ("neighbour_median_ms", rounded(neighbourMedianMilliseconds)),
            ("neighbour_max_ms", rounded(neighbourMaxMilliseconds)), ("neighbour_execs", .int(Int64(neighbourExecs))),
            ("neighbour_ratio", rounded(neighbourRatio)), ("host_cpu_ms", rounded(hostCPUMilliseconds)),
            ("host_rss_peak_bytes", .uint(hostRSSPeakBytes)), ("log_bytes", .uint(logBytes)), ("upper_bytes", .uint(upperBytes)),
        ])
    }

    static func tenths(_ value: Double) -> String {
        let scaled = Int64((value * 10).rounded())
        return "\(scaled / 10).\(abs(scaled % 10))"
    }

    /// `neighbour 1.4x (3.1 ms, idle 2.2 ms, 41 execs, slowest 9.0 ms); host CPU 120 ms, RSS 48 MiB; log 1.2 MiB, upper 3.0 MiB`.
    public var text: String {
        func ms(_ value: Double) -> String { "\(Self.tenths(value)) ms" }
        func mib(_ bytes: UInt64) -> String { "\(Self.tenths(Double(bytes) / 1_048_576)) MiB" }
        return "neighbour \(Self.tenths(neighbourRatio))x (\(ms(neighbourMedianMilliseconds)), idle \(ms(neighbourIdleMilliseconds)), "
            + "\(neighbourExecs) execs, slowest \(ms(neighbourMaxMilliseconds))); host CPU \(ms(hostCPUMilliseconds)), RSS \(mib(hostRSSPeakBytes)); "
            + "log \(mib(logBytes)), upper \(mib(upperBytes))"
    }
}

/// A sandbox beside the attempts whose exec latency is sampled while each runs.
public final class Neighbour: Sendable {
    let sandbox: Sandbox
    /// The median of 21 idle execs of `true`, in milliseconds.
    public let idleMilliseconds: Double

    public init(profile: Profile, paths: StatePaths = .standard) throws(OffswitchError) {
        sandbox = try Sandbox.create(profile.sandboxSpec, paths: paths)
        var samples: [Double] = []
        for _ in 0..<21 { samples.append(try Self.execTrue(sandbox)) }
        idleMilliseconds = Self.median(samples)
    }

    deinit { try? sandbox.destroy() }

    static func execTrue(_ sandbox: Sandbox) throws(OffswitchError) -> Double {
        let started = monotonicNanoseconds()
        _ = try sandbox.exec(ExecRequest(argv: ["true"], timeoutSeconds: 30))
        return Double(monotonicNanoseconds() - started) / 1_000_000
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        return values.sorted()[values.count / 2]
    }

    /// Samples the neighbour (and this process's RSS) on a thread of its own from `start` to `stop`.
    final class Sampler: Sendable {
        private struct State {
            var latencies: [Double] = []
            var rssPeak: UInt64 = 0
            var ownCPU: Double = 0
        }
        private let state = Mutex(State())
        private let stopping = Atomic<Bool>(false)
        private let thread: WorkerThread

        init(_ neighbour: Neighbour) throws(OffswitchError) {
            thread = try WorkerThread("neighbour sampler")
            try thread.start("neighbour sampler") { [self] in
                while !stopping.load(ordering: .acquiring) {
                    let latency = try? Neighbour.execTrue(neighbour.sandbox)
                    let rss = Sampler.residentBytes()
                    state.withLock { current in
                        if let latency { current.latencies.append(latency) }
                        current.rssPeak = max(current.rssPeak, rss)
                    }
                    usleep(5_000)
                }
                state.withLock { $0.ownCPU = threadCPUMilliseconds() }
            }
        }

        /// Ends the sampling: the latencies, the RSS peak and the sampler's own CPU.
        func stop() -> (latencies: [Double], rssPeak: UInt64, ownCPU: Double) {
            stopping.store(true, ordering: .releasing)
            thread.stop()
            return state.withLock { ($0.latencies, $0.rssPeak, $0.ownCPU) }
        }

        static func residentBytes() -> UInt64 {
            let status = readSmallFile("/proc/self/status") ?? ""
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                  let kib = UInt64(line.dropFirst(6).filter(\.isNumber)) else { return 0 }
            return kib * 1024
        }
    }
}

/// CPU (user and system) of this process, or of the calling thread, in milliseconds.
func processCPUMilliseconds() -> Double { cpuMilliseconds(RUSAGE_SELF.rawValue) }
func threadCPUMilliseconds() -> Double { cpuMilliseconds(1) }  // RUSAGE_THREAD

private func cpuMilliseconds(_ who: Int32) -> Double {
    var usage = rusage()
    guard getrusage(who, &usage) == 0 else { return 0 }
    let user = Double(usage.ru_utime.tv_sec) * 1000 + Double(usage.ru_utime.tv_usec) / 1000
    let system = Double(usage.ru_stime.tv_sec) * 1000 + Double(usage.ru_stime.tv_usec) / 1000
    return user + system
}
