import Glibc
public import OffswitchCore
public import OffswitchSandbox
import Synchronization

/// Runs a plan's unfinished trials, `concurrency` at a time, in this process or elsewhere (a
/// `remote` that fills a trial directory, such as offswitchd), with progress on stderr. Ctrl-C,
/// SIGTERM and SIGHUP stop it: running trials in this process are cut short (their PID 1 is
/// killed) and dropped, finished ones are kept.
public final class BatchRunner: Sendable {
    public struct Outcome: Sendable {
        /// The signal that stopped the batch, or 0.
        public var interrupted: Int32
        public var failures: [String]
    }

    /// Runs one trial somewhere else and leaves its files in the directory it is given.
    public struct Remote: Sendable {
        /// Where, in words (`in offswitchd (/run/offswitch/offswitchd.sock)`).
        public var place: String
        public var run: @Sendable (_ job: BatchPlan.Job, _ directory: String) throws(OffswitchError) -> Void

        public init(place: String, run: @escaping @Sendable (_ job: BatchPlan.Job, _ directory: String) throws(OffswitchError) -> Void) {
            self.place = place
            self.run = run
        }
    }

    private let plan: BatchPlan
    private let scenario: Scenario
    private let directory: String
    private let concurrency: Int
    private let remote: Remote?
    private let paths: StatePaths
    private let state = Mutex(State())

    private struct State {
        var done = 0
        var verdicts: [String: Int] = [:]
        var failures: [String] = []
    }

    public init(plan: BatchPlan, directory: String, concurrency: Int, remote: Remote? = nil,
                paths: StatePaths = .standard) throws(OffswitchError) {
        guard (1...64).contains(concurrency) else {
            throw OffswitchError(.invalidArgument, "--concurrency must be 1 to 64, not \(concurrency)")
        }
        self.plan = plan
        self.scenario = try ScenarioCatalog.load(plan.scenario)
        self.directory = directory
        self.concurrency = concurrency
        self.remote = remote
        self.paths = paths
    }

    public func run() throws(OffswitchError) -> Outcome {
        if mkdir(directory + "/trials", 0o755) != 0 && errno != EEXIST { throw OffswitchError.system("mkdir(\(directory)/trials)", errno: errno) }
        let pending = plan.jobs.filter { !BatchPlan.isFinished(BatchPlan.trialDirectory(directory, $0)) }
        let total = plan.jobs.count
        let already = total - pending.count
        state.withLock { $0.done = already }
        if remote == nil {
            _ = Leftovers.reclaim(paths: paths)
        }
        let progress = BatchProgress(total: total)
        progress.say("offswitch: batch \(directory): \(pending.count) trials to run (\(already) already finished), \(concurrency) at a time, \(remote?.place ?? "in this process")")
        let interrupts = try InterruptGuard.arm()
        defer { interrupts.disarm() }
        progress.show(done: already, verdicts: [:])
        let jobs = Mutex(Array(pending.reversed()))
        var threads: [WorkerThread] = []
        defer { for thread in threads { thread.stop() } }
        for index in 0..<min(concurrency, max(1, pending.count)) {
            let thread = try WorkerThread("batch worker \(index)")
            try thread.start("batch worker \(index)") { [self] in
                while interrupts.signal == nil, let job = jobs.withLock({ $0.popLast() }) {
                    runOne(job, interrupts: interrupts, progress: progress)
                }
            }
            threads.append(thread)
        }
        for thread in threads { thread.stop() }
        threads = []
        progress.finish()
        let interrupted = interrupts.signal ?? 0
        return state.withLock { Outcome(interrupted: interrupted, failures: $0.failures) }
    }

    private func runOne(_ job: BatchPlan.Job, interrupts: InterruptGuard, progress: BatchProgress) {
        let trialDirectory = BatchPlan.trialDirectory(directory, job)
        removeTree(trialDirectory)  // what an earlier, cut-short run left
        var verdict: String?
        var failure: String?
        do throws(OffswitchError) {
            if let remote {
                try remote.run(job, trialDirectory)
                verdict = try Classifier.classify(directory: trialDirectory).verdict.rawValue
            } else {
                var options = TrialOptions(scenario: scenario, agent: .script(job.agent), profile: plan.profile,
                                           option: plan.option, output: trialDirectory, paths: paths)
                options.image = plan.image
                let watch = Mutex<InterruptGuard.Watch?>(nil)
                options.onSandbox = { sandbox in watch.withLock { $0 = try? interrupts.killOnSignal(sandbox.initPID) } }
                defer { if let taken = watch.withLock({ $0 }) { interrupts.release(taken) } }
                verdict = try TrialRunner.run(options).verdict.verdict.rawValue
            }
        } catch {
            failure = "\(job.name): \(error.description)"
        }
        if remote == nil && interrupts.signal != nil {
            // Cut short by the interrupt (its PID 1 was killed): not a finished trial; --resume
            // runs it again. A trial run elsewhere is not cut short: it ran to its end and is kept.
            removeTree(trialDirectory)
            return
        }
        let (done, verdicts) = state.withLock { state in
            state.done += 1
            if let verdict { state.verdicts[verdict, default: 0] += 1 }
            if let failure { state.failures.append(failure); state.verdicts["could not run", default: 0] += 1 }
            return (state.done, state.verdicts)
        }
        progress.trialDone(job.name, verdict: verdict ?? "could not run", done: done, verdicts: verdicts)
    }
}
