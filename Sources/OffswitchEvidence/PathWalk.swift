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
/// directory a link led to, `/proc/self` as the caller's thread group and `/proc/thread-self` as
/// the caller. A recorded path is the caller's string joined to its directory by name, which is
/// not where the kernel goes when a component is a symlink (`d/next_question` with `d` a link to
/// the home directory, `w/../x` with `w` a link elsewhere, `/proc/self/cwd/x`); a call the kernel
/// refused leaves no file event to say which file it named, so this walk is what ties its path to
/// a file. It sees the filesystem as it is when the record is read, not at the call
/// (docs/recorder.md, "Limits"). Paths are bytes, as the kernel takes them: a name that is not
/// UTF-8 is walked as it is.
struct PathWalk {
    let root: RecorderRoot
    /// The caller's thread group (what `/proc/self` names) and thread (`/proc/thread-self`), as
    /// the sandbox numbers them. The group is asked for only by a walk that meets /proc/self
    /// (user notification reads it from the stopped caller's status); nil: not known.
    let group: () -> Int32?
    let thread: Int32

    enum Outcome: Equatable {
        /// No symlink on the way (nor a new name's directory): joining by name is the kernel's walk.
        case byName
        /// Through symlinks: the path they lead to.
        case resolved(String)
        /// The walk could not finish (a component missing or not a directory, a loop, a link
        /// naming no path, such as a pipe's): the path names no file for certain.
        case unknown
        /// Where the kernel went is not known: the walk took more steps than it may
        /// (`maxSteps`), or went through the caller's own /proc directory after the caller had
        /// exited, where the copied directory did not say.
        case cut
    }

    static let maxLinks = 40
    /// Components taken, links' included: bounds the walk of a path whose links each hold 4 KiB
    /// (three calls a step, about what the kernel's own walk of such a path costs the caller).
    static let maxSteps = 1024
    /// Components the kernel looks up for the walk, all steps together: each step opens its
    /// whole prefix from the root, so a deep directory with a link at its bottom would make the
    /// walk quadratic in its depth. Past this the walk is cut (about a millisecond of lookups).
    static let maxLookups = 8192

    typealias Name = ArraySlice<UInt8>
    private static let slash = UInt8(ascii: "/")
    private static let dot: Name = [UInt8(ascii: ".")][...]
    private static let dotDot: Name = Array("..".utf8)[...]

    /// `path` is absolute and not folded (`..` kept); `followLast`: the call follows a symlink in
    /// the last component (chmod, open without `O_NOFOLLOW`), or acts on the link itself (unlink).
    /// `cwd`: the caller's working directory as recorded at the call (what its own
    /// `/proc/.../cwd` names once it has exited; the kernel recorder copies it for a path that
    /// starts with `/proc/self/` or `/proc/thread-self/`).
    func walk(_ path: [UInt8], followLast: Bool, cwd: String? = nil) -> Outcome {
        let relative = path.drop(while: { $0 == Self.slash })
        let parent = relative.lastIndex(of: Self.slash).map { Array(relative[..<$0]) } ?? Array(Self.dot)
        // Most paths have no link on the way: one openat2 says so.
        if followLast {
            switch Self.plain(root, relative.isEmpty ? Array(Self.dot) : Array(relative), directory: false) {
            case 0: return .byName
            case -ENOENT: if Self.plain(root, parent, directory: true) == 0 { return .byName }  // a new name
            default: break
            }
        } else if let name = relative.split(separator: Self.slash).last, !name.elementsEqual(Self.dotDot), !name.elementsEqual(Self.dot),
                  Self.plain(root, parent, directory: true) == 0 {
            return .byName
        }
        return follow(path, followLast: followLast, cwd: cwd)
    }

