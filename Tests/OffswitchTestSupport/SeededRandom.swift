/// What the test targets share for fuzzing: a seeded generator, so a failure names the seed that
/// reproduces it, and random edits of a valid text.

/// SplitMix64: small, fast, and the same sequence for the same seed on every run.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One to six random edits of `text`: byte flips, deletions, duplications, truncation, and
/// `tokens` (what the reader under test cares about) inserted anywhere.
public func mutate(_ text: [UInt8], tokens: [[UInt8]], _ random: inout SplitMix64) -> [UInt8] {
    var bytes = text
    for _ in 0..<Int.random(in: 1...6, using: &random) {
        guard !bytes.isEmpty else { bytes = tokens.randomElement(using: &random)!; continue }
        let at = Int.random(in: 0..<bytes.count, using: &random)
        switch Int.random(in: 0..<5, using: &random) {
        case 0: bytes[at] = UInt8.random(in: 0...255, using: &random)
        case 1: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...40, using: &random)))
        case 2: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + 60)], at: at)
        case 3: bytes.insert(contentsOf: tokens.randomElement(using: &random)!, at: at)
        default: bytes = Array(bytes[..<at])
        }
    }
    return bytes
}
