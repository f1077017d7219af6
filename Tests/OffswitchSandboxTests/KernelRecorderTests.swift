import Foundation
import Glibc
import COffswitchBPF
import OffswitchCore
@testable import OffswitchEvidence
@testable import OffswitchSandbox
import OffswitchTestSupport
import Testing

/// The kernel recorder's logic without root: which calls it takes from a policy, its table of a
/// profile's conditions, the seccomp prefix without them, and records decoded into the fields user
/// notification gives.
@Suite("Kernel recorder: plan and records")
struct KernelRecorderLogicTests {
    static let x86_64 = SeccompCompiler.archToken("SCMP_ARCH_X86_64")
    static let i386 = SeccompCompiler.archToken("SCMP_ARCH_X86")
    static let allowed: Set<SeccompVerdict> = [SeccompVerdict(returnValue: SeccompVerdict.allow)]

    static func dockerProgram() throws -> [UInt8] {
        let path = try BundledFiles.path("sandbox-profiles/seccomp/docker-default.json")
        let policy = try #require(ProfileReader.readSeccompPolicy(path: path).policy)
        let compiled = try SeccompCompiler(capabilities: .dockerDefault).compile(policy, source: "test")
        return try HostRefusals.prepend(to: compiled.program, architectures: [x86_64, i386])
    }

