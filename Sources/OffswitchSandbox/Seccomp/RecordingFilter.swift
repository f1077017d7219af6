import CSeccomp
public import OffswitchCore

/// Puts the recorder in front of a compiled policy: a classic-BPF prefix that returns
/// SECCOMP_RET_USER_NOTIF for the profile's recorded syscalls (with their argument conditions),
/// and falls through to the policy program, unchanged, for everything else. The recorder then
/// answers each notified call with the policy's own verdict for it (`SeccompVerdict`), so the
/// kernel still enforces every decision the profile makes; the prefix only adds a witness.
///
/// Every architecture the policy accepts (x86-64, and i386 and x32 under Docker's archMap) gets
/// its own syscall numbers, so a 32-bit `int 0x80` execve is recorded like a 64-bit one.
public struct RecordingFilter {
    /// A jump target: a position in the program being assembled.
    struct Label: Hashable { let id: Int }

    enum Operation {
        case load(UInt32)  // ld [k]
        case and(UInt32)
        case jump(Label)  // ja
        /// A conditional jump: compare A with k (code: jeq 0x15, jgt 0x25, jge 0x35).
        case branch(code: UInt16, k: UInt32, ifTrue: Label, ifFalse: Label)
        case ret(UInt32)
        case mark(Label)
    }

    private var operations: [Operation] = []
    private var labels = 0

    static let userNotification: UInt32 = 0x7fc0_0000

    /// The combined program: prefix + `policy`. `architectures` are libseccomp arch tokens (equal
    /// to AUDIT_ARCH values); `record` is empty for no recording (then `policy` is returned as is).
    public static func combine(policy: [UInt8], record: [RecordedSyscall], architectures: [UInt32]) throws(OffswitchError) -> [UInt8] {
        guard !record.isEmpty else { return policy }
        var filter = RecordingFilter()
        let toPolicy = filter.newLabel()
        for arch in architectures {
            let nextArch = filter.newLabel()
            filter.emit(.load(4))
            filter.branchFar(equals: arch, otherwise: nextArch)
            filter.emit(.load(0))
            // Group the record entries by syscall number on this architecture.
            var groups: [(Int32, [RecordedSyscall])] = []
            for entry in record {
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

    private mutating func newLabel() -> Label {
        labels += 1
        return Label(id: labels)
    }

    private mutating func emit(_ operation: Operation) { operations.append(operation) }

    /// Falls through when A == k; otherwise jumps to `target`, however far (through a `ja`, since
    /// conditional jumps reach only 255 instructions).
    private mutating func branchFar(equals k: UInt32, otherwise target: Label) {
        let matched = newLabel(), trampoline = newLabel()
        emit(.branch(code: 0x15, k: k, ifTrue: matched, ifFalse: trampoline))
        emit(.mark(trampoline))
        emit(.jump(target))
        emit(.mark(matched))
    }

    /// One 64-bit argument comparison as 32-bit halves (little-endian seccomp_data); falls through
    /// when it holds, jumps to `fail` when not.
    private mutating func emitComparison(_ argument: SeccompPolicy.Argument, fail: Label) throws(OffswitchError) {
        let low = 16 + argument.index * 8, high = low + 4
        let value = argument.value
        let (vHigh, vLow) = (UInt32(truncatingIfNeeded: value >> 32), UInt32(truncatingIfNeeded: value))
        let pass = newLabel(), next = newLabel(), next2 = newLabel()
        switch argument.op {
        case "SCMP_CMP_EQ":
            emit(.load(high)); emit(.branch(code: 0x15, k: vHigh, ifTrue: next, ifFalse: fail)); emit(.mark(next))
            emit(.load(low)); emit(.branch(code: 0x15, k: vLow, ifTrue: pass, ifFalse: fail))
        case "SCMP_CMP_NE":
            emit(.load(high)); emit(.branch(code: 0x15, k: vHigh, ifTrue: next, ifFalse: pass)); emit(.mark(next))
            emit(.load(low)); emit(.branch(code: 0x15, k: vLow, ifTrue: fail, ifFalse: pass))
        case "SCMP_CMP_MASKED_EQ":
            let two = argument.valueTwo ?? 0
            emit(.load(high)); emit(.and(vHigh))
            emit(.branch(code: 0x15, k: UInt32(truncatingIfNeeded: two >> 32), ifTrue: next, ifFalse: fail)); emit(.mark(next))
            emit(.load(low)); emit(.and(vLow))
            emit(.branch(code: 0x15, k: UInt32(truncatingIfNeeded: two), ifTrue: pass, ifFalse: fail))
        case "SCMP_CMP_GT", "SCMP_CMP_GE":
            // high > v.high passes; high == v.high compares the low halves.
            emit(.load(high)); emit(.branch(code: 0x25, k: vHigh, ifTrue: pass, ifFalse: next)); emit(.mark(next))
            emit(.branch(code: 0x15, k: vHigh, ifTrue: next2, ifFalse: fail)); emit(.mark(next2))
            emit(.load(low))
            emit(.branch(code: argument.op == "SCMP_CMP_GT" ? 0x25 : 0x35, k: vLow, ifTrue: pass, ifFalse: fail))
        case "SCMP_CMP_LT", "SCMP_CMP_LE":
            // high < v.high passes; high == v.high compares the low halves.
            emit(.load(high)); emit(.branch(code: 0x35, k: vHigh, ifTrue: next, ifFalse: pass)); emit(.mark(next))
            emit(.branch(code: 0x15, k: vHigh, ifTrue: next2, ifFalse: fail)); emit(.mark(next2))
            emit(.load(low))
            emit(.branch(code: argument.op == "SCMP_CMP_LT" ? 0x35 : 0x25, k: vLow, ifTrue: fail, ifFalse: pass))
        default:
            throw OffswitchError(.invalidProfile, "record: unknown comparator \"\(argument.op)\"")
        }
        emit(.mark(pass))
    }

    /// Resolves labels into offsets and encodes 8-byte instructions.
    private func assemble() throws(OffswitchError) -> [UInt8] {
        var position: [Label: Int] = [:]
        var count = 0
        for operation in operations {
            if case .mark(let label) = operation { position[label] = count } else { count += 1 }
        }
        var bytes: [UInt8] = []
        var pc = 0
        func encode(_ code: UInt16, _ jt: UInt8, _ jf: UInt8, _ k: UInt32) {
            bytes += [UInt8(code & 0xff), UInt8(code >> 8), jt, jf,
                      UInt8(k & 0xff), UInt8((k >> 8) & 0xff), UInt8((k >> 16) & 0xff), UInt8(k >> 24)]
        }
        func offset(_ label: Label) throws(OffswitchError) -> Int {
            let distance = position[label]! - (pc + 1)
            guard distance >= 0 else { throw OffswitchError(.invalidProfile, "record filter: backward jump") }
            return distance
        }
        for operation in operations {
            switch operation {
            case .mark: continue
            case .load(let k): encode(0x20, 0, 0, k)
            case .and(let k): encode(0x54, 0, 0, k)
            case .ret(let k): encode(0x06, 0, 0, k)
            case .jump(let label): encode(0x05, 0, 0, UInt32(try offset(label)))
            case .branch(let code, let k, let ifTrue, let ifFalse):
                let t = try offset(ifTrue), f = try offset(ifFalse)
                guard t <= 255, f <= 255 else {
                    throw OffswitchError(.invalidProfile, "record filter: a jump of more than 255 instructions (too many conditions on one syscall)")
                }
                encode(code, UInt8(t), UInt8(f), k)
            }
            pc += 1
        }
        return bytes
    }
}
