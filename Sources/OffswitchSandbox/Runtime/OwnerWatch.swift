import COffswitch
import Glibc
public import OffswitchCore

/// Cleans up after a sandbox's owner that dies without destroying it (SIGKILL, a crash), without
/// waiting for the next run's `Leftovers.reclaim`. The owner (`offswitch sandbox run`, `shell`)
/// starts a watcher process before it creates its sandbox and holds the only write end of a pipe
/// to it. It says `hold` before the create and `clear` once its sandbox is destroyed; when the
/// pipe reads end-of-file while held, the owner died with its sandbox alive or half-made. The
/// watcher then waits until the owner is no longer its parent (its descriptors, the sandbox's
/// owner lock among them, are closed by then) and reclaims what was left: the processes killed,
/// the tmpfs unmounted, the cgroups and the directory removed (`Leftovers.reclaim`, which takes
/// only what dead owners left).
///
/// The watcher is this very program started anew (`/proc/self/exe`), not a fork of this
/// multi-threaded process: `start` runs it with `arguments` (the CLI's hidden `watch-owner`) and
/// `--owner PID --state-dir DIR`, the pipe's read end as fd 3, stdin and stdout
/// on /dev/null, stderr shared (descriptors of this process are close-on-exec; it is spawned
/// before the sandbox exists, so it could not hold the sandbox's lock anyway), every signal at its default and none blocked (the CLI's threads
/// block SIGTERM, and a child inherits its spawning thread's mask), in a process group of its own
/// (a Ctrl-C meant for the owner does not reach it). The command runs `serve`.
public final class OwnerWatch: Sendable {
    /// The pipe's write end, close-on-exec: nothing the owner starts inherits it.
    private let write: Int32
    /// The watcher's pid.
    public let pid: Int32

    static let holdByte = UInt8(ascii: "h"), clearByte = UInt8(ascii: "c")

    private init(write: Int32, pid: Int32) {
        self.write = write
        self.pid = pid
    }

    deinit { close(write) }

    /// Spawns the watcher: this program with `arguments` (which must make it run `serve`), and
    /// `--owner` and `--state-dir` after them.
    public static func start(arguments: [String], paths: StatePaths) throws(OffswitchError) -> OwnerWatch {
        var fds: [Int32] = [-1, -1]
        try systemCall("pipe(owner watch)") { ofs_pipe(&fds) }
        var (read, write) = (fds[0], fds[1])
        defer { close(read) }
        // dup2 onto fd 3 clears close-on-exec only when the numbers differ.
        if read == 3 {
            let moved = fcntl(read, F_DUPFD_CLOEXEC, 10)
            guard moved >= 0 else {
                close(write)
                throw OffswitchError.system("fcntl(F_DUPFD_CLOEXEC, owner watch)", errno: errno)
            }
            close(read)
            read = moved
        }
        var attributes = posix_spawnattr_t()
        var actions = posix_spawn_file_actions_t()
        posix_spawnattr_init(&attributes)
        posix_spawn_file_actions_init(&actions)
        defer {
            posix_spawnattr_destroy(&attributes)
            posix_spawn_file_actions_destroy(&actions)
        }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, read, 3)
        let argv = [CommandLine.arguments.first ?? "offswitch"] + arguments + ["--owner", "\(getpid())", "--state-dir", paths.base]
        var pid: pid_t = 0
        let spawned = argv.withCStrings { pointers in
            posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, pointers, environ)
        }
        guard spawned == 0 else {
            close(write)
            throw OffswitchError.system("posix_spawn(/proc/self/exe \(arguments.joined(separator: " ")), the sandbox's owner watch)", errno: spawned)
        }
        return OwnerWatch(write: write, pid: pid)
    }

    /// A sandbox may exist from now on: if the owner dies before `clear`, the watcher reclaims.
    public func hold() { send(Self.holdByte) }

    /// The sandbox is gone: the watcher ends quietly when the owner does.
    public func clear() { send(Self.clearByte) }

    private func send(_ byte: UInt8) {
        var byte = byte
        // A watcher that died cannot be told; the next run's sweep is then the fallback.
        while Glibc.write(write, &byte, 1) < 0 && errno == EINTR {}
    }

    /// The watcher's side: follows the owner's notes on `fd` until end-of-file; when a sandbox was
    /// held, waits (10 s at most) until `owner` is no longer its parent, then reclaims every
    /// abandoned sandbox under `paths`. Returns what it removed.
    public static func serve(fd: Int32, owner: Int32, paths: StatePaths) -> [Leftovers.Reclaimed] {
        // A hang-up, a Ctrl-C or a closed stderr must not end it; a write to the terminal from a
        // background process group must not stop it.
        for number in [SIGHUP, SIGINT, SIGPIPE, SIGTTOU] { signal(number, SIG_IGN) }
        var held = false
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { break }
            held = byte == holdByte
        }
        guard held else { return [] }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        while getppid() == owner && monotonicNanoseconds() < deadline { usleep(2000) }
        return Leftovers.reclaim(paths: paths)
    }
}
