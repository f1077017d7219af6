import COffswitch
import Foundation
import Glibc
import OffswitchCore
import OffswitchImages
import Testing

/// Writes tar archives byte by byte, hostile ones included: a name with `..`, a wrong checksum,
/// a PAX record no real tool would write. Entries are owned by the caller by default, so that the
/// tests that need no root can chown to them.
struct TarBuilder {
    private(set) var bytes: [UInt8] = []
    static let mtime = 1_700_000_000
    static let owner = Int(geteuid())
    static let group = Int(getegid())

    mutating func header(
        _ name: String, type: Character, size: Int = 0, mode: Int = 0o644, uid: Int = owner, gid: Int = group,
        mtime: Int = mtime, link: String = "", prefix: String = "", checksumDelta: Int = 0
    ) {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: some Collection<UInt8>, _ offset: Int, _ width: Int) {
            for (index, byte) in text.prefix(width).enumerated() { block[offset + index] = byte }
        }
        func number(_ value: Int, _ offset: Int, _ width: Int) {
            let octal = String(value, radix: 8)
            if octal.count < width {
                put(Array((String(repeating: "0", count: width - 1 - octal.count) + octal).utf8), offset, width - 1)
            } else {
                // GNU base-256: the high bit set, the value big-endian in the rest.
                block[offset] = 0x80
                for index in 1..<width { block[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * (width - 1 - index))) }
            }
        }
        put(Array(name.utf8), 0, 100)
        number(mode, 100, 8)
        number(uid, 108, 8)
        number(gid, 116, 8)
        number(size, 124, 12)
        number(mtime, 136, 12)
        block[156] = type.asciiValue!
        put(Array(link.utf8), 157, 100)
        put(Array("ustar\0".utf8), 257, 6)
        put(Array("00".utf8), 263, 2)
        put(Array("nobody".utf8), 265, 32)
        put(Array(prefix.utf8), 345, 155)
        for index in 148..<156 { block[index] = UInt8(ascii: " ") }
        let sum = block.reduce(0) { $0 + Int($1) } + checksumDelta
        put(Array((String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8)).utf8) + [0], 148, 7)
        bytes += block
    }

    mutating func data(_ contents: [UInt8]) {
        bytes += contents
        bytes += [UInt8](repeating: 0, count: (512 - contents.count % 512) % 512)
    }

    mutating func file(_ name: String, _ contents: [UInt8], mode: Int = 0o644, uid: Int = owner, gid: Int = group, mtime: Int = mtime) {
        header(name, type: "0", size: contents.count, mode: mode, uid: uid, gid: gid, mtime: mtime)
        data(contents)
    }

    mutating func file(_ name: String, _ text: String, mode: Int = 0o644, uid: Int = owner, gid: Int = group, mtime: Int = mtime) {
        file(name, Array(text.utf8), mode: mode, uid: uid, gid: gid, mtime: mtime)
    }

    mutating func directory(_ name: String, mode: Int = 0o755, uid: Int = owner, gid: Int = group, mtime: Int = mtime) {
        header(name, type: "5", mode: mode, uid: uid, gid: gid, mtime: mtime)
    }

    mutating func symlink(_ name: String, to target: String, uid: Int = owner, gid: Int = group) {
        header(name, type: "2", mode: 0o777, uid: uid, gid: gid, link: target)
    }

    mutating func hardLink(_ name: String, to target: String) {
        header(name, type: "1", link: target)
    }

    /// A PAX `x` (or `g`) header with `records`, each written with its exact length.
    mutating func pax(_ records: [(String, [UInt8])], global: Bool = false) {
        var body: [UInt8] = []
        for (key, value) in records {
            let rest = 1 + key.utf8.count + 1 + value.count + 1
            var length = rest + 1
            while String(length).count + rest != length { length += 1 }
            body += Array("\(length) \(key)=".utf8) + value + [UInt8(ascii: "\n")]
        }
        header("PaxHeaders/entry", type: global ? "g" : "x", size: body.count)
        data(body)
    }

    /// A GNU long name (`L`) or long link (`K`) for the next entry.
    mutating func gnuLong(_ name: String, link: Bool = false) {
        let body = Array(name.utf8) + [0]
        header("././@LongLink", type: link ? "K" : "L", size: body.count)
        data(body)
    }

    mutating func end() { bytes += [UInt8](repeating: 0, count: 1024) }
}

/// A directory under /tmp, removed with all it holds when the test is done.
final class Scratch {
    let path: String

    init() throws {
        var template = Array("/tmp/offswitch-images-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw OffswitchError.system("mkdtemp", errno: errno) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A new empty directory inside.
    func directory(_ name: String) throws -> String {
        let made = path + "/" + name
        try FileManager.default.createDirectory(atPath: made, withIntermediateDirectories: true)
        return made
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        try writeWholeFile(bytes, to: file)
        return file
    }
}

/// Runs `command` with /bin/sh; its standard output, or a failure naming the command.
@discardableResult
func shell(_ command: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw OffswitchError(.execFailed, "\(command): exit \(process.terminationStatus)") }
    return String(decoding: data, as: UTF8.self)
}

/// "sha256:<hex>" of a file, by sha256sum(1): the digests checked against a tool that is not ours.
func sha256sum(_ file: String) throws -> String {
    "sha256:" + (try shell("sha256sum '\(file)'").split(separator: " ").first.map(String.init) ?? "")
}

func lstatInfo(_ path: String) -> stat? {
    var info = stat()
    return lstat(path, &info) == 0 ? info : nil
}

/// Every entry under `root`, one line each (path, type, mode, owner, mtime, content hash or link
/// target), sorted: two unpacked trees are the same when their snapshots are.
func snapshot(_ root: String) -> [String] {
    var lines: [String] = []
    func walk(_ relative: String) {
        let path = relative.isEmpty ? root : root + "/" + relative
        guard let info = lstatInfo(path) else { return }
        var line = "\(relative.isEmpty ? "." : relative) mode=\(String(info.st_mode, radix: 8)) owner=\(info.st_uid):\(info.st_gid)"
        line += " mtime=\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        switch info.st_mode & S_IFMT {
        case S_IFREG: line += " sha256=" + SHA256.hex(readSmallBytes(path, limit: 1 << 30) ?? [])
        case S_IFLNK: line += " -> " + ((try? readLink(path)) ?? "?")
        case S_IFCHR: line += " rdev=\(info.st_rdev)"
        default: break
        }
        lines.append(line)
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in listDirectory(path) { walk(relative.isEmpty ? name : relative + "/" + name) }
        }
    }
    walk("")
    return lines.sorted()
}

/// An xattr of `path` (not following it), nil when it has none of that name.
func xattr(_ path: String, _ name: String) -> [UInt8]? {
    var value = [UInt8](repeating: 0, count: 256)
    let n = ofs_lgetxattr(path, name, &value, value.count)
    return n < 0 ? nil : Array(value[0..<n])
}
