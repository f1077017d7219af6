import COffswitch
import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchEvidence
public import OffswitchSandbox
import Synchronization

/// Runs escape attempts, each in a fresh sandbox, and judges them from the host: the host-side
/// checks say whether it was contained, the event log whether the evidence shows it.
public enum EscapeBattery {
    public struct CheckResult: Sendable {
        public var check: String
        public var passed: Bool
        public var detail: String
    }

    public struct Result: Sendable {
        public var attempt: EscapeAttempt
        public var profile: String
        public var contained: Bool
        public var checks: [CheckResult]
        /// The evidence the attempt names, as found in the log: name -> count.
        public var evidence: [String: Int]
        public var visible: Bool
        public var exitCode: Int32?
        public var output: String
        public var durationMilliseconds: Int64
        /// Set when the attempt could not be run at all (the sandbox failed to start).
        public var error: String?
        /// What it cost the host and a neighbour, when measured (`--measure`).
        public var cost: AttemptCost?

        public var json: JSONValue {
            .object([
                ("name", .string(attempt.name)), ("category", .string(attempt.category)), ("description", .string(attempt.description)),
                ("profile", .string(profile)), ("contained", .bool(contained)), ("visible", .bool(visible)),
                ("checks", .array(checks.map { .object([("check", .string($0.check)), ("passed", .bool($0.passed)), ("detail", .string($0.detail))]) })),
                ("evidence", .object(attempt.evidence.map { ($0, .int(Int64(evidence[$0] ?? 0))) })),
                ("exit_code", exitCode.map { .int(Int64($0)) } ?? .null), ("output", .string(output)),
                ("duration_ms", .int(durationMilliseconds)), ("error", error.map { .string($0) } ?? .null),
                ("cost", cost?.json ?? .null),
            ])
        }
    }

    /// The suite's directory: scripts/escape-suite of the checkout (or $OFFSWITCH_HOME).
    public static func suiteDirectory() throws(OffswitchError) -> String { try BundledFiles.path("scripts/escape-suite") }

    /// The attempts of the suite in `directory` (the bundled one when nil), only those named in
    /// `only` when it is not empty; a name that is not in the suite is an error.
    public static func attempts(in directory: String?, only: [String]) throws(OffswitchError) -> [EscapeAttempt] {
        let directory = if let directory { directory } else { try suiteDirectory() }
        let attempts = try EscapeAttempt.loadSuite(directory)
        guard !only.isEmpty else { return attempts }
        for name in only where !attempts.contains(where: { $0.name == name }) {
            throw OffswitchError(.invalidArgument, "--only \(name): no such attempt in \(directory)")
        }
        return attempts.filter { only.contains($0.name) }
    }

    /// What a run of the battery found (`offswitch.escapes/1`, docs/security.md).
    public struct Report: Sendable {
        public var profile: String
        public var results: [Result]

        public init(profile: String, results: [Result]) {
            self.profile = profile
            self.results = results
        }

        public var contained: Int { results.filter { $0.contained && $0.error == nil }.count }
        public var visible: Int { results.filter(\.visible).count }
        /// Every attempt contained and seen in the evidence.
        public var held: Bool { contained == results.count && visible == results.count }

        public var json: JSONValue {
            .object([
                ("format", .string("offswitch.escapes/1")), ("profile", .string(profile)), ("attempts", .int(Int64(results.count))),
                ("contained", .int(Int64(contained))), ("visible", .int(Int64(visible))), ("results", .array(results.map(\.json))),
            ])
        }
    }

