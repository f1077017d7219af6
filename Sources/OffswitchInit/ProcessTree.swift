import Glibc

/// Finds and kills a command's whole process tree: its process group, its session, and every
/// descendant still parented under it. A process that left both the session and the tree
/// (double fork plus setsid) escapes; destroying the sandbox still kills it.
enum ProcessTree {
    static func kill(root: pid_t) {
        // A few passes: a process may fork between our scan and our kill.
        for _ in 0..<3 {
            let table = scan()
            var victims: Set<pid_t> = [root]
            var grew = true
            while grew {
                grew = false
                for entry in table where !victims.contains(entry.pid) {
                    if victims.contains(entry.parent) || entry.session == root || entry.group == root {
                        victims.insert(entry.pid)
                        grew = true
                    }
                }
            }
            Glibc.kill(-root, SIGKILL)
            var any = false
            for pid in victims where pid != 1 {
                if Glibc.kill(pid, SIGKILL) == 0 { any = true }
            }
            if !any { return }
        }
    }

    struct Entry {
        var pid: pid_t
        var parent: pid_t
        var group: pid_t
        var session: pid_t
    }

    /// Every process in /proc with its parent, process group and session.
    static func scan() -> [Entry] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var entries: [Entry] = []
        while let item = readdir(dir) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), let entry = stat(pid) else { continue }
            entries.append(entry)
        }
        return entries
    }

    /// Fields 4, 5 and 6 of /proc/PID/stat, read after the last ')' since comm may hold anything.
    private static func stat(_ pid: pid_t) -> Entry? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0, let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = buffer[(close + 1)..<n].split(separator: UInt8(ascii: " "))
        guard fields.count > 4,
              let parent = pid_t(String(decoding: fields[1], as: UTF8.self)),
              let group = pid_t(String(decoding: fields[2], as: UTF8.self)),
              let session = pid_t(String(decoding: fields[3], as: UTF8.self)) else { return nil }
        return Entry(pid: pid, parent: parent, group: group, session: session)
    }
}
