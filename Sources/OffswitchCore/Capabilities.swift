/// A set of Linux capabilities as a bit mask (bit N is capability number N).
public struct CapabilitySet: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var mask: UInt64

    public init(mask: UInt64) { self.mask = mask }

    /// Names as in capabilities(7), upper case, with or without the `CAP_` prefix.
    public init(names: [String]) throws(OffswitchError) {
        var mask: UInt64 = 0
        for name in names {
            let key = name.uppercased().hasPrefix("CAP_") ? name.uppercased() : "CAP_" + name.uppercased()
            guard let number = Self.numbers[key] else {
                throw OffswitchError(.invalidArgument, "unknown capability \"\(name)\"")
            }
            mask |= 1 << UInt64(number)
        }
        self.mask = mask
    }

    public func contains(_ name: String) -> Bool {
        guard let number = Self.numbers[name.uppercased()] else { return false }
        return mask & (1 << UInt64(number)) != 0
    }

    public var names: [String] {
        Self.numbers.filter { mask & (1 << UInt64($0.value)) != 0 }.sorted { $0.value < $1.value }.map(\.key)
    }

    public var description: String { names.joined(separator: ",") }

    /// As /proc/PID/status prints it (`CapEff: 00000000a80425fb`).
    public var hex: String {
        let digits = String(mask, radix: 16)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }

    public static let none = CapabilitySet(mask: 0)

    /// Docker's default capability set (moby's `oci/caps/defaults.go`).
    public static let dockerDefault = try! CapabilitySet(names: [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ])

    /// capabilities(7) numbering, stable kernel ABI.
    public static let numbers: [String: Int] = [
        "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
        "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
        "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
        "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
        "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
        "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
        "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
        "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
        "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
    ]
}