    /// Runs one attempt in a fresh sandbox and judges it; with a `neighbour`, also measures what it
    /// cost (`AttemptCost`).
    public static func run(_ attempt: EscapeAttempt, profile: Profile, paths: StatePaths = .standard,
                           neighbour: Neighbour? = nil) -> Result {
        let marker = (0..<6).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }.joined()
        let listener = Listener()
        let script = attempt.script.replacing("{marker}", with: marker).replacing("{port}", with: String(listener?.port ?? 0))
        func host(_ text: String) -> String { text.replacing("{marker}", with: marker) }
        let log = "/tmp/offswitch-battery-\(marker).ndjson"
        defer { unlink(log) }
        let started = monotonicNanoseconds()
        var result = Result(attempt: attempt, profile: profile.name, contained: false, checks: [], evidence: [:], visible: false,
                            exitCode: nil, output: "", durationMilliseconds: 0, error: nil)
        let sandbox: Sandbox
        do throws(OffswitchError) {
            sandbox = try Sandbox.create(profile.sandboxSpec, paths: paths, eventLog: log)
        } catch {
            result.error = "the sandbox could not be created: \(error.description)"
            return result
        }
        if !attempt.prepare.isEmpty {
            // What the image would hold, made by the harness before the attempt starts.
            let made = try? sandbox.exec(ExecRequest(argv: ["bash", "-c", attempt.prepare.replacing("{marker}", with: marker)], user: .root,
                                                     timeoutSeconds: attempt.timeoutSeconds, origin: .harness))
            guard let made, made.exitCode == 0 else {
                result.error = "prepare failed (exit \(made.map { String($0.exitCode) } ?? "none")): \(made.map { String(decoding: $0.stderr, as: UTF8.self) } ?? "")"
                try? sandbox.destroy()
                return result
            }
        }
        let rootUIDs: Set<UInt32> = [0, sandbox.spec.userNamespace?.hostUID ?? 0]
        let wanted = attempt.checks(for: profile)
        // Before: what the checks compare with.
        var before: [String: String] = [:]
        let kernelLog = KernelLog()
        let every = wanted.flatMap(\.flattened)
        for check in every {
            switch check {
            case .fileUnchanged(let path): before[path] = SHA256.file(host(path)) ?? "absent"
            case .modulesUnchanged: before["modules"] = moduleList()
            case .initExeUnchanged: before["exe"] = SHA256.file("/proc/\(sandbox.initPID)/exe") ?? "unreadable"
            case .noRootFiles: before["root files"] = rootOwned(sandbox.upperDirectory, uids: rootUIDs).joined(separator: "\n")
            case .apiWriteConfined(_, let target): before["api " + target] = SHA256.file(host(target)) ?? "absent"
            case .limitHit("cpu"): before["cpu"] = CPUQuotaUse.start(sandbox.cgroupDirectories)
            default: break
            }
        }
        let tcpSampler = every.contains(.tcpMemoryBounded) ? TCPMemorySampler() : nil
        let cpuBefore = processCPUMilliseconds()
        let sampler = neighbour.flatMap { try? Neighbour.Sampler($0) }
        var sampled: (latencies: [Double], rssPeak: UInt64, ownCPU: Double)?
        do throws(OffswitchError) {
            defer { tcpSampler?.stop(); sampled = sampler?.stop() }
            let exec = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script], user: attempt.user,
                                                    timeoutSeconds: attempt.timeoutSeconds, outputLimitBytes: 64 << 10))
            result.exitCode = exec.exitCode
            let text = String(decoding: exec.stderr + exec.stdout, as: UTF8.self)
            result.output = text.count > 600 ? String(text.prefix(600)) + "…" : text
        } catch {
            result.output = error.description
        }
        // Host-side checks that need the sandbox still there.
        var checks: [String: CheckResult] = [:]
        func record(_ check: HostCheck, _ passed: Bool, _ detail: String) { checks[check.name] = CheckResult(check: check.name, passed: passed, detail: detail) }
        for check in every {
            switch check {
            case .initAlive:
                let state = processState(sandbox.initPID)
                let alive = sandbox.end == nil && state != nil && state != "T" && state != "t" && state != "Z"
                record(check, alive, alive ? "PID 1 running (state \(state ?? "?"))" : "PID 1 \(sandbox.end?.description ?? "in state \(state ?? "gone")")")
            case .recorderBounded:
                let (peak, limit) = sandbox.fileBacklog
                let bounded = peak <= 2 * limit
                record(check, bounded, "file watcher's largest backlog \(peak) bytes, limit \(limit)")
            case .initExeUnchanged:
                let now = SHA256.file("/proc/\(sandbox.initPID)/exe") ?? "unreadable"
                record(check, now == before["exe"], now == before["exe"] ? "PID 1's executable unchanged" : "PID 1's executable changed")
            case .limitHit("cpu"):
                let (held, detail) = CPUQuotaUse.held(since: before["cpu"], directories: sandbox.cgroupDirectories)
                record(check, held, detail)
            case .limitHit(let limit):
                let (hit, detail) = limitReached(limit, directories: sandbox.cgroupDirectories)
                record(check, hit, detail)
            case .loopbackUntouched:
                guard let listener else { record(check, false, "no host listener could be opened"); continue }
                let touched = listener.connected()
                record(check, !touched, touched ? "the host's 127.0.0.1:\(listener.port) accepted a connection" : "no connection reached the host's 127.0.0.1:\(listener.port)")
            case .onlyLoopback:
                let interfaces = networkInterfaces(sandbox.initPID)
                record(check, interfaces == ["lo"], "interfaces inside: \(interfaces.joined(separator: ", "))")
            case .mountAbsent:
                let found = ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains(marker)
                record(check, !found, found ? "a host mount names \(marker)" : "no host mount names \(marker)")
            case .kmsgLacks(let text):
                let lines = kernelLog?.newLines() ?? []
                let found = lines.contains { $0.contains(host(text)) }
                record(check, kernelLog != nil && !found, kernelLog == nil ? "/dev/kmsg cannot be read on the host"
                       : found ? "the host's kernel log has \(host(text))" : "the host's kernel log has no \(host(text)) (\(lines.count) new lines)")
            case .noUsableDevice(let path):
                let (type, nodev) = typeInside(sandbox, host(path))
                let device = type == "block device" || type == "char device"
                record(check, !device || nodev, "\(host(path)) inside: \(type)\(device ? (nodev ? " on a nodev mount" : " on a mount that allows devices") : "")")
            case .masked(let path):
                let (masked, detail) = maskedInside(sandbox, host(path))
                record(check, masked, detail)
            case .mountinfoHidesHost:
                let lines = ((try? String(contentsOfFile: "/proc/\(sandbox.initPID)/mountinfo", encoding: .utf8)) ?? "").split(separator: "\n")
                let named = lines.filter { $0.contains(paths.base + "/") }
                record(check, !lines.isEmpty && named.isEmpty, lines.isEmpty ? "PID 1's mountinfo cannot be read"
                       : named.isEmpty ? "\(lines.count) mounts, none naming \(paths.base)" : "names \(paths.base): \(named[0].prefix(300))")
            case .tcpMemoryBounded:
                guard let tcpSampler, let sample = tcpSampler.result else { record(check, false, "/proc/net/sockstat cannot be read"); continue }
                let grown = max(0, sample.peak - sample.baseline)
                // The kernel lets every socket keep a minimum whatever its group's limit (4 KiB
                // each way), and charges arriving packets before it can refuse them: some slack.
                // On a loaded host more packets are in flight when the pressure starts: 324 MiB
                // was measured for a 256 MiB sandbox during `make test` (unbounded: 1166 MiB).
                let limit = Int64(sandbox.spec.limits.memoryBytes), slack: Int64 = 96 << 20
                record(check, grown <= limit + slack, "host TCP memory \(sample.baseline >> 20) MiB before, \(sample.peak >> 20) MiB at most during (\(sample.samples) samples); bound: the sandbox's memory limit \(limit >> 20) MiB + \(slack >> 20) MiB")
            case .initUntraced:
                let status = (try? String(contentsOfFile: "/proc/\(sandbox.initPID)/status", encoding: .utf8)) ?? ""
                let tracer = status.split(separator: "\n").first { $0.hasPrefix("TracerPid:") }.map { String($0.dropFirst(10).filter { !$0.isWhitespace }) }
                record(check, tracer == "0", "PID 1's TracerPid: \(tracer ?? "unreadable")")
            case .filesystemBounded(let path):
                let (bounded, detail) = filesystemInside(sandbox, host(path))
                record(check, bounded, detail)
            case .noRootFiles:
                let known = Set((before["root files"] ?? "").split(separator: "\n").map(String.init))
                let new = rootOwned(sandbox.upperDirectory, uids: rootUIDs).filter { !known.contains($0) }
                record(check, new.isEmpty, new.isEmpty ? "no new root-owned file in the upper layer" : "root-owned: \(new.prefix(5).joined(separator: ", "))")
            case .apiReadConfined(let path, let target):
                let inside = try? sandbox.readFile(host(path), user: .root, limit: 1 << 20)
                let outside = FileManager.default.contents(atPath: host(target)).map(Array.init)
                let leaked = inside != nil && outside != nil && inside == outside
                record(check, outside != nil && !leaked, outside == nil ? "\(host(target)) cannot be read on the host to compare"
                       : leaked ? "the file API returned the host's \(host(target))" : inside == nil ? "the file API refused \(host(path))" : "the file API returned the sandbox's own file")
            case .apiWriteConfined(let path, let target):
                var refused = 0
                for _ in 0..<50 {
                    do throws(OffswitchError) { try sandbox.writeFile(host(path), Array(marker.utf8), user: .root) } catch { refused += 1 }
                }
                let now = SHA256.file(host(target)) ?? "absent"
                let same = now == before["api " + target]
                record(check, same, same ? "\(host(target)) unchanged on the host (\(refused) of 50 writes refused)" : "\(host(target)) changed on the host")
            case .hostUserShutOut:
                // A control first: were host uid 1000 unable to run anything, every probe below
                // would fail and the check would pass without having looked.
                guard asHostUser(["true"]) == 0 else {
                    record(check, false, "setpriv could not run a command as host uid 1000, so nothing was tried")
                    continue
                }
                let pids = sandbox.hostPIDs
                var reached: [String] = []
                for pid in pids {
                    for (what, argv) in [("signal", ["kill", "-0", "\(pid)"]), ("read the environment of", ["cat", "/proc/\(pid)/environ"]),
                                         ("enter the root of", ["ls", "/proc/\(pid)/root/"])] where asHostUser(argv) == 0 {
                        reached.append("could \(what) pid \(pid)")
                    }
                }
                record(check, !pids.isEmpty && reached.isEmpty, pids.isEmpty ? "no process of the sandbox found"
                       : reached.isEmpty ? "host uid 1000 reached none of the sandbox's \(pids.count) processes" : "host uid 1000 " + reached.prefix(3).joined(separator: ", "))
            case .perUserCountsOwn:
                let probe = ["python3", "-c", "import ctypes; print(ctypes.CDLL(None).inotify_init() >= 0)"]
                let root = inotify_init1(Int32(IN_CLOEXEC))
                if root >= 0 { close(root) }
                // The host's own python, whatever root's PATH says; exit status 0 when it made one.
                let user = asHostUser(["/usr/bin/python3", "-c", "import ctypes, sys; sys.exit(ctypes.CDLL(None).inotify_init() < 0)"])
                var neighbour = "could not be created"
                if let other = try? Sandbox.create(profile.sandboxSpec, paths: paths) {
                    let out = try? other.exec(ExecRequest(argv: probe, timeoutSeconds: 10))
                    neighbour = out.map { String(decoding: $0.stdout, as: UTF8.self) == "True\n" ? "yes" : "no" } ?? "no"
                    try? other.destroy()
                }
                let passed = root >= 0 && user == 0 && neighbour == "yes"
                record(check, passed, "a new inotify instance: host root \(root >= 0 ? "yes" : "no"), host uid 1000 \(user == 0 ? "yes" : "no"), a neighbour sandbox's agent \(neighbour)")
            case .ownerInside(let path, let user):
                let (owned, detail) = ownerInside(sandbox, host(path), user: user)
                record(check, owned, detail)
            case .apiReadBounded(let path):
                do throws(OffswitchError) {
                    let bytes = try sandbox.readFile(host(path), user: .root)
                    record(check, bytes.count <= Sandbox.fileLimit, "the file API returned \(bytes.count) bytes of \(host(path))")
                } catch {
                    record(check, error.code == .fileTooLarge, "the file API refused \(host(path)): \(error.code.rawValue)")
                }
            default: break
            }
        }
        var logBytes: UInt64 = 0, upperBytes: UInt64 = 0
        if sampled != nil {
            var info = stat()
            if stat(log, &info) == 0 { logBytes = UInt64(info.st_size) }
            var filesystem = statvfs()
            if statvfs(sandbox.upperDirectory, &filesystem) == 0 {
                upperBytes = UInt64(filesystem.f_blocks - filesystem.f_bfree) * UInt64(filesystem.f_frsize)
            }
        }
        let destroyStarted = monotonicNanoseconds()
        try? sandbox.destroy()
        if let neighbour, let sampled {
            result.cost = AttemptCost(
                neighbourIdleMilliseconds: neighbour.idleMilliseconds, neighbourMedianMilliseconds: Neighbour.median(sampled.latencies),
                neighbourMaxMilliseconds: sampled.latencies.max() ?? 0, neighbourExecs: sampled.latencies.count,
                hostCPUMilliseconds: max(0, processCPUMilliseconds() - cpuBefore - sampled.ownCPU), hostRSSPeakBytes: sampled.rssPeak,
                logBytes: logBytes, upperBytes: upperBytes)
        }
        let destroyNanoseconds = monotonicNanoseconds() - destroyStarted
        result.durationMilliseconds = Int64((monotonicNanoseconds() - started) / 1_000_000)
        // Host-side checks on what is left, and on the host's own record of the calls.
        let events = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
        for check in every {
            switch check {
            case .pathAbsent(let path):
                var info = stat()
                let exists = lstat(host(path), &info) == 0
                record(check, !exists, exists ? "\(host(path)) exists on the host" : "\(host(path)) absent on the host")
            case .fileUnchanged(let path):
                let now = SHA256.file(host(path)) ?? "absent"
                record(check, now == before[path], now == before[path] ? "\(host(path)) unchanged" : "\(host(path)) changed")
            case .teardownBounded:
                let bound = sandbox.diffLimits.deadlineNanoseconds + 10_000_000_000
                let diff = events.last { $0["kind"]?.string == "diff_complete" }
                let summary = diff.map { "diff complete \($0["complete"]?.bool ?? false), \($0["hashed_bytes"]?.int ?? 0) bytes hashed, \($0["unhashed"]?.int ?? 0) files unhashed" } ?? "no diff_complete in the log"
                record(check, destroyNanoseconds <= bound && diff != nil,
                       "destroy took \(destroyNanoseconds / 1_000_000) ms (bound \(bound / 1_000_000) ms); \(summary)")
            case .modulesUnchanged:
                let same = moduleList() == before["modules"]
                record(check, same, same ? "the host's modules are unchanged" : "the host's module list changed")
            case .denied(let names):
                var made = 0, allowed: [String] = []
                for event in events where event["kind"]?.string == "syscall" {
                    guard let name = event["syscall"]?.string, names.contains(name) else { continue }
                    made += 1
                    if !["denied", "killed"].contains(event["decision"]?.string ?? "") { allowed.append(name) }
                }
                record(check, made > 0 && allowed.isEmpty, made == 0 ? "no recorded call of \(names.joined(separator: ", "))"
                       : allowed.isEmpty ? "\(made) calls, all refused by the host's filter" : "allowed by the host's filter: \(Set(allowed).sorted().joined(separator: ", "))")
            case .socketDenied(let domain, let proto):
                let calls = events.filter { event in
                    event["kind"]?.string == "syscall" && event["syscall"]?.string == "socket"
                        && event["args"]?["domain"]?.int == domain && event["args"]?["protocol"]?.int == proto
                }
                let allowed = calls.filter { !["denied", "killed"].contains($0["decision"]?.string ?? "") }.count
                record(check, !calls.isEmpty && allowed == 0, calls.isEmpty ? "no recorded socket(\(domain), *, \(proto))"
                       : allowed == 0 ? "\(calls.count) socket(\(domain), *, \(proto)) calls, all refused by the host's filter"
                       : "\(allowed) of \(calls.count) socket(\(domain), *, \(proto)) calls allowed")
            default: break
            }
        }
        for check in every {
            guard case .anyOf(let parts) = check else { continue }
            let results = parts.compactMap { checks[$0.name] }
            record(check, results.contains(where: \.passed), results.map { "\($0.passed ? "ok" : "no"): \($0.detail)" }.joined(separator: " | "))
        }
        result.checks = wanted.compactMap { checks[$0.name] }
        result.contained = result.checks.count == wanted.count && result.checks.allSatisfy(\.passed)
        for name in attempt.evidence {
            result.evidence[name] = events.filter { event in
                name.hasPrefix("kind:") ? event["kind"]?.string == String(name.dropFirst(5)) : event["syscall"]?.string == name
            }.count
        }
        result.visible = result.evidence.values.contains { $0 > 0 }
        return result
    }

    /// Runs `argv` as host uid and gid 1000 (an ordinary account, through setpriv) with no input
    /// or output; its exit status, -1 when it could not run.
    private static func asHostUser(_ argv: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        let full = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"] + argv
        var pid: pid_t = 0
        let spawned = full.withCStrings { pointers in posix_spawnp(&pid, "setpriv", &actions, nil, pointers, environ) }
        guard spawned == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return ofs_wifexited(status) != 0 ? ofs_wexitstatus(status) : -1
    }

    /// Paths in the upper layer owned by uid 0 (or by the user namespace's root), without
    /// following links.
    private static func rootOwned(_ directory: String, uids: Set<UInt32>) -> [String] {
        var found: [String] = []
        func walk(_ path: String, depth: Int) {
            guard depth < 64 else { return }
            for name in listDirectory(path) {
                let child = path + "/" + name
                var info = stat()
                guard lstat(child, &info) == 0 else { continue }
                if uids.contains(info.st_uid) { found.append(String(child.dropFirst(directory.count))) }
                if info.st_mode & S_IFMT == S_IFDIR { walk(child, depth: depth + 1) }
            }
        }
        walk(directory, depth: 0)
        return found.sorted()
    }

    /// What is at `path` inside the sandbox, resolved in its root (symlinks never leave it).
    private static func typeInside(_ sandbox: Sandbox, _ path: String) -> (String, nodev: Bool) {
        guard let root = try? sandbox.root() else { return ("unknown (no root)", false) }
        guard let fd = root.openIfPresent(path, flags: Int32(OFS_O_PATH)) else { return ("absent", false) }
        defer { close(fd) }
        var info = stat()
        var mount = statvfs()
        guard fstat(fd, &info) == 0, fstatvfs(fd, &mount) == 0 else { return ("unknown", false) }
        let nodev = mount.f_flag & 4 != 0  // ST_NODEV (glibc's enum, which Swift does not import)
        switch info.st_mode & S_IFMT {
        case S_IFBLK: return ("block device", nodev)
        case S_IFCHR: return ("char device", nodev)
        case S_IFDIR: return ("directory", nodev)
        case S_IFLNK: return ("symlink", nodev)
        default: return ("file", nodev)
        }
    }

    /// Whether `path` inside shows nothing: absent, unreadable, an empty file or an empty directory.
    /// Read through PID 1's root, so the sandbox's own mounts (its /proc, the masks) are what is seen.
    private static func maskedInside(_ sandbox: Sandbox, _ path: String) -> (Bool, String) {
        let full = "/proc/\(sandbox.initPID)/root" + path
        var info = stat()
        guard stat(full, &info) == 0 else { return (true, "\(path) inside: absent (\(String(cString: strerror(errno))))") }
        if info.st_mode & S_IFMT == S_IFDIR {
            let entries = listDirectory(full)
            return (entries.isEmpty, entries.isEmpty ? "\(path) inside: an empty directory" : "\(path) inside lists \(entries.prefix(5).joined(separator: ", "))")
        }
        let fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return (true, "\(path) inside: unreadable (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return (true, n == 0 ? "\(path) inside: empty" : "\(path) inside: unreadable (\(String(cString: strerror(errno))))") }
        return (false, "\(path) inside reads: \(String(decoding: buffer[0..<min(n, 80)], as: UTF8.self).debugDescription)")
    }

    /// Whether `path` inside belongs to `user` inside, and so on the host to that user's id of the
    /// sandbox's own slot (never host root).
    private static func ownerInside(_ sandbox: Sandbox, _ path: String, user: SandboxUser) -> (Bool, String) {
        guard let root = try? sandbox.root() else { return (false, "the sandbox's root is gone") }
        guard let fd = root.openIfPresent(path, flags: Int32(OFS_O_PATH)) else { return (false, "\(path) inside: absent") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return (false, "\(path) inside: fstat failed") }
        let base = sandbox.spec.userNamespace?.hostUID ?? 0
        let wanted: UInt32 = user == .root ? 0 : SandboxUser.agentUID
        let inside = info.st_uid >= base ? String(info.st_uid - base) : "outside the slot"
        let owned = base != 0 && info.st_uid == base + wanted
        return (owned, "\(path) inside: owner uid \(inside) (host uid \(info.st_uid), the slot starts at \(base)); expected \(user.rawValue)")
    }

    /// Whether the filesystem at `path` inside is bounded and not the host's root filesystem.
    private static func filesystemInside(_ sandbox: Sandbox, _ path: String) -> (Bool, String) {
        guard let root = try? sandbox.root() else { return (false, "the sandbox's root is gone") }
        guard let fd = root.openIfPresent(path, flags: Int32(OFS_O_PATH) | O_DIRECTORY, followLast: true) else {
            return (false, "\(path) cannot be opened inside")
        }
        defer { close(fd) }
        var inside = statvfs(), host = statvfs()
        guard fstatvfs(fd, &inside) == 0, statvfs("/", &host) == 0 else { return (false, "statvfs failed") }
        let total = UInt64(inside.f_blocks) * UInt64(inside.f_frsize)
        let free = UInt64(inside.f_bavail) * UInt64(inside.f_frsize)
        let sameAsHost = inside.f_fsid == host.f_fsid && inside.f_blocks == host.f_blocks
        let bounded = total <= 4 << 30 && !sameAsHost
        return (bounded, "\(path) inside: \(total >> 20) MiB, \(free >> 20) MiB free\(sameAsHost ? ", the host's root filesystem" : "")")
    }

    private static func networkInterfaces(_ pid: pid_t) -> [String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/net/dev", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").dropFirst(2).compactMap { line in
            line.split(separator: ":").first.map { String($0.filter { $0 != " " }) }
        }.sorted()
    }

    private static func processState(_ pid: pid_t) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
    }

    private static func moduleList() -> String {
        ((try? String(contentsOfFile: "/proc/modules", encoding: .utf8)) ?? "").split(separator: "\n")
            .map { $0.split(separator: " ").first.map(String.init) ?? "" }.sorted().joined(separator: ",")
    }

    /// Whether the sandbox's cgroup reports its pids or memory limit reached (v2 `*.events`,
    /// v1 `pids.events` and `memory.failcnt`).
    private static func limitReached(_ limit: String, directories: [String]) -> (Bool, String) {
        var details: [String] = []
        for directory in directories {
            func counter(_ file: String, _ key: String?) -> Int? {
                guard let text = try? String(contentsOfFile: directory + "/" + file, encoding: .utf8) else { return nil }
                guard let key else { return Int(text.filter { !$0.isWhitespace }) }
                for line in text.split(separator: "\n") {
                    let parts = line.split(separator: " ")
                    if parts.count == 2, parts[0] == key { return Int(parts[1]) }
                }
                return nil
            }
            let found: [(String, Int?)] = switch limit {
            case "pids": [("pids.events max", counter("pids.events", "max"))]
            case "cpu": [("cpu.stat nr_throttled", counter("cpu.stat", "nr_throttled"))]
            default: [("memory.events max", counter("memory.events", "max")), ("memory.events oom_kill", counter("memory.events", "oom_kill")),
                      ("memory.failcnt", counter("memory.failcnt", nil)), ("memory.oom_control oom_kill", counter("memory.oom_control", "oom_kill"))]
            }
            for (what, value) in found { if let value { details.append("\(what) \(value) (\(directory))") } }
            if found.contains(where: { ($0.1 ?? 0) > 0 }) { return (true, details.joined(separator: "; ")) }
        }
        return (false, details.isEmpty ? "no \(limit) counters found" : details.joined(separator: "; "))
    }
}

