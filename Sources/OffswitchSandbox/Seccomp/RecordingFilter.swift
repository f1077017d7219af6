import CSeccomp
import OffswitchEvidence
public import OffswitchCore

/// Puts the recorder in front of a compiled policy: a classic-BPF prefix that returns
/// SECCOMP_RET_USER_NOTIF for the profile's recorded syscalls (with their argument conditions),
/// and falls through to the policy program, unchanged, for everything else. The recorder then
/// answers each notified call with the policy's own verdict for it (`SeccompVerdict`), so the
/// kernel still enforces every decision the profile makes; the prefix only adds a witness.
///
/// Every architecture the policy accepts (x86-64, and i386 and x32 under Docker's archMap) gets
/// its own syscall numbers, so a 32-bit `int 0x80` execve is recorded like a 64-bit one.
public enum RecordingFilter {
    static let userNotification: UInt32 = 0x7fc0_0000

    /// The combined program: prefix + `policy`. `architectures` are libseccomp arch tokens (equal
    /// to AUDIT_ARCH values); `record` is empty for no recording (then `policy` is returned as is).
    ///
    /// `kernelRecorded` names the calls the kernel recorder takes on x86-64 (`KernelPlan`): they get
    /// no prefix entry there, and keep theirs on the other architectures.
    public static func combine(policy: [UInt8], record: [RecordedSyscall], kernelRecorded: Set<String> = [],
                               architectures: [UInt32]) throws(OffswitchError) -> [UInt8] {
        guard !record.isEmpty else { return policy }
        var filter = BPFAssembler()
        let toPolicy = filter.newLabel()
        for arch in architectures {
            let nextArch = filter.newLabel()
            filter.emit(.load(4))
            filter.branchFar(equals: arch, otherwise: nextArch)
            filter.emit(.load(0))
            // Group the record entries by syscall number on this architecture.
            var groups: [(Int32, [RecordedSyscall])] = []
            for entry in record where !(arch == KernelRecorder.x86_64 && kernelRecorded.contains(entry.name)) {
                let number = seccomp_syscall_resolve_name_arch(arch, entry.name)
                guard number >= 0 else { continue }  // not a syscall on this architecture
                if let index = groups.firstIndex(where: { $0.0 == number }) {
                    groups[index].1.append(entry)
                } else {
                    groups.append((number, [entry]))
                }
            }
            for (number, entries) in groups {
                let nextGroup = filter.newLabel()
                filter.branchFar(equals: UInt32(bitPattern: number), otherwise: nextGroup)
                for entry in entries {
                    let nextAlternative = filter.newLabel()
                    for argument in entry.args {
                        try filter.emitComparison(argument, fail: nextAlternative)
                    }
                    filter.emit(.ret(userNotification))
                    filter.emit(.mark(nextAlternative))
                }
                filter.emit(.jump(toPolicy))
                filter.emit(.mark(nextGroup))
            }
            filter.emit(.jump(toPolicy))
            filter.emit(.mark(nextArch))
        }
        filter.emit(.mark(toPolicy))
        let prefix = try filter.assemble()
        guard (prefix.count + policy.count) / 8 <= 4096 else {
            throw OffswitchError(.invalidProfile,
                "the record list and the seccomp policy compile to \((prefix.count + policy.count) / 8) instructions (the kernel takes at most 4096)")
        }
        return prefix + policy
    }
}