    @Test("Docker's policy allows the file calls whatever their arguments; calls it decides by argument or denies are not")
    func outcomes() throws {
        #if arch(x86_64)
        let program = try Self.dockerProgram()
        for (name, nr) in [("openat", Int32(257)), ("unlinkat", 263), ("fchmodat", 268), ("renameat2", 316), ("chmod", 90)] {
            #expect(SeccompVerdict.outcomes(program, nr: nr, arch: Self.x86_64) == Self.allowed, "\(name)")
        }
        // socket: the host's refusals decide by family and protocol.
        let socket = try #require(SeccompVerdict.outcomes(program, nr: 41, arch: Self.x86_64))
        #expect(socket.contains(SeccompVerdict(returnValue: SeccompVerdict.allow)))
        #expect(socket.contains { $0.action == SeccompVerdict.errno })
        // mount: denied without CAP_SYS_ADMIN, whatever its arguments.
        #expect(SeccompVerdict.outcomes(program, nr: 165, arch: Self.x86_64)?.allSatisfy { $0.action == SeccompVerdict.errno } == true)
        // One known call still has one outcome, the one `evaluate` gives.
        #expect(SeccompVerdict.evaluate(program, nr: 41, arch: Self.x86_64, instructionPointer: 0, args: [16, 3, 9, 0, 0, 0]).action
                == SeccompVerdict.errno)
        #endif
    }

    @Test("A profile's conditions become the program's table; more than it holds keeps the call with user notification")
    func table() throws {
        let layout = try #require(KernelRecorder.layouts["openat"])
        let flags = [1, 2, 64, 512].map { RecordedSyscall(name: "openat", args: [SeccompPolicy.Argument(index: 2, value: $0, valueTwo: $0, op: "SCMP_CMP_MASKED_EQ")]) }
        let call = try #require(KernelRecorder.table(layout, flags))
        #expect(call.alternatives == 4)
        #expect(call.string.0 == 1 && call.dirfd.0 == 0 && call.string.1 == 0xff && call.fd == 0xff)
        let third = withUnsafeBytes(of: call.alternative) { $0.bindMemory(to: ofs_rec_alternative.self)[2] }
        #expect(third.count == 1 && third.comparison.0.index == 2 && third.comparison.0.op == 7 && third.comparison.0.value == 64)
        #expect(KernelRecorder.table(layout, flags + [flags[0]]) == nil, "five alternatives")
        #expect(KernelRecorder.table(layout, flags + [RecordedSyscall(name: "openat")])?.alternatives == 0, "an unconditional entry records every call")
        let unknown = RecordedSyscall(name: "openat", args: [SeccompPolicy.Argument(index: 2, value: 1, op: "SCMP_CMP_SOMETHING")])
        #expect(KernelRecorder.table(layout, [unknown]) == nil)
    }

    @Test("The seccomp prefix leaves the kernel's calls out on x86-64 only")
    func prefix() throws {
        #if arch(x86_64)
        let policy = try Self.dockerProgram()
        let record = [RecordedSyscall(name: "openat"), RecordedSyscall(name: "kill")]
        let combined = try RecordingFilter.combine(policy: policy, record: record, kernelRecorded: ["openat"], architectures: [Self.x86_64, Self.i386])
        func action(_ arch: UInt32, _ nr: Int32) -> UInt32 {
            SeccompVerdict.evaluate(combined, nr: nr, arch: arch, instructionPointer: 0, args: [0, 0, 1, 0, 0, 0]).action
        }
        #expect(action(Self.x86_64, 257) == SeccompVerdict.allow, "openat: the kernel records it")
        #expect(action(Self.x86_64, 62) == SeccompVerdict.userNotification, "kill stays with user notification")
        #expect(action(Self.i386, 295) == SeccompVerdict.userNotification, "i386 openat: the tracepoints do not see it")
        #endif
    }

    /// A record as the program writes it: the header, then the sections in order.
    static func record(nr: UInt32, args: [UInt64], pid: Int32 = 7, sections: [Int: (UInt8, [UInt8])], atExit result: Int64? = nil) -> [UInt8] {
        var event = ofs_rec_event()
        event.nr = nr
        if let result {
            event.flags = UInt32(OFS_REC_AT_EXIT)
            event.result = result
        }
        event.host_pid = 1234
        event.host_tid = 1234
        event.pid = pid
        event.ppid = 2
        event.sid = 2
        event.uid = 101000
        withUnsafeMutableBytes(of: &event.args) { raw in for (i, a) in args.enumerated() { raw.storeBytes(of: a, toByteOffset: i * 8, as: UInt64.self) } }
        withUnsafeMutableBytes(of: &event.comm) { raw in for (i, c) in "bash".utf8.enumerated() { raw[i] = c } }
        var data: [UInt8] = []
        withUnsafeMutableBytes(of: &event.length) { lengths in
            withUnsafeMutableBytes(of: &event.status) { status in
                for section in 0..<Int(OFS_SECTIONS) {
                    guard let (flags, bytes) = sections[section] else { continue }
                    status[Int(section)] = flags
                    lengths.storeBytes(of: UInt16(bytes.count), toByteOffset: Int(section) * 2, as: UInt16.self)
                    withUnsafeMutableBytes(of: &event.offset) { $0.storeBytes(of: UInt16(data.count), toByteOffset: Int(section) * 2, as: UInt16.self) }
                    data += bytes
                }
            }
        }
        return withUnsafeBytes(of: event) { Array($0) } + data
    }

    /// Names leaf first, each NUL-terminated, as the program walks them.
    static func walked(_ path: String) -> [UInt8] {
        path.split(separator: "/").reversed().flatMap { Array($0.utf8) + [0] }
    }

    static let walkedFlags = UInt8(OFS_SEC_PRESENT | OFS_SEC_WALKED)

    static func decode(_ bytes: [UInt8], _ name: String) throws -> (KernelRecord, [(String, JSONValue)]) {
        let record = try #require(bytes.withUnsafeBytes { KernelRecord($0, name: name) })
        return (record, SyscallArguments.decode(name, record.args, memory: record, hostPID: record.hostPID))
    }

    @Test("A relative path is joined to the working directory the program walked, and the caller is the sandbox's view")
    func relative() throws {
        let bytes = Self.record(nr: 257, args: [UInt64(bitPattern: -100), 0x1000, 0o1101, 0o644, 0, 0], sections: [
            OFS_SEC_EXE: (Self.walkedFlags, Self.walked("/usr/bin/bash")),
            OFS_SEC_STRING0: (UInt8(OFS_SEC_PRESENT), Array("../user/./shutdown.sh".utf8)),
            OFS_SEC_BASE0: (Self.walkedFlags, Self.walked("/home/other")),
        ])
        let (record, fields) = try Self.decode(bytes, "openat")
        let object = JSONValue.object(fields)
        #expect(object["path"]?.string == "/home/user/shutdown.sh")
        #expect(object["path_given"]?.string == "../user/./shutdown.sh")
        #expect(object["flags"]?.string == "O_WRONLY|O_CREAT|O_TRUNC")
        #expect(object["dirfd"]?.string == "AT_FDCWD")
        let facts = record.facts(uidBase: 100000, exe: record.exe)
        #expect(facts == ProcessFacts(pid: 7, ppid: 2, sid: 2, comm: "bash", exe: "/usr/bin/bash", uid: 1000))
    }

    @Test("Descriptors: /proc/self/fd/N names its file, a pipe is a pipe, a deleted executable says so")
    func descriptors() throws {
        var pseudo = withUnsafeBytes(of: UInt64(0x5049_5045)) { Array($0) } + withUnsafeBytes(of: UInt64(4242)) { Array($0) }
        pseudo.append(0)
        let fchmod = Self.record(nr: 91, args: [5, 0o600, 0, 0, 0, 0], sections: [
            OFS_SEC_EXE: (Self.walkedFlags | UInt8(OFS_SEC_DELETED), Self.walked("/home/user/a.out")),
            OFS_SEC_FD: (UInt8(OFS_SEC_PRESENT | OFS_SEC_PSEUDO), pseudo),
        ])
        let (record, fields) = try Self.decode(fchmod, "fchmod")
        #expect(JSONValue.object(fields)["fd_target"]?.string == "pipe:[4242]")
        #expect(record.exe == "/home/user/a.out (deleted)")

        let reopened = Self.record(nr: 268, args: [UInt64(bitPattern: -100), 0x2000, 0o644, 0, 0, 0], sections: [
            OFS_SEC_STRING0: (UInt8(OFS_SEC_PRESENT), Array("/proc/self/fd/3".utf8)),
            OFS_SEC_BASE0: (Self.walkedFlags | UInt8(OFS_SEC_OWN_FD), Self.walked("/home/user/shutdown.sh")),
        ])
        let (_, chmod) = try Self.decode(reopened, "fchmodat")
        #expect(JSONValue.object(chmod)["path"]?.string == "/home/user/shutdown.sh")
        #expect(JSONValue.object(chmod)["path_given"]?.string == "/proc/self/fd/3")

        // renameat2 from a dirfd to the working directory: each string with its own base.
        let rename = Self.record(nr: 316, args: [4, 0x1000, UInt64(bitPattern: -100), 0x2000, 1, 0], sections: [
            OFS_SEC_STRING0: (UInt8(OFS_SEC_PRESENT), Array("shutdown.sh".utf8)),
            OFS_SEC_BASE0: (Self.walkedFlags, Self.walked("/home/user")),
            OFS_SEC_STRING1: (UInt8(OFS_SEC_PRESENT), Array("kept".utf8)),
            OFS_SEC_BASE1: (Self.walkedFlags, Self.walked("/tmp")),
        ])
        let moved = JSONValue.object(try Self.decode(rename, "renameat2").1)
        #expect(moved["from"]?.string == "/home/user/shutdown.sh")
        #expect(moved["to"]?.string == "/tmp/kept")
        // An open recorded at its exit that succeeded is named by the descriptor it returned, not
        // by the string, which another thread may have rewritten by then; one that failed, by its string.
        let sections: [Int: (UInt8, [UInt8])] = [OFS_SEC_STRING0: (UInt8(OFS_SEC_PRESENT), Array("/home/user/shutdown.sh".utf8)),
                                                 OFS_SEC_FD: (Self.walkedFlags, Self.walked("/tmp/f"))]
        let opened = try #require(Self.record(nr: 257, args: [UInt64(bitPattern: -100), 0x1000, 1, 0, 0, 0], sections: sections, atExit: 3)
            .withUnsafeBytes { KernelRecord($0, name: "openat") })
        #expect(opened.opened == "/tmp/f")
        let refused = try #require(Self.record(nr: 257, args: [UInt64(bitPattern: -100), 0x1000, 1, 0, 0, 0], sections: sections, atExit: -13)
            .withUnsafeBytes { KernelRecord($0, name: "openat") })
        #expect(refused.opened == nil)
        #expect(KernelRecorder.table(try #require(KernelRecorder.layouts["openat"]), [RecordedSyscall(name: "openat")])?.opens == 1)
        #expect(KernelRecorder.table(try #require(KernelRecorder.layouts["chmod"]), [RecordedSyscall(name: "chmod")])?.opens == 0)
        // A walk cut short is no path: it is not guessed at.
        #expect(KernelRecord.path((Self.walkedFlags | UInt8(OFS_SEC_TRUNCATED), Self.walked("/a/b"))) == nil)
        #expect(KernelRecord.path((Self.walkedFlags, [])) == "/")
    }

    @Test("Any argument values decode without trapping: every recorded call of every bundled profile, with all bits set, the sign bit alone, zero and random words")
    func extremeArguments() throws {
        var names: Set<String> = []
        for profile in ["docker", "hardened", "observe"] { names.formUnion(try profileSpec(profile).record.map(\.name)) }
        #expect(names.contains("ptrace") && names.contains("fcntl"))
        var patterns: [[UInt64]] = [Array(repeating: .max, count: 6), Array(repeating: 1 << 63, count: 6), Array(repeating: 0, count: 6)]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<32 { patterns.append((0..<6).map { _ in generator.next() }) }
        for name in names.sorted() {
            for args in patterns {
                // A ptrace(-1, ...) took the whole recorder down once: a raw word read as a signed number.
                let fields = SyscallArguments.decode(name, args, memory: nil, hostPID: 0)
                #expect(!JSONValue.object(fields).serialized.isEmpty, "\(name)")
            }
        }
    }
}