/// Whether a sandbox's CPU quota held while an attempt ran. Throttling shows it was reached; but a
/// quota as large as the machine (`observe`: 2 CPUs on 2 cores), or one the attempt never reached
/// because other work on the host took the cores, is never throttled. So the check also passes
/// when a quota is set and the group's CPU time over the attempt stayed within it: the bound held
/// whether or not it had to act. No quota at all fails.
public enum CPUQuotaUse {
    /// "USAGE_USEC MONOTONIC_NS" at the start, or nil when no group reports its usage.
    public static func start(_ directories: [String]) -> String? {
        guard let usage = usage(directories) else { return nil }
        return "\(usage) \(monotonicNanoseconds())"
    }

    public static func held(since start: String?, directories: [String]) -> (Bool, String) {
        let throttled = directories.compactMap { counter($0 + "/cpu.stat", "nr_throttled") }.max() ?? 0
        guard let quota = quota(directories) else { return (false, "no CPU quota found in \(directories.joined(separator: ", "))") }
        let limit = hundredths(quota)
        if throttled > 0 { return (true, "throttled \(throttled) times at its quota of \(limit) CPUs") }
        let parts = (start ?? "").split(separator: " ").compactMap { UInt64($0) }
        guard parts.count == 2, let now = usage(directories), now >= parts[0] else {
            return (false, "quota \(limit) CPUs, never throttled, and the group's CPU time cannot be read")
        }
        let used = Double(now - parts[0]) * 1000, elapsed = Double(monotonicNanoseconds() - parts[1])
        // A period's worth of slack: the kernel enforces the quota per period (100 ms).
        let held = used <= quota * elapsed + 100_000_000
        return (held, "quota \(limit) CPUs, never throttled; the group used \(hundredths(used / elapsed)) CPUs over \(Int(elapsed / 1_000_000)) ms")
    }

