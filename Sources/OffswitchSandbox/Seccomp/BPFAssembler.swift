import OffswitchCore

/// A classic-BPF program assembled from labelled operations: jumps name their targets and are
/// resolved to offsets at the end, so the seccomp prefixes (the recorder's, the host's refusals)
/// are written as readable control flow over `seccomp_data`.
struct BPFAssembler {
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

    mutating func newLabel() -> Label {
        labels += 1
        return Label(id: labels)
    }

    mutating func emit(_ operation: Operation) { operations.append(operation) }

    /// Falls through when A == k; otherwise jumps to `target`, however far (through a `ja`, since
    /// conditional jumps reach only 255 instructions).
    mutating func branchFar(equals k: UInt32, otherwise target: Label) {
        let matched = newLabel(), trampoline = newLabel()
        emit(.branch(code: 0x15, k: k, ifTrue: matched, ifFalse: trampoline))
        emit(.mark(trampoline))
        emit(.jump(target))
        emit(.mark(matched))
    }

    /// One 64-bit argument comparison as 32-bit halves (little-endian seccomp_data); falls through
    /// when it holds, jumps to `fail` when not.
    mutating func emitComparison(_ argument: SeccompPolicy.Argument, fail: Label) throws(OffswitchError) {
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
    func assemble() throws(OffswitchError) -> [UInt8] {
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