/// The kernel recorder in real sandboxes: where this host loads it (the tracepoint path), every
/// file call is recorded by it with the fields user notification gives, a path deeper than any
/// fixed walk is still resolved, and a flood is recorded or counted.
@Suite("Kernel recorder: sandboxes", needsRoot)
struct KernelRecorderTests {
    static func events(_ sandbox: Sandbox) throws -> [[String: Any]] {
        try RecorderTests.events(sandbox)
    }

    @Test("The docker profile's file calls go to the kernel recorder, its other calls to user notification")
    func mode() throws {
        let report = KernelRecorder.report()
        guard report.mode == "tracepoint" else {
            // Not silent: the mode says why, and the sandboxes' recorder_mode says the same.
            #expect(report.kernelUnavailable != nil)
            return
        }
        try withSandbox(try profileSpec("docker")) { sandbox in
            let mode = try #require(try Self.events(sandbox).first { $0["kind"] as? String == "recorder_mode" })
            #expect(mode["mode"] as? String == "tracepoint")
            let calls = Set(mode["kernel_calls"] as? [String] ?? [])
            #expect(calls.isSuperset(of: ["openat", "unlinkat", "renameat2", "fchmodat", "fchmod"]))
            #expect(!calls.contains("execve") && !calls.contains("kill") && !calls.contains("mount"))
            #expect(sandbox.recorderReport?.mode == "tracepoint")
        }
    }

