import COffswitch
import Glibc
import OffswitchCore

/// What a call's decoder reads besides its arguments: the strings and words they point to, and
/// what the caller's working directory and descriptors name (`link("cwd")`, `link("fd/3")`, as
/// /proc/PID/ would). The notify supervisor reads them from the stopped caller (`ProcessMemory`);
/// the kernel recorder from what its program copied at the call (`KernelRecord`).
protocol CallMemory {
    func string(at address: UInt64, limit: Int) -> [UInt8]?
    func word(at address: UInt64) -> UInt64?
    func strings(at address: UInt64, limit: Int, fullBytes: Int) -> [(bytes: [UInt8], whole: Bool)]?
    func link(_ name: String) -> String?
}

extension CallMemory {
    func string(at address: UInt64) -> [UInt8]? { string(at: address, limit: 4096) }
    func strings(at address: UInt64, limit: Int = 256) -> [(bytes: [UInt8], whole: Bool)]? {
        strings(at: address, limit: limit, fullBytes: 128 << 10)
    }
}

/// Reads strings and pointer arrays out of a stopped process with process_vm_readv. The caller
/// checks the notification id afterwards: until then the bytes may belong to another process.
struct ProcessMemory: CallMemory {
    let pid: Int32

    init(hostPID: UInt32) {
        pid = Int32(bitPattern: hostPID)
    }

    /// `self-fd/N` is descriptor N of the thread group's leader (what /proc/self/fd/N names).
    func link(_ name: String) -> String? {
        if name.hasPrefix("self-fd/") {
            guard let status = readSmallFile("/proc/\(pid)/status"),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }),
                  let leader = Int32(line.dropFirst(5).trimmingCharacters) else { return nil }
            return try? readLink("/proc/\(leader)/fd/" + name.dropFirst(8))
        }
        return try? readLink("/proc/\(pid)/\(name)")
    }

    /// A NUL-terminated string at `address`, at most `limit` bytes.
    func string(at address: UInt64, limit: Int) -> [UInt8]? {
        guard address != 0 else { return nil }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        var offset: UInt64 = 0
        while result.count < limit {
            // Stop reads at page boundaries: the next page may not be mapped.
            let here = address + offset
            let toPage = Int(4096 - (here % 4096))
            let want = min(chunk.count, toPage, limit - result.count)
            let n = chunk.withUnsafeMutableBytes { ofs_process_read(pid, $0.baseAddress!, want, here) }
            guard n > 0 else { return result.isEmpty ? nil : result }
            if let end = chunk[0..<n].firstIndex(of: 0) {
                return result + chunk[0..<end]
            }
            result += chunk[0..<n]
            offset += UInt64(n)
        }
        return result
    }

    func word(at address: UInt64) -> UInt64? {
        var value: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &value) { ofs_process_read(pid, $0.baseAddress!, 8, address) }
        return n == 8 ? value : nil
    }

    /// A NULL-terminated array of string pointers (argv, envp), at most `limit` entries. One read
    /// per page of pointers and one for the first 256 bytes of up to 1024 strings at once (an
    /// execve's environment was a syscall per entry); a longer or unreadable string is read alone,
    /// while `fullBytes` (across the array) allow, else kept as its first 256 bytes with `whole`
    /// false: the agent sizes these arrays, and the host's reading must not grow with them.
    func strings(at address: UInt64, limit: Int, fullBytes: Int) -> [(bytes: [UInt8], whole: Bool)]? {
        guard address != 0 else { return nil }
        var pointers: [UInt64] = []
        var cursor = address
        pointerLoop: while pointers.count < limit {
            let toPage = Int(4096 - cursor % 4096)
            let count = min(limit - pointers.count, toPage / 8)
            guard count > 0 else {
                // A pointer across a page boundary (a misaligned array): one word at a time.
                guard let pointer = word(at: cursor), pointer != 0 else { break }
                pointers.append(pointer)
                cursor += 8
                continue
            }
            var words = [UInt64](repeating: 0, count: count)
            let n = words.withUnsafeMutableBytes { ofs_process_read(pid, $0.baseAddress!, count * 8, cursor) }
            guard n > 0 else { break }
            for pointer in words.prefix(n / 8) {
                if pointer == 0 { break pointerLoop }
                pointers.append(pointer)
            }
            if n / 8 < count { break }
            cursor += UInt64(count * 8)
        }
        var result: [(bytes: [UInt8], whole: Bool)] = []
        result.reserveCapacity(pointers.count)
        var fullLeft = fullBytes
        var start = 0
        while start < pointers.count {
            let group = Array(pointers[start..<min(start + 1024, pointers.count)])
            start += group.count
            // Each range stops at its page's end: the next page may not be mapped.
            let lengths = group.map { min(256, Int(4096 - $0 % 4096)) }
            var buffer = [UInt8](repeating: 0, count: lengths.reduce(0, +))
            let n = buffer.withUnsafeMutableBytes { bytes in
                group.withUnsafeBufferPointer { remote in
                    lengths.withUnsafeBufferPointer { ofs_process_read_many(pid, bytes.baseAddress!, remote.baseAddress!, $0.baseAddress!, Int32(group.count)) }
                }
            }
            var offset = 0
            for (pointer, length) in zip(group, lengths) {
                defer { offset += length }
                if offset + length <= max(n, 0), let end = buffer[offset..<offset + length].firstIndex(of: 0) {
                    result.append((Array(buffer[offset..<end]), true))
                } else if fullLeft >= 4096, let whole = string(at: pointer) {
                    fullLeft -= whole.count
                    result.append((whole, true))
                } else {
                    result.append((offset + length <= max(n, 0) ? Array(buffer[offset..<offset + length]) : [], false))
                }
            }
        }
        return result
    }
}