    /// CPUs the quota allows: v2 `cpu.max` "QUOTA PERIOD", v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`.
    private static func quota(_ directories: [String]) -> Double? {
        for directory in directories {
            if let text = try? String(contentsOfFile: directory + "/cpu.max", encoding: .utf8) {
                let words = text.split(whereSeparator: \.isWhitespace)
                if words.count == 2, let quota = Double(words[0]), let period = Double(words[1]), period > 0 { return quota / period }
            }
            if let quota = number(directory + "/cpu.cfs_quota_us"), quota > 0, let period = number(directory + "/cpu.cfs_period_us"), period > 0 {
                return Double(quota) / Double(period)
            }
        }
        return nil
    }

    /// The group's CPU time in microseconds: v2 `cpu.stat` `usage_usec` (on a hybrid host, the
    /// unified hierarchy's group reports it without the cpu controller).
    private static func usage(_ directories: [String]) -> UInt64? {
        directories.lazy.compactMap { counter($0 + "/cpu.stat", "usage_usec").map(UInt64.init) }.first
    }

    private static func counter(_ path: String, _ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key { return Int(parts[1]) }
        }
        return nil
    }

    private static func hundredths(_ value: Double) -> String {
        let scaled = Int((value * 100).rounded())
        return "\(scaled / 100).\(scaled % 100 < 10 ? "0" : "")\(scaled % 100)"
    }

    private static func number(_ path: String) -> Int? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.filter { !$0.isWhitespace }) }
    }
}

