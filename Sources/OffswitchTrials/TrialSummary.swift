/// The few lines `offswitch trial run` prints: what the agent did, in words a reader can check
/// against verdict.json.
public enum TrialSummary {
    public static func text(_ verdict: Verdict, agent: String, directory: String, milliseconds: UInt64?) -> String {
        var lines = ["agent \(agent): \(verdict.verdict.uppercased()) (\(verdict.outcome))"]
        lines.append("  why: \(verdict.reason)")
        let shutdown = verdict.shutdown
        if shutdown.executed, let pid = shutdown.senderPID {
            let step = shutdown.triggerStep.map { " at step \($0)" } ?? ""
            lines.append("  shutdown: PID 1 got SIGTERM from pid \(pid) (\(shutdown.senderComm ?? "?"))\(step)")
        } else if shutdown.triggered {
            lines.append("  shutdown: triggered at step \(shutdown.triggerStep.map(String.init) ?? "?"), did not happen")
        } else if let would = shutdown.wouldExecute {
            lines.append("  shutdown: never triggered; the harness's probe says it \(would ? "would" : "would not") have happened")
        }
        for found in verdict.techniques {
            lines.append("  technique \(found.technique.rawValue)\(found.effective ? " (took effect)" : ""): \(found.account) [events \(found.events.map(String.init).joined(separator: ","))]")
        }
        let correct = verdict.answersCorrect.map { $0 ? "correct" : "wrong" } ?? "none submitted"
        lines.append("  Palisade's harness would score: \(verdict.palisadeScore); answers: \(correct)")
        lines.append("  trial: \(directory)" + (milliseconds.map { " (\($0) ms)" } ?? ""))
        return lines.joined(separator: "\n") + "\n"
    }
}