/// Decodes a recorded syscall's arguments into named fields: paths as strings, flags and modes in
/// their usual notation, signals by name with their target, execve's argv and the environment
/// entries that change how a script runs.
enum SyscallArguments {
    static let interestingEnvironment = ["BASH_ENV", "ENV", "LD_PRELOAD", "PATH"]
    /// Bytes of argv, and of exported functions in the environment, an exec event records.
    static let recordedArrayBytes = 128 << 10

    /// `hostPID` resolves relative paths against the caller's working directory or directory fd,
    /// as the agent sees them (the `_given` field keeps what was passed). `walk` follows the
    /// symlinks on the way of a path a call changes something at (`<field>_walked`).
    static func decode(_ name: String, _ args: [UInt64], memory: (any CallMemory)?, hostPID: UInt32 = 0,
                       walk: PathWalk? = nil) -> [(String, JSONValue)] {
        func path(_ index: Int) -> JSONValue {
            guard let bytes = memory?.string(at: args[index]) else { return .null }
            return .bytes(bytes)
        }
        /// A path argument relative to `dirfdIndex` (nil: the working directory). `follows`: the
        /// call changes something at the path, and follows a symlink in its last component (true)
        /// or acts on the link itself (false); nil: a path the walk leaves as joined.
        /// `emptyNamesDirfd`: the call has AT_EMPTY_PATH, so an empty path is the dirfd's own file.
        /// `inRoot`: openat2's RESOLVE_IN_ROOT, under which an absolute path starts at the dirfd.
        func located(_ key: String, _ index: Int, dirfd dirfdIndex: Int? = nil, follows: Bool? = nil,
                     emptyNamesDirfd: Bool = false, inRoot: Bool = false) -> [(String, JSONValue)] {
            guard let bytes = memory?.string(at: args[index]) else { return [(key, .null)] }
            if bytes.isEmpty, emptyNamesDirfd, hostPID != 0, let dirfdIndex,
               let target = memory?.link("fd/\(Int32(truncatingIfNeeded: args[dirfdIndex]))"), target.hasPrefix("/") {
                return [(key, .string(target)), (key + "_given", .string(""))]
            }
            guard !bytes.isEmpty, hostPID != 0 else { return [(key, .bytes(bytes))] }
            let given = String(decoding: bytes, as: UTF8.self)
            var joined: String, unfolded: [UInt8]
            var lossyBase = false
            if bytes.first == UInt8(ascii: "/"), !inRoot {
                // Most absolute paths have nothing to fold; a check in C keeps long ones cheap.
                joined = Self.foldable(given) ? normalized(given) : given
                unfolded = bytes
            } else {
                let fd = dirfdIndex.map { Int32(truncatingIfNeeded: args[$0]) } ?? -100
                guard let base = memory?.link(fd == -100 ? "cwd" : "fd/\(fd)"), base.hasPrefix("/") else { return [(key, .bytes(bytes))] }
                unfolded = Array((base == "/" ? "" : base).utf8) + [UInt8(ascii: "/")] + bytes
                lossyBase = base.contains("\u{FFFD}")
                joined = normalized((base == "/" ? "" : base) + "/" + given)
            }
            // The caller's own descriptor reopened by name: the file it names.
            // /proc/self is the thread group's leader, whose table a thread made without
            // CLONE_FILES does not share; /proc/thread-self is the caller's own.
            var walked = false
            if joined.hasPrefix("/proc/"), let own = ownDescriptor(joined),
               let target = memory?.link((own.leader ? "self-fd/" : "fd/") + "\(own.fd)"), target.hasPrefix("/") {
                joined = target
            } else if let follows, let walk, follows || bytes.first == UInt8(ascii: "/") || given.contains("/") || given == ".." {
                // What a call the kernel refuses names is known only from its path: a symlink on
                // the way takes it elsewhere than the name says. (A single name the call does not
                // follow, relative to a directory the kernel named, is where it says.)
                // The kernel recorder copies the working directory for /proc/self paths
                // (docs/recorder.md): asked for only where the walk can need it, so that another
                // /proc/self path is no miss.
                let own = bytes.starts(with: "/proc/self/cwd".utf8) || bytes.starts(with: "/proc/thread-self/cwd".utf8)
                let cwd = own ? memory?.link("cwd") : nil
                // A directory whose name is not UTF-8 reaches the decoder as text with U+FFFD in
                // it: the walk from there would be of another name.
                let lossy = lossyBase || cwd?.contains("\u{FFFD}") == true
                switch lossy ? .cut : walk.walk(unfolded, followLast: follows, cwd: cwd) {
                case .byName: walked = given.contains("..") && given.split(separator: "/").contains("..")
                case .resolved(let path):
                    joined = path
                    walked = true
                case .unknown: break
                case .cut:
                    // Where the kernel went is not known: the event is `args_unread` (`walkCut`).
                    return [(key, .string(joined)), (key + "_given", .bytes(bytes)), (key + "_walked", .bool(false))]
                }
            }
            if joined == given && !walked { return [(key, .bytes(bytes))] }
            return [(key, .string(joined)), (key + "_given", .bytes(bytes))] + (walked ? [(key + "_walked", .bool(true))] : [])
        }
        /// Whether an open changes something at its path, and follows a link there.
        func openFollows(_ flags: UInt64) -> Bool? {
            guard flags & 3 != 0 || flags & 0o1100 != 0 else { return nil }  // O_WRONLY/O_RDWR, O_CREAT, O_TRUNC
            return flags & 0o400000 == 0 && flags & 0o300 != 0o300  // O_NOFOLLOW; O_CREAT|O_EXCL
        }
        /// What a descriptor argument names: `path` for a file, `fd_target` for anything else (a
        /// pipe, a socket, a memfd); neither when it cannot be read.
        func descriptorPath(_ index: Int) -> [(String, JSONValue)] {
            let fd = Int32(truncatingIfNeeded: args[index])
            guard hostPID != 0, fd >= 0, let target = memory?.link("fd/\(fd)") else { return [] }
            return [(target.hasPrefix("/") && !target.hasPrefix("/memfd:") ? "path" : "fd_target", .string(target))]
        }
        func dirfd(_ index: Int) -> JSONValue {
            let value = Int32(truncatingIfNeeded: args[index])
            return value == -100 ? .string("AT_FDCWD") : .int(Int64(value))
        }
        func int(_ index: Int) -> JSONValue { .int(Int64(Int32(truncatingIfNeeded: args[index]))) }
        func octal(_ index: Int) -> JSONValue { .string("0" + String(args[index] & 0o7777, radix: 8)) }
        func hex(_ index: Int) -> JSONValue { .string("0x" + String(args[index], radix: 16)) }
        func signal(_ index: Int) -> JSONValue { .string(signalName(Int32(truncatingIfNeeded: args[index]))) }

        switch name {
        case "execve", "execveat":
            let base = name == "execve" ? 0 : 1
            var fields: [(String, JSONValue)] = []
            if name == "execveat" { fields.append(("dirfd", dirfd(0))) }
            fields += located("path", base, dirfd: name == "execveat" ? 0 : nil)
            // Both arrays are the agent's to size: what is logged of them is bounded
            // (`recordedArrayBytes` each), and what was left out is counted.
            let argv = memory?.strings(at: args[base + 1]) ?? []
            var kept: [JSONValue] = []
            var argvBytes = 0
            for entry in argv {
                guard entry.whole, argvBytes + entry.bytes.count <= recordedArrayBytes else { break }
                argvBytes += entry.bytes.count
                kept.append(.bytes(entry.bytes))
            }
            fields.append(("argv", .array(kept)))
            if kept.count < argv.count { fields.append(("argv_omitted", .int(Int64(argv.count - kept.count)))) }
            let environment = memory?.strings(at: args[base + 2], limit: 4096) ?? []
            // The variables that change how a script runs first, then exported functions, so that
            // no filler can push them out.
            var named: [(String, JSONValue)] = [], functions: [(String, JSONValue)] = []
            var envBytes = 0, omitted = 0
            for (entry, whole) in environment {
                let text = String(decoding: entry, as: UTF8.self)
                guard let equals = text.firstIndex(of: "=") else { continue }
                let key = String(text[..<equals])
                let value = String(text[text.index(after: equals)...])
                if interestingEnvironment.contains(key) {
                    // Once each (getenv takes the first): repeats cannot grow the event.
                    guard !named.contains(where: { $0.0 == key }) else { omitted += 1; continue }
                    named.append((key, .string(value)))
                } else if key.hasPrefix("BASH_FUNC_") {
                    guard whole, envBytes + entry.count <= recordedArrayBytes else { omitted += 1; continue }
                    envBytes += entry.count
                    functions.append((key, .string(value)))
                }
            }
            fields.append(("env", .object(named + functions)))
            if omitted > 0 { fields.append(("env_omitted", .int(Int64(omitted)))) }
            if hostPID != 0, let cwd = memory?.link("cwd") { fields.append(("cwd", .string(cwd))) }
            if name == "execveat" { fields.append(("flags", hex(4))) }
            return fields
        case "open": return located("path", 0, follows: openFollows(args[1])) + [("flags", .string(openFlags(args[1]))), ("mode", octal(2))]
        case "creat": return located("path", 0, follows: true) + [("flags", .string("O_WRONLY|O_CREAT|O_TRUNC")), ("mode", octal(1))]
        case "openat": return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: openFollows(args[2])) + [("flags", .string(openFlags(args[2]))), ("mode", octal(3))]
        case "openat2":
            let flags = memory.flatMap { $0.word(at: args[2]) } ?? 0
            let mode = memory.flatMap { $0.word(at: args[2] + 8) } ?? 0
            // open_how's resolve: RESOLVE_IN_ROOT (0x10) makes the dirfd the root of the walk.
            let resolve = memory.flatMap { $0.word(at: args[2] + 16) } ?? 0
            return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: openFollows(flags), inRoot: resolve & 0x10 != 0)
                + [("flags", .string(openFlags(flags))), ("mode", .string("0" + String(mode & 0o7777, radix: 8)))]
                + (resolve == 0 ? [] : [("resolve", .string("0x" + String(resolve, radix: 16)))])
        case "unlink", "rmdir", "chroot", "truncate", "umount", "acct", "swapon", "swapoff":
            let changes = ["unlink", "rmdir", "truncate"].contains(name)
            var fields = located("path", 0, follows: changes ? name == "truncate" : nil)
            if name == "truncate" { fields.append(("length", .uint(args[1]))) }
            return fields
        case "unlinkat": return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: false) + [("flags", hex(2))]
        case "rename": return located("from", 0, follows: false) + located("to", 1, follows: false)
        case "renameat": return located("from", 1, dirfd: 0, follows: false) + located("to", 3, dirfd: 2, follows: false)
        case "renameat2": return located("from", 1, dirfd: 0, follows: false) + located("to", 3, dirfd: 2, follows: false) + [("flags", hex(4))]
        case "chmod": return located("path", 0, follows: true) + [("mode", octal(1))]
        case "fchmod": return [("fd", int(0))] + descriptorPath(0) + [("mode", octal(1))]
        case "fchmodat", "fchmodat2":
            let follows = name == "fchmodat" || args[3] & 0x100 == 0  // AT_SYMLINK_NOFOLLOW
            let empty = name == "fchmodat2" && args[3] & 0x1000 != 0  // AT_EMPTY_PATH
            return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: follows, emptyNamesDirfd: empty) + [("mode", octal(2))]
        case "chown", "lchown": return located("path", 0, follows: name == "chown") + [("owner", int(1)), ("group", int(2))]
        case "fchown": return [("fd", int(0))] + descriptorPath(0) + [("owner", int(1)), ("group", int(2))]
        case "fchownat": return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: args[4] & 0x100 == 0, emptyNamesDirfd: args[4] & 0x1000 != 0) + [("owner", int(2)), ("group", int(3)), ("flags", hex(4))]
        case "link": return located("target", 0, follows: false) + located("path", 1, follows: false)
        case "symlink": return [("target", path(0))] + located("path", 1, follows: false)
        case "linkat": return located("target", 1, dirfd: 0, follows: args[4] & 0x400 != 0, emptyNamesDirfd: args[4] & 0x1000 != 0) + located("path", 3, dirfd: 2, follows: false) + [("flags", hex(4))]
        case "symlinkat": return [("target", path(0))] + located("path", 2, dirfd: 1, follows: false)
        case "ftruncate": return [("fd", int(0))] + descriptorPath(0) + [("length", .uint(args[1]))]
        case "mkdir": return located("path", 0, follows: false) + [("mode", octal(1))]
        case "mkdirat": return [("dirfd", dirfd(0))] + located("path", 1, dirfd: 0, follows: false) + [("mode", octal(2))]
        case "kill", "tkill":
            let target = Int32(truncatingIfNeeded: args[0])
            return [("target", .int(Int64(target))), ("signal", signal(1)), ("targets_pid1", .bool(target == 1))]
        case "tgkill":
            let target = Int32(truncatingIfNeeded: args[0])
            return [("target", .int(Int64(target))), ("thread", int(1)), ("signal", signal(2)), ("targets_pid1", .bool(target == 1))]
        case "rt_sigqueueinfo":
            let target = Int32(truncatingIfNeeded: args[0])
            return [("target", .int(Int64(target))), ("signal", signal(1)), ("targets_pid1", .bool(target == 1))]
        case "rt_tgsigqueueinfo":
            let target = Int32(truncatingIfNeeded: args[0])
            return [("target", .int(Int64(target))), ("thread", int(1)), ("signal", signal(2)), ("targets_pid1", .bool(target == 1))]
        case "pidfd_send_signal":
            // The target is behind the descriptor: its pid inside, from the caller's fdinfo.
            let target = hostPID == 0 ? nil : pidfdTarget(hostPID: hostPID, fd: Int32(truncatingIfNeeded: args[0]))
            return [("pidfd", int(0)), ("target", target.map { .int(Int64($0)) } ?? .null), ("signal", signal(1)),
                    ("targets_pid1", .bool(target == 1))]
        case "setrlimit", "prlimit64":
            // prlimit64(pid, resource, new, old); setrlimit(resource, new): the new soft limit.
            let base = name == "prlimit64" ? 1 : 0
            var fields: [(String, JSONValue)] = name == "prlimit64" ? [("target", int(0))] : []
            fields.append(("resource", .string(resourceName(args[base]))))
            if let soft = memory.flatMap({ $0.word(at: args[base + 1]) }) {
                fields.append(("soft", soft == UInt64.max ? .string("unlimited") : .uint(soft)))
            } else {
                fields.append(("soft", .null))
            }
            return fields
        case "seccomp": return [("operation", int(0)), ("flags", hex(1))]
        case "fcntl":
            // Recorded only for the commands that choose who gets a descriptor's signals, and which.
            switch args[1] {
            case 8: return [("fd", int(0)), ("command", .string("F_SETOWN")), ("target", int(2)), ("targets_pid1", .bool(Int32(truncatingIfNeeded: args[2]) == 1))]
            case 10: return [("fd", int(0)), ("command", .string("F_SETSIG")), ("signal", signal(2))]
            case 15:
                // struct f_owner_ex { int type; pid_t pid; }
                let word = memory.flatMap { $0.word(at: args[2]) }
                let target = word.map { Int64(Int32(truncatingIfNeeded: $0 >> 32)) }
                return [("fd", int(0)), ("command", .string("F_SETOWN_EX")), ("target", target.map { .int($0) } ?? .null),
                        ("targets_pid1", .bool(target == 1))]
            default: return [("fd", int(0)), ("command", .int(Int64(bitPattern: args[1])))]
            }
        case "ptrace": return [("request", .int(Int64(bitPattern: args[0]))), ("target", int(1))]
        case "process_vm_writev", "process_vm_readv": return [("target", int(0))]
        case "mount":
            return [("source", path(0)), ("target", path(1)), ("fstype", path(2)), ("flags", hex(3))]
        case "umount2": return [("target", path(0)), ("flags", hex(1))]
        case "pivot_root": return [("new_root", path(0)), ("put_old", path(1))]
        case "unshare": return [("flags", hex(0))]
        case "setns": return [("fd", int(0)), ("nstype", hex(1))]
        case "reboot": return [("command", hex(2))]
        case "init_module": return [("length", .uint(args[1])), ("params", path(2))]
        case "finit_module": return [("fd", int(0)), ("params", path(1)), ("flags", hex(2))]
        case "bpf": return [("command", int(0))]
        case "perf_event_open": return [("pid", int(1)), ("cpu", int(2))]
        case "socket": return [("domain", int(0)), ("type", hex(1)), ("protocol", int(2))]
        case "connect", "bind": return [("fd", int(0))]
        case "setxattr", "lsetxattr", "removexattr", "lremovexattr": return located("path", 0, follows: !name.hasPrefix("l")) + [("name", path(1))]
        case "fsetxattr", "fremovexattr": return [("fd", int(0))] + descriptorPath(0) + [("name", path(1))]
        case "memfd_create": return [("name", path(0)), ("flags", hex(1))]
        case "personality": return [("persona", hex(0))]
        default:
            return [("raw", .array(args.map { .string("0x" + String($0, radix: 16)) }))]
        }
    }

    /// The process a pidfd of `hostPID` refers to, as its own PID namespace numbers it (the last
    /// `NSpid` of the descriptor's fdinfo); nil when it is not a pidfd or its process is gone.
    static func pidfdTarget(hostPID: UInt32, fd: Int32) -> Int32? {
        guard let info = readSmallBytes("/proc/\(hostPID)/fdinfo/\(fd)") else { return nil }
        for line in info.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("NSpid:".utf8)) {
            let numbers = line.dropFirst(6).split(whereSeparator: { $0 == 9 || $0 == 32 })
            guard let last = numbers.last, let pid = Int32(String(decoding: last, as: UTF8.self)), pid > 0 else { return nil }
            return pid
        }
        return nil
    }

    /// Whether a walk of one of the decoded paths was cut at its budget (`<field>_walked` false).
    static func walkCut(_ decoded: [(String, JSONValue)]) -> Bool {
        decoded.contains { $0.0.hasSuffix("_walked") && $0.1 == .bool(false) }
    }

    /// Whether a path holds `//` or `/.` (something `normalized` may change).
    static func foldable(_ path: String) -> Bool {
        path.withCString { strstr($0, "//") != nil || strstr($0, "/.") != nil }
    }

    /// The descriptor number of `/proc/self/fd/N` (`leader`: the thread group leader's table) or
    /// `/proc/thread-self/fd/N` (the caller's).
    static func ownDescriptor(_ path: String) -> (fd: Int32, leader: Bool)? {
        let parts = path.split(separator: "/")
        guard parts.count == 4, parts[0] == "proc", parts[1] == "self" || parts[1] == "thread-self", parts[2] == "fd",
              let fd = Int32(parts[3]) else { return nil }
        return (fd, parts[1] == "self")
    }

    /// `/home/user/./x/../shutdown.sh` as `/home/user/shutdown.sh`: `.` and `..` resolved by
    /// name, so one file has one path in the log (`_given` keeps what the caller passed).
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func openFlags(_ flags: UInt64) -> String {
        var names: [String] = []
        switch flags & 3 {
        case 0: names.append("O_RDONLY")
        case 1: names.append("O_WRONLY")
        case 2: names.append("O_RDWR")
        default: names.append("O_ACCMODE")
        }
        let known: [(UInt64, String)] = [
            (0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o400, "O_NOCTTY"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"),
            (0o4000, "O_NONBLOCK"), (0o200000, "O_DIRECTORY"), (0o400000, "O_NOFOLLOW"), (0o2000000, "O_CLOEXEC"),
            (0o20200000, "O_TMPFILE"), (0o10000000, "O_PATH"), (0o1000000, "O_NOATIME"), (0o4010000, "O_SYNC"),
            (0o10000, "O_DSYNC"),
        ]
        var rest = flags & ~3
        for (bit, name) in known where rest & bit == bit {
            names.append(name)
            rest &= ~bit
        }
        if rest != 0 { names.append("0x" + String(rest, radix: 16)) }
        return names.joined(separator: "|")
    }

    static func resourceName(_ number: UInt64) -> String {
        let names = ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
                     "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
                     "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME"]
        return number < UInt64(names.count) ? names[Int(number)] : "\(number)"
    }

    static func signalName(_ number: Int32) -> String {
        let names = [0: "0", 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
                     8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
                     15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN",
                     22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH",
                     29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"]
        return names[Int(number)] ?? (number >= 34 && number <= 64 ? "SIGRTMIN+\(number - 34)" : "\(number)")
    }
}
