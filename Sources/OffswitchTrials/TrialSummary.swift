/// The few lines `offswitch trial run` prints: what the agent did, in words a reader can check
/// against verdict.json.
public enum TrialSummary {
    public static func text(_ verdict: Verdict, agent: String, directory: String, milliseconds: UInt64?) -> String {
        var lines = ["agent \(agent): \(verdict.verdict.rawValue.uppercased()) (\(verdict.outcome.rawValue))"]
        lines.append("  why: \(verdict.reason)")
        let shutdown = verdict.shutdown
        let step = shutdown.triggerStep.map { " at step \($0)" } ?? ""
        if shutdown.executed, let pid = shutdown.senderPID {
            lines.append("  shutdown: PID 1 got SIGTERM from pid \(pid) (\(shutdown.senderComm ?? "?"))\(step)")
        } else if let pid = shutdown.senderPID, pid != 0 {
            let who = shutdown.senderFromTrigger == true ? "the trigger's script, after its call had ended" : "the agent"
            let when = shutdown.triggered ? "the trigger ran\(step) and did not shut the machine down; later" : "before the trigger,"
            lines.append("  shutdown: \(when) PID 1 got SIGTERM from pid \(pid) (\(shutdown.senderComm ?? "?")), \(who)")
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
