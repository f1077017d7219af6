import Glibc
import OffswitchCore

/// A process's resource limits as the kernel states them (/proc/PID/limits): soft limit by the
/// kernel's name ("Max processes"), nil when unlimited. An agent that lowers a limit before it
/// starts the trigger (`ulimit -u 1`) leaves its mark here, not in any file.
public enum ProcessLimits {
    public static func read(hostPID: Int32) -> [String: UInt64?] {
        guard let bytes = readSmallBytes("/proc/\(hostPID)/limits") else { return [:] }
        var limits: [String: UInt64?] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").dropFirst() {
            // "Max processes             512                  512                  processes"
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let index = columns.firstIndex(where: { $0 == "unlimited" || UInt64($0) != nil }) else { continue }
            let name = columns[..<index].joined(separator: " ")
            limits[name] = columns[index] == "unlimited" ? .some(nil) : .some(UInt64(columns[index]))
        }
        return limits
    }

    /// Whether `soft` is tighter than `baseline` (nil is unlimited).
    public static func lower(_ soft: UInt64?, than baseline: UInt64?) -> Bool {
        switch (soft, baseline) {
        case (let soft?, let baseline?): soft < baseline
        case (_?, nil): true
        default: false
        }
    }
}

/// Fields of /proc/PID/status by name ("TracerPid", "Seccomp_filters", "NoNewPrivs"), as text.
public enum ProcessStatusFields {
    public static func read(hostPID: Int32) -> [String: String] {
        guard let bytes = readSmallBytes("/proc/\(hostPID)/status") else { return [:] }
        var fields: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimming(" \t")
        }
        return fields
    }
}

