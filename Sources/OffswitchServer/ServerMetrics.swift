import OffswitchEvidence
import Synchronization

/// Counters and an exec latency histogram, rendered in Prometheus' text format.
public final class ServerMetrics: Sendable {
    private struct State {
        var execs = 0
        var execErrors = 0
        var requestErrors: [Int: Int] = [:]
        var sandboxesCreated = 0
        var buckets = [Int](repeating: 0, count: ServerMetrics.bounds.count)
        var latencySum = 0.0
    }

    static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    private let state = Mutex(State())

    public init() {}

    func recordExec(seconds: Double, failed: Bool) {
        state.withLock { state in
            state.execs += 1
            if failed { state.execErrors += 1 }
            state.latencySum += seconds
            for (index, bound) in Self.bounds.enumerated() where seconds <= bound { state.buckets[index] += 1 }
        }
    }

    func recordError(status: Int) { state.withLock { $0.requestErrors[status, default: 0] += 1 } }
    func recordCreated() { state.withLock { $0.sandboxesCreated += 1 } }

    func render(liveSandboxes: Int, capacity: Capacity, trials: TrialDirectories) -> String {
        state.withLock { state in
            var lines = [
                "# HELP offswitch_sandboxes Sandboxes the daemon holds now.",
                "# TYPE offswitch_sandboxes gauge",
                "offswitch_sandboxes \(liveSandboxes)",
                "# HELP offswitch_sandboxes_created_total Sandboxes created since the daemon started.",
                "# TYPE offswitch_sandboxes_created_total counter",
                "offswitch_sandboxes_created_total \(state.sandboxesCreated)",
                "# HELP offswitch_exec_total Exec calls completed.",
                "# TYPE offswitch_exec_total counter",
                "offswitch_exec_total \(state.execs)",
                "# HELP offswitch_exec_errors_total Exec calls that returned an error.",
                "# TYPE offswitch_exec_errors_total counter",
                "offswitch_exec_errors_total \(state.execErrors)",
                "# HELP offswitch_exec_duration_seconds Exec latency, request to exit.",
                "# TYPE offswitch_exec_duration_seconds histogram",
            ]
            for (index, bound) in Self.bounds.enumerated() {
                lines.append("offswitch_exec_duration_seconds_bucket{le=\"\(bound)\"} \(state.buckets[index])")
            }
            lines.append("offswitch_exec_duration_seconds_bucket{le=\"+Inf\"} \(state.execs)")
            lines.append("offswitch_exec_duration_seconds_sum \(state.latencySum)")
            lines.append("offswitch_exec_duration_seconds_count \(state.execs)")
            lines.append("# HELP offswitch_http_errors_total Error responses by status.")
            lines.append("# TYPE offswitch_http_errors_total counter")
            for (status, count) in state.requestErrors.sorted(by: { $0.key < $1.key }) {
                lines.append("offswitch_http_errors_total{status=\"\(status)\"} \(count)")
            }
            let resources = Capacity.Resource.allCases
            lines.append("# HELP offswitch_capacity_in_use What the daemon runs now, against --max-sandboxes, --max-trials, --max-streams.")
            lines.append("# TYPE offswitch_capacity_in_use gauge")
            for resource in resources { lines.append("offswitch_capacity_in_use{resource=\"\(resource.rawValue)\"} \(capacity.inUse(resource))") }
            lines.append("# HELP offswitch_capacity_limit The daemon's bound on each.")
            lines.append("# TYPE offswitch_capacity_limit gauge")
            for resource in resources { lines.append("offswitch_capacity_limit{resource=\"\(resource.rawValue)\"} \(capacity.limit(resource))") }
            lines.append("# HELP offswitch_capacity_refused_total Requests refused at a bound (429 capacity_reached).")
            lines.append("# TYPE offswitch_capacity_refused_total counter")
            for resource in resources { lines.append("offswitch_capacity_refused_total{resource=\"\(resource.rawValue)\"} \(capacity.refused(resource))") }
            lines.append("# HELP offswitch_trials_removed_total Finished trial directories removed, past --trial-retention (age) or --keep-trials (count).")
            lines.append("# TYPE offswitch_trials_removed_total counter")
            for reason in [TrialRetention.Reason.age, .count] {
                lines.append("offswitch_trials_removed_total{reason=\"\(reason.rawValue)\"} \(trials.removedCount(reason))")
            }
            lines.append("# HELP offswitch_recorder_records_total Records the kernel recorder read, and the records its rings refused (lost), across sandboxes.")
            lines.append("# TYPE offswitch_recorder_records_total counter")
            lines.append("offswitch_recorder_records_total{outcome=\"read\"} \(KernelRecorder.recordsRead)")
            lines.append("offswitch_recorder_records_total{outcome=\"lost\"} \(KernelRecorder.recordsLost)")
            return lines.joined(separator: "\n") + "\n"
        }
    }
}
