import COffswitch
import Glibc
import OffswitchCore

/// Where this host's cgroup hierarchies are mounted, read from /proc/self/mountinfo.
/// Pure v2 hosts have one cgroup2 mount with every controller; hybrid hosts (like the build
/// machine) keep memory, pids and cpu on v1 and offer only kill and freeze on v2.
struct CgroupMounts: Sendable {
    /// The cgroup2 mount point, if any.
    var unified: String?
    /// Controllers the cgroup2 root can delegate.
    var unifiedControllers: Set<String>
    /// v1 controller name -> its hierarchy's mount point.
    var legacy: [String: String]

    static let cgroup2Magic: Int = 0x6367_7270
    static let cgroup1Magic: Int = 0x0027_e0eb

    static func discover(mountinfo: String = "/proc/self/mountinfo") throws(OffswitchError) -> CgroupMounts {
        guard let text = readSmallFile(mountinfo) else {
            throw OffswitchError(.missingFeature, "cannot read \(mountinfo) to find the cgroup hierarchies", errno: errno)
        }
        return parse(mountinfo: text, isFilesystem: isFilesystem, controllers: { readSmallFile($0 + "/cgroup.controllers") ?? "" })
    }

    /// Parses mountinfo text. The checks are parameters so tests can describe other hosts.
    static func parse(mountinfo text: String, isFilesystem: (String, Int) -> Bool, controllers: (String) -> String) -> CgroupMounts {
        var mounts = CgroupMounts(unified: nil, unifiedControllers: [], legacy: [:])
        for line in text.split(separator: "\n") {
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = unescapeMountPath(String(left[4]))
            switch right[0] {
            case "cgroup2":
                guard mounts.unified == nil, isFilesystem(mountPoint, cgroup2Magic) else { continue }
                mounts.unified = mountPoint
                mounts.unifiedControllers = Set(controllers(mountPoint).split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
            case "cgroup":
                guard isFilesystem(mountPoint, cgroup1Magic) else { continue }
                for option in right[2].split(separator: ",") where ["memory", "pids", "cpu", "freezer"].contains(option) {
                    if mounts.legacy[String(option)] == nil { mounts.legacy[String(option)] = mountPoint }
                }
            default:
                continue
            }
        }
        return mounts
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescapeMountPath(_ raw: String) -> String {
        var bytes: [UInt8] = []
        let input = Array(raw.utf8)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "\\"), index + 3 < input.count,
               let value = UInt8(String(decoding: input[(index + 1)...(index + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checked before we write anything there: a cgroup file must be on a cgroup filesystem.
    static func isFilesystem(_ path: String, magic: Int) -> Bool {
        ofs_statfs_type(path) == Int64(magic)
    }
}

/// Writes a value to a cgroup (or proc) file in one write(2), naming the file on failure.
func writeControlFile(_ path: String, _ value: String) throws(OffswitchError) {
    let fd = try systemCall("open(\(path))") { open(path, O_WRONLY | O_CLOEXEC) }
    defer { close(fd) }
    let bytes = Array(value.utf8)
    try systemCall("write(\(path), \(value))") { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
}