    @Test("A relative path below a working directory 120 levels deep, and a descriptor's file, are named whole")
    func deep() throws {
        guard KernelRecorder.report().mode == "tracepoint" else { return }
        let script = #"""
            cd /home/user && for i in $(seq 120); do mkdir d && cd d; done
            echo x > deep.txt && chmod 600 ../d/deep.txt && mv deep.txt moved.txt
            exec 4<> /home/user/fd.txt && python3 -c 'import os; os.fchmod(4, 0o600); r, w = os.pipe(); os.fchmod(r, 0o600)'
            """#
        try withSandbox(try profileSpec("docker")) { sandbox in
            let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", script], timeoutSeconds: 60))
            #expect(run.exitCode == 0, "\(run.err)")
            let deep = "/home/user" + String(repeating: "/d", count: 120)
            let calls = try Self.events(sandbox).filter { $0["kind"] as? String == "syscall" }
            func args(_ name: String, _ test: ([String: Any]) -> Bool) -> Bool {
                calls.contains { $0["syscall"] as? String == name && test($0["args"] as? [String: Any] ?? [:]) }
            }
            #expect(args("openat") { $0["path"] as? String == deep + "/deep.txt" && $0["path_given"] as? String == "deep.txt" })
            #expect(args("fchmodat") { $0["path"] as? String == deep + "/deep.txt" })
            #expect(args("renameat2") { $0["from"] as? String == deep + "/deep.txt" && $0["to"] as? String == deep + "/moved.txt" })
            #expect(args("fchmod") { $0["path"] as? String == "/home/user/fd.txt" })
            #expect(args("fchmod") { ($0["fd_target"] as? String ?? "").hasPrefix("pipe:[") })
            let python = try #require(calls.first { $0["syscall"] as? String == "fchmod" })
            #expect(python["comm"] as? String == "python3")
            #expect((python["exe"] as? String ?? "").hasPrefix("/usr/bin/python3"), "the executable, walked by the program")
        }
    }

    @Test("A path in a program's untouched read-only data, and openat2's flags on an untouched page, are read at the call's exit")
    func notResident() throws {
        guard KernelRecorder.report().mode == "tracepoint" else { return }
        // The literal's page is not resident at the call's entry (a tracepoint program cannot
        // fault it in), and the process exits before any reader could look at it.
        let literal = "#include <sys/stat.h>\nint main(void) { return chmod(\"/etc/hostname\", 0) ? 0 : 1; }\n"
        let how = #"""
            #define _GNU_SOURCE
            #include <fcntl.h>
            #include <stdlib.h>
            #include <unistd.h>
            #include <sys/mman.h>
            #include <sys/syscall.h>
            #include <linux/openat2.h>
            int main(void) {
                struct open_how how = { .flags = O_WRONLY | O_TRUNC };
                char name[] = "/tmp/.howXXXXXX";
                int fd = mkstemp(name);
                write(fd, &how, sizeof how); ftruncate(fd, 4096);
                void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
                close(fd); unlink(name);
                return syscall(SYS_openat2, AT_FDCWD, "/etc/hostname", page, sizeof how) < 0 ? 0 : 1;
            }
            """#
        try withSandbox(try profileSpec("docker")) { sandbox in
            try sandbox.writeFile("/tmp/c.c", Array(literal.utf8), mode: 0o644)
            try sandbox.writeFile("/tmp/h.c", Array(how.utf8), mode: 0o644)
            let run = try sandbox.exec(ExecRequest(argv: ["bash", "-c", "cd /tmp && gcc -O2 -o c c.c && gcc -O2 -o h h.c && ./c && ./h"],
                                                   timeoutSeconds: 120))
            #expect(run.exitCode == 0, "\(run.out) \(run.err)")
            let calls = try Self.events(sandbox).filter { $0["kind"] as? String == "syscall" }
            let chmod = try #require(calls.first { $0["comm"] as? String == "c" && ["chmod", "fchmodat", "fchmodat2"].contains($0["syscall"] as? String ?? "") })
            #expect((chmod["args"] as? [String: Any])?["path"] as? String == "/etc/hostname")
            #expect(chmod["args_unread"] == nil)
            if chmod["read_at_exit"] as? Bool == true { #expect(chmod["result"] as? Int == -Int(EPERM)) }
            let open = try #require(calls.first { $0["comm"] as? String == "h" && $0["syscall"] as? String == "openat2" })
            let openArgs = open["args"] as? [String: Any] ?? [:]
            #expect(openArgs["path"] as? String == "/etc/hostname")
            #expect(openArgs["flags"] as? String == "O_WRONLY|O_TRUNC", "flags read, not taken as zero")
            #expect(open["read_at_exit"] as? Bool == true, "the open_how page was not resident at entry")
        }
    }

    @Test("A flood of 100,000 opens is recorded or counted: events plus the lost count make every call")
    func flood() throws {
        guard KernelRecorder.report().mode == "tracepoint" else { return }
        let count = 100_000
        let script = "import os\nfor i in range(\(count)):\n    os.close(os.open('/tmp/flood', os.O_WRONLY | os.O_CREAT))\n"
        var spec = try profileSpec("docker")
        spec.limits.cpus = 2
        spec.limits.evidenceBytes = 512 << 20
        try withSandbox(spec) { sandbox in
            let run = try sandbox.exec(ExecRequest(argv: ["python3", "-c", script], timeoutSeconds: 120))
            #expect(run.exitCode == 0, "\(run.err)")
            // Lines, not JSON: 200,000 of them.
            let text = try String(contentsOfFile: sandbox.events.path, encoding: .utf8)
            var recorded = 0, lost = 0
            for line in text.split(separator: "\n") {
                if line.contains("\"syscall\":\"openat\"") && line.contains("\"path\":\"/tmp/flood\"") { recorded += 1 }
                if line.contains("\"kind\":\"syscall_events_lost\"") {
                    let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                    lost += event["count"] as? Int ?? 0
                    #expect(Set(event.keys) == ["seq", "t_ns", "kind", "count", "total", "source"], "docs/events.md's example")
                }
            }
            #expect(!text.contains("evidence_budget_reached"))
            #expect(recorded + lost == count, "recorded \(recorded), lost \(lost), of \(count)")
        }
    }
}
