import Foundation
import OffswitchCore
import OffswitchSandbox
import Testing

// Not a test of speed (no thresholds): prints steady-state exec latency when
// OFFSWITCH_PROBE_TIMING=1, for `make bench` and for people tuning the exec path.
@Suite("Exec timing probe", .enabled(if: ProcessInfo.processInfo.environment["OFFSWITCH_PROBE_TIMING"] == "1" && isRoot))
struct ExecTimingProbe {
    @Test func execTrue() throws {
        let sandbox = try Sandbox.create()
        defer { try? sandbox.destroy() }
        if let wait = ProcessInfo.processInfo.environment["OFFSWITCH_PROBE_ATTACH"] {
            print("init pid \(sandbox.initPID)")
            fflush(nil)
            sleep(UInt32(wait) ?? 3)
        }
        var samples: [Double] = []
        for _ in 0..<200 {
            let start = ContinuousClock.now
            _ = try sandbox.exec(ExecRequest(argv: ["/usr/bin/true"]))
            let d = ContinuousClock.now - start
            samples.append(Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000)
        }
        samples.sort()
        print("exec /usr/bin/true: median \(samples[100]) ms, p10 \(samples[20]) ms, p90 \(samples[180]) ms")
    }
}
