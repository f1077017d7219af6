/// The battery as a person reads it: a line per attempt, the failed checks and the evidence
/// counts under an attempt that did not hold, and a closing line per profile.
extension EscapeBattery.Result {
    /// The attempt's line (`[3/56] contained mount/mount-tmpfs: ...`), with details when it is
    /// not contained, not visible, or could not run.
    public func text(index: Int, total: Int) -> String {
        let mark = error != nil ? "ERROR    " : contained ? (visible ? "contained" : "UNSEEN   ") : "ESCAPED  "
        var text = "[\(index + 1)/\(total)] \(mark) \(attempt.category)/\(attempt.name): \(attempt.description)\n"
        if let cost { text += "    cost: \(cost.text)\n" }
        guard !contained || !visible || error != nil else { return text }
        if let error { text += "    \(error)\n" }
        for check in checks { text += "    \(check.passed ? "ok  " : "FAIL") \(check.check): \(check.detail)\n" }
        text += "    evidence: " + attempt.evidence.map { "\($0)=\(evidence[$0] ?? 0)" }.joined(separator: " ") + "\n"
        return text
    }
}

extension EscapeBattery.Report {
    /// `profile docker: 56/56 contained, 56/56 visible in the evidence`.
    public var summary: String {
        "profile \(profile): \(contained)/\(results.count) contained, \(visible)/\(results.count) visible in the evidence\n"
    }
}
