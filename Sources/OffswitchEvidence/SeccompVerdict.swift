/// Runs a classic-BPF seccomp program in user space over one call's `seccomp_data`, exactly as
/// the kernel would. The recorder uses it to answer a notified call with what the profile's own
/// policy decides (CONTINUE when it allows, its errno when it denies), so recording never changes
/// a decision.
public struct SeccompVerdict: Sendable, Hashable {
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
        var data = [UInt32?](repeating: 0, count: 16)
        data[0] = UInt32(bitPattern: nr)
        data[1] = arch
        data[2] = UInt32(truncatingIfNeeded: instructionPointer)
        data[3] = UInt32(truncatingIfNeeded: instructionPointer >> 32)
        for (index, value) in args.prefix(6).enumerated() {
            data[4 + index * 2] = UInt32(truncatingIfNeeded: value)
            data[5 + index * 2] = UInt32(truncatingIfNeeded: value >> 32)
        }
        // Every input known: one path, one outcome.
        let outcome = run(program, data, pathLimit: 1)?.first ?? nil
        return SeccompVerdict(returnValue: outcome ?? killProcess)
    }

    /// Every verdict `program` can reach for syscall `nr` of `arch`, whatever the arguments and the
    /// instruction pointer: both ways of each test that depends on them are followed. nil when a
    /// path returns a value that depends on them, or past `pathLimit` paths. The kernel recorder
    /// takes over a call only when this is `[allow]`: a call the policy may deny never reaches the
    /// syscall-entry tracepoint, so it stays with user notification.
    public static func outcomes(_ program: [UInt8], nr: Int32, arch: UInt32, pathLimit: Int = 4096) -> Set<SeccompVerdict>? {
        var data = [UInt32?](repeating: nil, count: 16)
        data[0] = UInt32(bitPattern: nr)
        data[1] = arch
        guard let values = run(program, data, pathLimit: pathLimit) else { return nil }
        var verdicts = Set<SeccompVerdict>()
        for value in values {
            guard let value else { return nil }
            verdicts.insert(SeccompVerdict(returnValue: value))
        }
        return verdicts
    }

    /// The interpreter of both: `nil` is a value not known. A test of an unknown value forks the
    /// run; the result is each path's return value (nil: `ret a` of an unknown), or nil past
    /// `pathLimit` paths.
    private static func run(_ program: [UInt8], _ data: [UInt32?], pathLimit: Int) -> [UInt32?]? {
        struct Machine {
            var pc = 0
            var a: UInt32? = 0, x: UInt32? = 0
            var memory = [UInt32?](repeating: 0, count: 16)
        }
        let count = program.count / 8
        func instruction(_ pc: Int) -> (code: UInt16, jt: UInt8, jf: UInt8, k: UInt32) {
            let base = pc * 8
            let code = UInt16(program[base]) | UInt16(program[base + 1]) << 8
            let k = UInt32(program[base + 4]) | UInt32(program[base + 5]) << 8 | UInt32(program[base + 6]) << 16 | UInt32(program[base + 7]) << 24
            return (code, program[base + 2], program[base + 3], k)
        }
        func apply<Result>(_ a: UInt32?, _ b: UInt32?, _ op: (UInt32, UInt32) -> Result) -> Result? {
            guard let a, let b else { return nil }
            return op(a, b)
        }
        var results: [UInt32?] = []
        var machines = [Machine()]
        var started = 1
        machineLoop: while var m = machines.popLast() {
            while m.pc < count {
                let (code, jt, jf, k) = instruction(m.pc)
                m.pc += 1
                /// A conditional jump: one way when the test is known, both (a new path) when not.
                func branch(_ taken: Bool?) -> Bool {
                    guard let taken else {
                        started += 1
                        var other = m
                        other.pc += Int(jf)
                        machines.append(other)
                        m.pc += Int(jt)
                        return started <= pathLimit
                    }
                    m.pc += taken ? Int(jt) : Int(jf)
                    return true
                }
                switch code {
                case 0x20:  // ld [k]
                    guard k % 4 == 0, k < 64 else { results.append(killProcess); continue machineLoop }
                    m.a = data[Int(k / 4)]
                case 0x80: m.a = 64  // ld len
                case 0x81: m.x = 64  // ldx len
                case 0x00: m.a = k  // ld #k
                case 0x01: m.x = k  // ldx #k
                case 0x60: guard k < 16 else { results.append(killProcess); continue machineLoop }; m.a = m.memory[Int(k)]
                case 0x61: guard k < 16 else { results.append(killProcess); continue machineLoop }; m.x = m.memory[Int(k)]
                case 0x02: guard k < 16 else { results.append(killProcess); continue machineLoop }; m.memory[Int(k)] = m.a
                case 0x03: guard k < 16 else { results.append(killProcess); continue machineLoop }; m.memory[Int(k)] = m.x
                case 0x04: m.a = apply(m.a, k, &+)
                case 0x0c: m.a = apply(m.a, m.x, &+)
                case 0x14: m.a = apply(m.a, k, &-)
                case 0x1c: m.a = apply(m.a, m.x, &-)
                case 0x24: m.a = apply(m.a, k, &*)
                case 0x2c: m.a = apply(m.a, m.x, &*)
                case 0x34, 0x3c, 0x94, 0x9c:  // div and mod, by k or x
                    let divisor = code & 0x08 != 0 ? m.x : k
                    guard divisor != 0 else { results.append(killProcess); continue machineLoop }
                    // An unknown divisor may be zero: that path kills.
                    if divisor == nil { results.append(killProcess) }
                    m.a = apply(m.a, divisor) { code >= 0x94 ? $0 % $1 : $0 / $1 }
                case 0x54: m.a = apply(m.a, k, &)
                case 0x5c: m.a = apply(m.a, m.x, &)
                case 0x44: m.a = apply(m.a, k, |)
                case 0x4c: m.a = apply(m.a, m.x, |)
                case 0xa4: m.a = apply(m.a, k, ^)
                case 0xac: m.a = apply(m.a, m.x, ^)
                case 0x64: m.a = apply(m.a, k) { $1 < 32 ? $0 << $1 : 0 }
                case 0x6c: m.a = apply(m.a, m.x) { $1 < 32 ? $0 << $1 : 0 }
                case 0x74: m.a = apply(m.a, k) { $1 < 32 ? $0 >> $1 : 0 }
                case 0x7c: m.a = apply(m.a, m.x) { $1 < 32 ? $0 >> $1 : 0 }
                case 0x84: m.a = m.a.map { 0 &- $0 }
                case 0x05: m.pc += Int(k)  // ja
                case 0x15: guard branch(apply(m.a, k, ==)) else { return nil }
                case 0x1d: guard branch(apply(m.a, m.x, ==)) else { return nil }
                case 0x25: guard branch(apply(m.a, k, >)) else { return nil }
                case 0x2d: guard branch(apply(m.a, m.x, >)) else { return nil }
                case 0x35: guard branch(apply(m.a, k, >=)) else { return nil }
                case 0x3d: guard branch(apply(m.a, m.x, >=)) else { return nil }
                case 0x45: guard branch(apply(m.a, k) { $0 & $1 != 0 }) else { return nil }
                case 0x4d: guard branch(apply(m.a, m.x) { $0 & $1 != 0 }) else { return nil }
                case 0x06: results.append(k); continue machineLoop  // ret #k
                case 0x16: results.append(m.a); continue machineLoop  // ret a
                case 0x07: m.x = m.a  // tax
                case 0x87: m.a = m.x  // txa
                default: results.append(killProcess); continue machineLoop
                }
            }
            results.append(killProcess)
        }
        return results
    }
}