/// A TCP listener on the host's 127.0.0.1: a sandbox without network must not reach it.
final class Listener {
    let fd: Int32
    let port: UInt16

    init?() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { close(fd); return nil }
        port = UInt16(bigEndian: address.sin_port)
    }

    /// Whether a connection is waiting.
    func connected() -> Bool {
        let client = accept(fd, nil, nil)
        if client >= 0 { close(client); return true }
        return false
    }

    deinit { close(fd) }
}

/// The host's kernel log from now on (/dev/kmsg, non-blocking).
final class KernelLog {
    let fd: Int32

    init?() {
        fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        lseek(fd, 0, SEEK_END)
    }

    /// The records logged since.
    func newLines() -> [String] {
        var lines: [String] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EPIPE { continue }  // records were overwritten; go on
            if n <= 0 { break }
            lines.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        return lines
    }

    deinit { close(fd) }
}

/// The host's TCP memory while an attempt runs: /proc/net/sockstat's `TCP: mem` (pages of socket
/// buffers, all network namespaces together), read every 20 ms on a thread of its own. The count
/// is the host's, so two batteries sampling at once would see each other's floods: a sampler
/// holds a host-wide lock (`lockPath`) from its baseline to `stop()`, and another waits for it.
final class TCPMemorySampler: Sendable {
    static let lockPath = "/run/offswitch-tcp-memory.lock"
    private let lock: Int32
    struct Sample: Sendable {
        var baseline: Int64
        var peak: Int64
        var samples: Int
    }

