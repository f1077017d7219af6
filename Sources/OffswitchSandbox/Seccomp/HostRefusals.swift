import CSeccomp
import Glibc
public import OffswitchCore
import OffswitchEvidence

/// Calls refused to every sandbox, whatever its profile's policy says, because they reach
/// host-global kernel state that no namespace covers. Docker allows them; the departure is
/// documented in docs/security.md.
///
/// - `socket(AF_NETLINK, *, NETLINK_AUDIT)`: with CAP_AUDIT_WRITE, which Docker gives root, a
///   user message lands in the host's audit trail and, without auditd, in the host's kernel log.
/// - `socket(AF_NETLINK, *, NETLINK_KOBJECT_UEVENT)`: the host's device events (hot-plug, module
///   and driver events, with device paths) are broadcast to every network namespace's listeners.
/// - i386 `socketcall(SYS_SOCKET, args)`: the arguments are behind a pointer no filter can read,
///   so it could open either. 32-bit programs get sockets from `socket` (359, since Linux 4.3).
///
/// A classic-BPF prefix in front of the compiled policy, not a libseccomp rule: libseccomp merges
/// rules per syscall, and an unconditional `socket` allow (in an older Docker policy, say)
/// silently swallows a conditional refusal. The recorder evaluates the policy program with this
/// prefix, so a refused call is logged as `denied` like every other refusal.
public enum HostRefusals {
    /// What a kernel without the protocol answers; libaudit then takes audit as absent.
    public static let errno = EPROTONOSUPPORT
    static let netlinkFamily: UInt64 = 16  // AF_NETLINK
    /// NETLINK_AUDIT and NETLINK_KOBJECT_UEVENT.
    public static let netlinkProtocols: [UInt64] = [9, 15]
    static let socketcallSocket: UInt64 = 1  // SYS_SOCKET
    static let auditArchX86_64: UInt32 = 0xc000_003e

    /// `policy` behind the refusals, for the architectures the policy accepts (libseccomp tokens).
    public static func prepend(to policy: [UInt8], architectures: [UInt32]) throws(OffswitchError) -> [UInt8] {
        var filter = BPFAssembler()
        let toPolicy = filter.newLabel()
        let refuse = SeccompVerdict.errno | UInt32(errno)
        // Both halves of an int argument are compared: the kernel reads only the low 32 bits, so a
        // value with junk above them must not slip past.
        func low32(_ index: UInt32, _ value: UInt64) -> SeccompPolicy.Argument {
            SeccompPolicy.Argument(index: index, value: 0xffff_ffff, valueTwo: value, op: "SCMP_CMP_MASKED_EQ")
        }
        for arch in architectures {
            let calls = socketCalls(arch)
            guard !calls.socket.isEmpty || calls.socketcall != nil else { continue }
            let nextArch = filter.newLabel()
            filter.emit(.load(4))
            filter.branchFar(equals: calls.auditArch, otherwise: nextArch)
            for number in calls.socket {
                let nextNumber = filter.newLabel()
                filter.emit(.load(0))
                filter.branchFar(equals: number, otherwise: nextNumber)
                for proto in netlinkProtocols {
                    let nextProtocol = filter.newLabel()
                    try filter.emitComparison(low32(0, netlinkFamily), fail: nextProtocol)
                    try filter.emitComparison(low32(2, proto), fail: nextProtocol)
                    filter.emit(.ret(refuse))
                    filter.emit(.mark(nextProtocol))
                }
                filter.emit(.jump(toPolicy))
                filter.emit(.mark(nextNumber))
            }
            if let socketcall = calls.socketcall {
                filter.emit(.load(0))
                filter.branchFar(equals: socketcall, otherwise: nextArch)
                try filter.emitComparison(low32(0, socketcallSocket), fail: toPolicy)
                filter.emit(.ret(refuse))
            }
            filter.emit(.mark(nextArch))
        }
        filter.emit(.mark(toPolicy))
        let prefix = try filter.assemble()
        guard (prefix.count + policy.count) / 8 <= 4096 else {
            throw OffswitchError(.invalidProfile,
                "the host's refusals and the seccomp policy compile to \((prefix.count + policy.count) / 8) instructions (the kernel takes at most 4096)")
        }
        return prefix + policy
    }

    /// The value the kernel puts in `seccomp_data.arch` for this libseccomp architecture, and its
    /// socket-creating syscall numbers. libseccomp 2.5 names i386's `socket` by its socketcall
    /// multiplexer (a pseudo number), and x32 calls arrive as x86-64 with bit 30 set, so those
    /// two are spelt out.
    static func socketCalls(_ arch: UInt32) -> (auditArch: UInt32, socket: [UInt32], socketcall: UInt32?) {
        if arch == SeccompCompiler.archToken("SCMP_ARCH_X86") { return (arch, [359], 102) }
        if arch == SeccompCompiler.archToken("SCMP_ARCH_X32") { return (auditArchX86_64, [0x4000_0000 | 41], nil) }
        let number = seccomp_syscall_resolve_name_arch(arch, "socket")
        return (arch, number >= 0 ? [UInt32(number)] : [], nil)
    }
}
