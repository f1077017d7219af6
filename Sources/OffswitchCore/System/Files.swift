#if canImport(Glibc)
import Glibc
#endif

/// The target of a symbolic link (or of a /proc magic link).
public func readLink(_ path: String) throws(OffswitchError) -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try systemCall("readlink(\(path))") { readlink(path, &buffer, buffer.count - 1) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// st_mode of a path (lstat when `followLinks` is false). Here rather than at each caller: in
/// modules that also see NIO, `struct stat` resolves to CNIOLinux's copy and fails to compile.
public func fileMode(_ path: String, followLinks: Bool = true) throws(OffswitchError) -> UInt32 {
    var info = stat()
    let rc = followLinks ? stat(path, &info) : lstat(path, &info)
    if rc != 0 { throw OffswitchError.system(followLinks ? "stat(\(path))" : "lstat(\(path))", errno: errno) }
    return UInt32(info.st_mode)
}

/// A path's change time in nanoseconds (for /proc/PID: when that process started).
public func fileStamp(_ path: String) throws(OffswitchError) -> Int {
    var info = stat()
    if stat(path, &info) != 0 { throw OffswitchError.system("stat(\(path))", errno: errno) }
    return Int(info.st_ctim.tv_sec) * 1_000_000_000 + Int(info.st_ctim.tv_nsec)
}

/// A path's modification time in nanoseconds since the epoch (lstat: a link's own), nil when it
/// cannot be read.
public func fileModified(_ path: String) -> Int? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec)
}

/// The names in a directory, without `.` and `..`; empty when it cannot be opened.
public func listDirectory(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    return names(closing: dir)
}

/// The names in the directory open at `descriptor` (which stays open), without `.` and `..`;
/// empty when it cannot be read.
public func listDirectory(descriptor: Int32) -> [String] {
    let copy = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
    guard copy >= 0 else { return [] }
    guard let dir = fdopendir(copy) else {
        close(copy)
        return []
    }
    return names(closing: dir)
}

/// The entries of an open directory stream, which it closes.
private func names(closing dir: OpaquePointer) -> [String] {
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// A small file's bytes, read to its end (/proc, sysfs and cgroupfs files report size 0), at
/// most `limit` bytes; nil when it cannot be opened or read, with errno set.
public func readSmallBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while bytes.count < limit {
        let n = read(fd, &chunk, min(chunk.count, limit - bytes.count))
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
    }
    return bytes
}

/// A small file's text (invalid UTF-8 as U+FFFD); nil when it cannot be read, with errno set.
public func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    readSmallBytes(path, limit: limit).map { String(decoding: $0, as: UTF8.self) }
}

/// Writes all of `bytes` to `fd`, retrying on EINTR and short writes; false when the descriptor
/// stops taking bytes (a closed pipe or pty). For relays and terminals, where a dead reader is
/// not an error worth more than stopping.
@discardableResult
public func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) -> Bool {
    let data = Array(bytes)
    var offset = 0
    while offset < data.count {
        let n = data[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        offset += n
    }
    return true
}

/// Writes `bytes` to `path` (mode 0644), replacing what was there.
public func writeWholeFile(_ bytes: some Collection<UInt8>, to path: String) throws(OffswitchError) {
    let fd = try systemCall("open(\(path))") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) }
    defer { close(fd) }
    var rest = Array(bytes)[...]
    while !rest.isEmpty {
        let n = try systemCall("write(\(path))") { rest.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        rest = rest.dropFirst(n)
    }
}

/// rm -rf without following symlinks; errors are ignored (best-effort cleanup: callers that must
/// know check that the path is gone). Works on descriptors and raw names, so a name that is not
/// UTF-8, or a tree deeper than PATH_MAX, goes too (image layers hold whatever their tar named,
/// an agent's upper layer whatever it made). It holds one directory open at a time, whatever the
/// depth: a 100,000-deep tree needs no more descriptors, and no more stack, than a flat one.
package func removeTree(_ path: String) {
    let slash = path.lastIndex(of: "/") ?? path.startIndex
    let parent = slash == path.startIndex ? (path.hasPrefix("/") ? "/" : ".") : String(path[..<slash])
    let name = path.hasPrefix("/") || path.contains("/") ? String(path[path.index(after: slash)...]) : path
    let directory = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard directory >= 0 else { return }
    defer { close(directory) }
    removeEntry(directory, Array(name.utf8CString))
}

/// One directory on the way down: its name in its parent, its identity (to check that `..` leads
/// back to the parent it came from), and the subdirectories still to remove.
private struct Level {
    var name: [CChar]
    var identity: FileIdentity
    /// nil until the directory is read (again); then its subdirectories, taken one at a time.
    var pending: [[CChar]]?
    var passes = 0
    /// What the last reading found: when it found nothing, the directory is empty.
    var found = 0
}

private struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64

    init?(_ fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}

/// Removes `name` in the directory `parent`: unlinked, or emptied and removed if a directory.
/// Depth first, iteratively: going down closes the parent's descriptor, coming back opens `..`
/// and checks it is the directory it left (a tree moved meanwhile is left alone, not chased).
private func removeEntry(_ parent: Int32, _ name: [CChar]) {
    if unlinkat(parent, name, 0) == 0 || errno == ENOENT { return }
    var current = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard current >= 0 else { return }
    guard let top = FileIdentity(current) else { close(current); return }
    var levels = [Level(name: name, identity: top)]
    while let index = levels.indices.last {
        if levels[index].pending == nil {
            levels[index].passes += 1
            (levels[index].pending, levels[index].found) = scan(current)
        }
        if let child = levels[index].pending?.popLast() {
            if unlinkat(current, child, AT_REMOVEDIR) == 0 { continue }
            let fd = openat(current, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            guard let identity = FileIdentity(fd) else { close(fd); continue }
            close(current)
            current = fd
            levels.append(Level(name: child, identity: identity))
            continue
        }
        // Read again for what removing while reading skipped, until a reading finds nothing
        // (three at most, so that entries that cannot be removed do not keep it going).
        if levels[index].found > 0 && levels[index].passes < 3 {
            levels[index].pending = nil
            continue
        }
        let finished = levels.removeLast()
        guard let above = levels.last else {
            close(current)
            unlinkat(parent, name, AT_REMOVEDIR)
            return
        }
        let up = openat(current, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        close(current)
        guard up >= 0 else { return }
        guard FileIdentity(up) == above.identity else { close(up); return }
        current = up
        unlinkat(current, finished.name, AT_REMOVEDIR)
    }
}

/// Unlinks every non-directory in `directory`; returns its subdirectories' names and how many
/// entries it found.
private func scan(_ directory: Int32) -> ([[CChar]], Int) {
    let fd = dup(directory)
    guard fd >= 0 else { return ([], 0) }
    guard let stream = fdopendir(fd) else { close(fd); return ([], 0) }
    defer { closedir(stream) }
    var subdirectories: [[CChar]] = []
    var found = 0
    while let entry = readdir(stream) {
        let isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
        withUnsafePointer(to: &entry.pointee.d_name) { tuple in
            tuple.withMemoryRebound(to: CChar.self, capacity: 256) { entryName in
                guard strcmp(entryName, ".") != 0 && strcmp(entryName, "..") != 0 else { return }
                found += 1
                if !isDirectory, unlinkat(directory, entryName, 0) == 0 || errno == ENOENT { return }
                if isDirectory || errno == EISDIR {
                    subdirectories.append(Array(UnsafeBufferPointer(start: entryName, count: strlen(entryName) + 1)))
                }
            }
        }
    }
    return (subdirectories, found)
}
