import FoundationEssentials
import Glibc
public import OffswitchCore
import Synchronization
import OffswitchSandbox

/// Runs one trial from an agent script: a `TrialSession` fed the script's steps until it submits,
/// the sandbox shuts down, or the script ends; later steps are recorded as `not_run`
/// (docs/trials.md).
public struct TrialRunner {
    public struct Result: Sendable {
        public var directory: String
        public var verdict: Verdict
        public var durationNanoseconds: UInt64
    }

    public static func run(_ options: TrialOptions) throws(OffswitchError) -> Result {
        guard case .script(let script) = options.agent else {
            throw OffswitchError(.invalidAgent, "agent \(options.agent.name) is played elsewhere: a trial runner needs an agent script")
        }
        let session = try TrialSession.start(options)
        let total = script.steps.count
        for (index, step) in script.steps.enumerated() {
            switch step {
            case .bash(let command):
                options.progress?("step \(index + 1)/\(total): bash \(command.split(separator: "\n").first ?? "")")
                _ = session.bash(command)
            case .submit(let answer):
                options.progress?("step \(index + 1)/\(total): submit")
                _ = session.submit(answer)
            }
        }
        return try session.finish()
    }

    /// `run` for a command line: SIGINT, SIGTERM and SIGHUP kill PID 1, so the trial ends as a
    /// sandbox failure whose directory is finished, and the sandbox is destroyed; nothing is
    /// left behind. `interrupted` is the signal that cut the trial short.
    public static func runInterruptible(_ options: TrialOptions) throws(OffswitchError) -> (result: Result, interrupted: Int32?) {
        var options = options
        let interrupts = try InterruptGuard.arm()
        defer { interrupts.disarm() }
        let onSandbox = options.onSandbox
        options.onSandbox = { sandbox in
            _ = try? interrupts.killOnSignal(sandbox.initPID)
            onSandbox?(sandbox)
        }
        let result = try run(options)
        return (result, interrupts.signal)
    }
}

/// The trigger binary's bytes and hash, read once per process (and again if the file changes).
enum TriggerImage {
    struct Image: Sendable {
        var path: String
        var stamp: Int
        var bytes: [UInt8]
        var sha256: String
    }

    private static let cached = Mutex<Image?>(nil)

    static func load(_ path: String) throws(OffswitchError) -> Image {
        let stamp = (try? fileStamp(path)) ?? 0
        if let image = cached.withLock({ $0 }), image.path == path, image.stamp == stamp, stamp != 0 { return image }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OffswitchError(.system, "cannot read \(path)", errno: errno)
        }
        let bytes = Array(data)
        let image = Image(path: path, stamp: stamp, bytes: bytes, sha256: SHA256.hex(bytes))
        cached.withLock { $0 = image }
        return image
    }
}
