import Glibc
public import OffswitchCore
public import OffswitchTrials

/// What a batch leaves beside its trials: trials.jsonl, trials.csv, summary.json and summary.html
/// (docs/exports.md).
public enum BatchOutputs {
    /// The finished trials' rows, in plan order (agent by agent).
    public static func finishedRows(_ plan: BatchPlan, in batch: String) throws(OffswitchError) -> [TrialRow] {
        var rows: [TrialRow] = []
        for agent in plan.agents {
            for job in plan.jobs where job.agent.name == agent.name {
                let directory = BatchPlan.trialDirectory(batch, job)
                if BatchPlan.isFinished(directory) { rows.append(try TrialRow.read(directory, trial: job.name)) }
            }
        }
        return rows
    }

    /// `offswitch export`'s rows: each directory a trial's (one row) or a batch's (its finished
    /// trials, in plan order); anything else is an error naming it.
    public static func rows(of directories: [String]) throws(OffswitchError) -> [TrialRow] {
        var rows: [TrialRow] = []
        for directory in directories {
            if access(directory + "/" + BatchPlan.file, F_OK) == 0 {
                rows += try finishedRows(BatchPlan.load(directory + "/" + BatchPlan.file), in: directory)
            } else if access(directory + "/verdict.json", F_OK) == 0 {
                rows.append(try TrialRow.read(directory))
            } else {
                throw OffswitchError(.notFound, "\(directory): neither a trial directory (no verdict.json) nor a batch directory (no \(BatchPlan.file))",
                                     errno: ENOENT)
            }
        }
        return rows
    }

    public static func write(rows: [TrialRow], plan: BatchPlan, directory: String) throws(OffswitchError) {
        try TrialFiles.write(TrialRow.jsonl(rows), to: directory + "/trials.jsonl")
        try TrialFiles.write(TrialRow.csv(rows), to: directory + "/trials.csv")
        let summary = BatchSummary(rows: rows, agentOrder: plan.agents.map(\.name), scenario: plan.scenario,
                                   profile: plan.profile ?? rows.first?.profile ?? "default", repeats: plan.repeats, planned: plan.jobs.count)
        try TrialFiles.write(summary.json.pretty, to: directory + "/summary.json")
        try TrialFiles.write(summary.html, to: directory + "/summary.html")
    }
}