    private static func plain(_ root: RecorderRoot, _ path: [UInt8], directory: Bool) -> Int32 {
        (path + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ofs_walk_plain(root.fd, $0.baseAddress!, 1, directory ? 1 : 0) }
        }
    }

    private enum Step: Equatable {
        case directory, file, missing, other
        case link([UInt8])
    }

    private func step(_ relative: [UInt8]) -> Step {
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let kind = (relative + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { ofs_walk_step(root.fd, $0.baseAddress!, &target, target.count) }
        }
        switch kind {
        case 0: return .directory
        case 1: return .file
        case 2: return .link(target.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) })
        case -ENOENT: return .missing
        default: return .other
        }
    }

    /// The walk itself, a component at a time, each opened without following anything.
    private func follow(_ path: [UInt8], followLast: Bool, cwd recorded: String?) -> Outcome {
        var reached: [Name] = []
        var pending = Array(path.split(separator: Self.slash).reversed())
        var links = 0, steps = 0, lookups = 0
        var asked = false, leader: [Name]?
        func leaderDirectory() -> [Name]? {
            if !asked { leader = group().map { [Array("proc".utf8)[...], Array(String($0).utf8)[...]] }; asked = true }
            return leader
        }
        func mine() -> [Name]? { leaderDirectory().map { $0 + [Array("task".utf8)[...], Array(String(thread).utf8)[...]] } }
        while let component = pending.popLast() {
            steps += 1
            guard steps <= Self.maxSteps else { return .cut }
            if component.elementsEqual(Self.dot) { continue }
            if component.elementsEqual(Self.dotDot) {
                _ = reached.popLast()  // at the root, `..` is the root
                continue
            }
            let last = pending.isEmpty
            if last && !followLast {
                reached.append(component)
                break
            }
            // The sandbox's /proc answers `self` only for a reader in its PID namespace.
            let inProc = reached.first?.elementsEqual("proc".utf8) == true
            if reached.count == 1, inProc, component.elementsEqual("self".utf8) || component.elementsEqual("thread-self".utf8) {
                guard let own = component.elementsEqual("self".utf8) ? leaderDirectory() : mine() else { return .unknown }
                reached = own
                continue
            }
            // The caller's own /proc directories: /proc/TGID (what /proc/self names) and
            // /proc/TGID/task/TID and /proc/TID (the caller's thread).
            let isLeader = inProc && reached.count == 2 && leaderDirectory().map { reached.elementsEqual($0) } == true
            let isThread = inProc && (reached.count == 4 && mine().map { reached.elementsEqual($0) } == true
                                      || reached.count == 2 && reached[1].elementsEqual(String(thread).utf8))
            var known: Step?
            if isLeader || isThread, component.elementsEqual("root".utf8) {
                known = .link([Self.slash])  // the profile denies chroot and pivot_root
            } else if isLeader || isThread, component.elementsEqual("cwd".utf8), let recorded {
                // The directory copied is the caller's: the leader's too when the caller is it.
                if isThread || group() == thread { known = .link(Array(recorded.utf8)) }
            }
            if known == nil {
                lookups += reached.count + 1
                guard lookups <= Self.maxLookups else { return .cut }
            }
            let here = known ?? step(Array((reached + [component]).joined(separator: [Self.slash])))
            switch here {
            case .directory:
                reached.append(component)
            case .file:
                guard last else { return .unknown }
                reached.append(component)
            case .missing:
                // The caller's own /proc directory, gone with the caller: a directory reached
                // through it (cwd, root, fd/N/...) is not known. (Its descriptor itself, as in
                // /dev/stderr, is a file named by a link: joined by name, as any link not read.)
                if !last, inProc, reached.count >= 2, leaderDirectory().map({ reached.prefix(2).elementsEqual($0) }) == true
                    || reached.count >= 2 && reached[1].elementsEqual(String(thread).utf8),
                   component.elementsEqual("cwd".utf8) || component.elementsEqual("root".utf8) || pending.count >= 2 {
                    return .cut
                }
                // A new name: the kernel makes it in the directory reached.
                guard last else { return .unknown }
                reached.append(component)
            case .link(let target):
                links += 1
                guard links <= Self.maxLinks, !target.isEmpty else { return .unknown }
                // A link of /proc's that names no path (`pipe:[12]`, `anon_inode:[eventfd]`).
                if reached.first?.elementsEqual("proc".utf8) == true, target.first != Self.slash { return .unknown }
                if target.first == Self.slash { reached.removeAll() }
                pending += target.split(separator: Self.slash).reversed()
            case .other:
                return .unknown
            }
        }
        return .resolved(String(decoding: [Self.slash] + Array(reached.joined(separator: [Self.slash])), as: UTF8.self))
    }
}
