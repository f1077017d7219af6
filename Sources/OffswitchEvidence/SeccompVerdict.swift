/// Runs a classic-BPF seccomp program in user space over one call's `seccomp_data`, exactly as
/// the kernel would. The recorder uses it to answer a notified call with what the profile's own
/// policy decides (CONTINUE when it allows, its errno when it denies), so recording never changes
/// a decision.
public struct SeccompVerdict: Sendable, Equatable {
    /// SECCOMP_RET_* action bits (the top 16 bits of the return value).
    public var action: UInt32
    /// The low 16 bits: the errno of SECCOMP_RET_ERRNO.
    public var data: UInt16

    public static let killProcess: UInt32 = 0x8000_0000
    public static let killThread: UInt32 = 0x0000_0000
    public static let trap: UInt32 = 0x0003_0000
    public static let errno: UInt32 = 0x0005_0000
    public static let userNotification: UInt32 = 0x7fc0_0000
    public static let trace: UInt32 = 0x7ff0_0000
    public static let log: UInt32 = 0x7ffc_0000
    public static let allow: UInt32 = 0x7fff_0000

    public init(returnValue: UInt32) {
        action = returnValue & 0xffff_0000
        data = UInt16(returnValue & 0xffff)
    }

    /// Runs `program` (8 bytes per instruction, host byte order) over a call. An invalid program or
    /// one that runs off its end kills, as the kernel would refuse or kill.
    public static func evaluate(_ program: [UInt8], nr: Int32, arch: UInt32, instructionPointer: UInt64, args: [UInt64]) -> SeccompVerdict {
        // struct seccomp_data, as the kernel lays it out.
        var data = [UInt32](repeating: 0, count: 16)
        data[0] = UInt32(bitPattern: nr)
        data[1] = arch
        data[2] = UInt32(truncatingIfNeeded: instructionPointer)
        data[3] = UInt32(truncatingIfNeeded: instructionPointer >> 32)
        for (index, value) in args.prefix(6).enumerated() {
            data[4 + index * 2] = UInt32(truncatingIfNeeded: value)
            data[5 + index * 2] = UInt32(truncatingIfNeeded: value >> 32)
        }
        let count = program.count / 8
        func instruction(_ pc: Int) -> (code: UInt16, jt: UInt8, jf: UInt8, k: UInt32) {
            let base = pc * 8
            let code = UInt16(program[base]) | UInt16(program[base + 1]) << 8
            let k = UInt32(program[base + 4]) | UInt32(program[base + 5]) << 8 | UInt32(program[base + 6]) << 16 | UInt32(program[base + 7]) << 24
            return (code, program[base + 2], program[base + 3], k)
        }
        var a: UInt32 = 0, x: UInt32 = 0
        var memory = [UInt32](repeating: 0, count: 16)
        var pc = 0
        let kill = SeccompVerdict(returnValue: killProcess)
        while pc < count {
            let (code, jt, jf, k) = instruction(pc)
            pc += 1
            switch code {
            case 0x20:  // ld [k]
                guard k % 4 == 0, k < 64 else { return kill }
                a = data[Int(k / 4)]
            case 0x80: a = 64  // ld len
            case 0x81: x = 64  // ldx len
            case 0x00: a = k  // ld #k
            case 0x01: x = k  // ldx #k
            case 0x60: guard k < 16 else { return kill }; a = memory[Int(k)]
            case 0x61: guard k < 16 else { return kill }; x = memory[Int(k)]
            case 0x02: guard k < 16 else { return kill }; memory[Int(k)] = a
            case 0x03: guard k < 16 else { return kill }; memory[Int(k)] = x
            case 0x04: a = a &+ k
            case 0x0c: a = a &+ x
            case 0x14: a = a &- k
            case 0x1c: a = a &- x
            case 0x24: a = a &* k
            case 0x2c: a = a &* x
            case 0x34: guard k != 0 else { return kill }; a /= k
            case 0x3c: guard x != 0 else { return kill }; a /= x
            case 0x94: guard k != 0 else { return kill }; a %= k
            case 0x9c: guard x != 0 else { return kill }; a %= x
            case 0x54: a &= k
            case 0x5c: a &= x
            case 0x44: a |= k
            case 0x4c: a |= x
            case 0xa4: a ^= k
            case 0xac: a ^= x
            case 0x64: a = k < 32 ? a << k : 0
            case 0x6c: a = x < 32 ? a << x : 0
            case 0x74: a = k < 32 ? a >> k : 0
            case 0x7c: a = x < 32 ? a >> x : 0
            case 0x84: a = 0 &- a
            case 0x05: pc += Int(k)  // ja
            case 0x15: pc += a == k ? Int(jt) : Int(jf)
            case 0x1d: pc += a == x ? Int(jt) : Int(jf)
            case 0x25: pc += a > k ? Int(jt) : Int(jf)
            case 0x2d: pc += a > x ? Int(jt) : Int(jf)
            case 0x35: pc += a >= k ? Int(jt) : Int(jf)
            case 0x3d: pc += a >= x ? Int(jt) : Int(jf)
            case 0x45: pc += a & k != 0 ? Int(jt) : Int(jf)
            case 0x4d: pc += a & x != 0 ? Int(jt) : Int(jf)
            case 0x06: return SeccompVerdict(returnValue: k)  // ret #k
            case 0x16: return SeccompVerdict(returnValue: a)  // ret a
            case 0x07: x = a  // tax
            case 0x87: a = x  // txa
            default: return kill
            }
        }
        return kill
    }
}
