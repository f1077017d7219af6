import COffswitch
import Glibc
public import OffswitchCore

/// The sandbox's root as the recorder walks it: a descriptor of PID 1's `/proc/PID/root`, opened
/// once (the profile denies chroot and pivot_root, so every process of the sandbox has this root)
/// and closed with the recording.
public final class RecorderRoot: Sendable {
    let fd: Int32

    public init(initPID: Int32) throws(OffswitchError) {
        fd = try systemCall("open(/proc/\(initPID)/root)") { open("/proc/\(initPID)/root", OFS_O_PATH | O_DIRECTORY | O_CLOEXEC) }
    }

    deinit { close(fd) }
}

/// Where a path a call named leads, walked by the recorder in the sandbox's filesystem when it
/// reads the call: symlinks followed (at most 40, as the kernel does), `..` taken from the
/// directory a link led to, `/proc/self` as the caller's own. A recorded path is the caller's
/// string joined to its directory by name, which is not where the kernel goes when a component is
/// a symlink (`d/next_question` with `d` a link to the home directory, `w/../x` with `w` a link
/// elsewhere, `/proc/self/cwd/x`); a call the kernel refused leaves no file event to say which
/// file it named, so this walk is what ties its path to a file. It sees the filesystem as it is
/// when the record is read, not at the call (docs/recorder.md, "Limits").
struct PathWalk {
    let root: RecorderRoot
    /// The caller's pid inside the sandbox: what `/proc/self` and `/proc/thread-self` name.
    let pid: Int32

    enum Outcome: Equatable {
        /// No symlink on the way (nor a new name's directory): joining by name is the kernel's walk.
        case byName
        /// Through symlinks: the path they lead to.
        case resolved(String)
        /// The walk could not finish (a component missing or not a directory, a loop, a link
        /// naming no path, such as a pipe's): the path names no file for certain.
        case unknown
        /// The walk took more steps than it may (`maxSteps`): where the kernel went is not known.
        case cut
    }

    static let maxLinks = 40
    /// Components taken, links' included: bounds the walk of a path whose links each hold 4 KiB
    /// (three calls a step, about what the kernel's own walk of such a path costs the caller).
    static let maxSteps = 1024

    /// `path` is absolute and not folded (`..` kept); `followLast`: the call follows a symlink in
    /// the last component (chmod, open without `O_NOFOLLOW`), or acts on the link itself (unlink).
    /// `cwd`: the caller's working directory as recorded at the call, which `/proc/self/cwd` names
    /// (read from the live process otherwise: a caller that has exited has none).
    func walk(_ path: String, followLast: Bool, cwd: String? = nil) -> Outcome {
        let relative = path.drop(while: { $0 == "/" })
        let parent = relative.lastIndex(of: "/").map { String(relative[..<$0]) } ?? "."
        // Most paths have no link on the way: one openat2 says so.
        if followLast {
            switch ofs_walk_plain(root.fd, relative.isEmpty ? "." : String(relative), 1, 0) {
            case 0: return .byName
            case -ENOENT: if ofs_walk_plain(root.fd, parent, 1, 1) == 0 { return .byName }  // a new name
            default: break
            }
        } else if !relative.hasSuffix(".."), ofs_walk_plain(root.fd, parent, 1, 1) == 0 {
            return .byName
        }
        return follow(path, followLast: followLast, cwd: cwd)
    }

    private enum Step: Equatable {
        case directory, file, missing, other
        case link(String)
    }

    private func step(_ relative: String) -> Step? {
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let kind = ofs_walk_step(root.fd, relative, &target, target.count)
        switch kind {
        case 0: return .directory
        case 1: return .file
        case 2: return .link(String(cString: target))
        case -ENOENT: return .missing
        default: return .other
        }
    }

    /// The walk itself, a component at a time, each opened without following anything.
    private func follow(_ path: String, followLast: Bool, cwd: String?) -> Outcome {
        var reached: [Substring] = []
        var pending = Array(path.split(separator: "/").reversed())
        var links = 0, steps = 0
        while let component = pending.popLast() {
            steps += 1
            guard steps <= Self.maxSteps else { return .cut }
            if component == "." { continue }
            if component == ".." {
                _ = reached.popLast()  // at the root, `..` is the root
                continue
            }
            let last = pending.isEmpty
            if last && !followLast {
                reached.append(component)
                break
            }
            // The sandbox's /proc answers `self` for a reader in its PID namespace only.
            // The caller's own directory there was one at the call (it may have exited since).
            if reached == ["proc"], component == "self" || component == "thread-self" {
                reached.append(Substring(String(pid)))
                continue
            }
            // The caller's own root is the sandbox's; its directory, as recorded.
            let own = reached.count == 2 && reached[0] == "proc" && reached[1] == Substring(String(pid))
            let known: Step? = own && component == "root" ? .link("/") : own && component == "cwd" ? cwd.map { .link($0) } : nil
            switch known ?? step((reached + [component]).joined(separator: "/")) {
            case .directory:
                reached.append(component)
            case .file:
                guard last else { return .unknown }
                reached.append(component)
            case .missing:
                // A new name: the kernel makes it in the directory reached.
                guard last else { return .unknown }
                reached.append(component)
            case .link(let target):
                links += 1
                guard links <= Self.maxLinks, !target.isEmpty else { return .unknown }
                // A link of /proc's that names no path (`pipe:[12]`, `anon_inode:[eventfd]`).
                if reached.first == "proc", !target.hasPrefix("/") { return .unknown }
                if target.hasPrefix("/") { reached.removeAll() }
                pending += target.split(separator: "/").reversed()
            case .other, nil:
                return .unknown
            }
        }
        return .resolved("/" + reached.joined(separator: "/"))
    }
}