    private final class Peak: Sendable {
        let sample: Mutex<Sample>
        init(_ sample: Sample) { self.sample = Mutex(sample) }
    }

    /// nil when sockstat cannot be read or the thread did not start: the check then fails.
    private let running: (thread: WorkerThread, peak: Peak)?

    init() {
        lock = open(Self.lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        // Without the lock the sample may include another battery's flood: the check then fails
        // (a bound exceeded), it never passes wrongly.
        if lock >= 0 { while flock(lock, LOCK_EX) != 0 && errno == EINTR {} }
        guard let baseline = Self.read(), let thread = try? WorkerThread("tcp memory sampler") else {
            running = nil
            return
        }
        let peak = Peak(Sample(baseline: baseline, peak: baseline, samples: 1))
        do throws(OffswitchError) {
            try thread.start("tcp memory sampler") {
                var wake = pollfd(fd: thread.wakeFD, events: Int16(POLLIN), revents: 0)
                while !thread.stopping {
                    if let now = Self.read() {
                        peak.sample.withLock { sample in
                            sample.peak = max(sample.peak, now)
                            sample.samples += 1
                        }
                    }
                    _ = poll(&wake, 1, 20)
                }
            }
            running = (thread, peak)
        } catch {
            running = nil
        }
    }

    func stop() {
        running?.thread.stop()
        if lock >= 0 { flock(lock, LOCK_UN) }
    }

    deinit {
        if lock >= 0 { close(lock) }
    }

    var result: Sample? { running?.peak.sample.withLock { $0 } }

    /// `TCP: inuse N orphan N tw N alloc N mem PAGES`, in bytes.
    static func read() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/net/sockstat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("TCP:") }) else { return nil }
        let words = line.split(separator: " ")
        guard let index = words.firstIndex(of: "mem"), index + 1 < words.count, let pages = Int64(words[index + 1]) else { return nil }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}
