import COffswitch
import Glibc
import OffswitchCore

/// The layer directory while a layer is written into it. Every path is resolved from an O_PATH
/// descriptor of the directory with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS), and every last component is acted on through its parent's descriptor
/// without following it (O_EXCL, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, linkat without
/// AT_SYMLINK_FOLLOW). So no symlink an archive plants, pointing anywhere, is ever followed, and
/// nothing is written outside the directory.
final class LayerTree {
    private let directory: String
    private let label: String
    /// O_PATH descriptor of the layer directory.
    private let root: Int32
    /// The last parent directory opened: entries of one directory come together in an archive.
    private var cachedParent: (path: EntryPath, fd: Int32)?
    /// Directory times, set at the end: every entry written into a directory changes its mtime.
    private var directoryTimes: [EntryPath: timespec] = [:]
    /// The bytes of the paths `directoryTimes` holds: past `retainedLimit` a directory's time is
    /// set at once (a later entry in it may then move it), so memory does not grow with the
    /// archive (2,000,000 directories of 4 KiB paths would be 8 GiB).
    private var retainedPathBytes = 0
    static let retainedLimit = 64 << 20

    private static let directoryFlags = Int32(OFS_O_PATH) | O_DIRECTORY | O_NOFOLLOW

    init(directory: String, label: String) throws(OffswitchError) {
        self.directory = directory
        self.label = label
        root = try systemCall("\(label): open(\(directory))") { open(directory, Int32(OFS_O_PATH) | O_DIRECTORY | O_CLOEXEC) }
        do throws(OffswitchError) {
            let listing = try systemCall("\(label): open(\(directory))") { ofs_open_beneath(root, ".", O_RDONLY | O_DIRECTORY, 0) }
            guard let dir = fdopendir(listing) else {
                close(listing)
                throw OffswitchError.system("\(label): fdopendir(\(directory))", errno: errno)
            }
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] {
                    throw OffswitchError(.invalidArgument, "\(label): unpack into \(directory): the directory is not empty")
                }
            }
        } catch {
            close(root)
            throw error
        }
    }

    deinit {
        if let cachedParent { close(cachedParent.fd) }
        close(root)
    }

    // MARK: Errors

    private func refusal(_ entry: String, _ why: String) -> OffswitchError {
        OffswitchError(.invalidArgument, "\(label): entry \"\(entry)\": \(why)")
    }

    /// The stage of a system call made for `entry`: `<label>: entry "<name>": <call> in <directory>`.
    private func stage(_ entry: String, _ call: String) -> String {
        "\(label): entry \"\(entry)\": \(call) in \(directory)"
    }

    // MARK: Directories on the way

    /// The directory holding `path`'s last component, missing ones created (0755, owned by the
    /// caller, root, as Docker makes them). The descriptor stays the tree's.
    private func parentDirectory(of path: EntryPath, entry: String) throws(OffswitchError) -> Int32 {
        let parent = path.parent
        if parent.isRoot { return root }
        if let cachedParent, cachedParent.path == parent { return cachedParent.fd }
        let fd = try openDirectory(parent, entry: entry, create: true, role: "its parent")
        if let cachedParent { close(cachedParent.fd) }
        cachedParent = (parent, fd)
        return fd
    }

    /// An O_PATH descriptor of the directory `path` (the caller closes it; the root is dup'ed).
    /// Walks one component at a time when the whole path does not open, to create what is missing
    /// and to name what is in the way: a symlink, or something else that is not a directory.
    private func openDirectory(_ path: EntryPath, entry: String, create: Bool, role: String) throws(OffswitchError) -> Int32 {
        let whole = ofs_open_beneath(root, path.relative.cString, Self.directoryFlags, 0)
        if whole >= 0 { return whole }
        var current = try systemCall(stage(entry, "dup(layer directory)")) { dup(root) }
        var walked = EntryPath.layerRoot
        for component in path.components {
            walked = walked.appending(component)
            var fd = ofs_open_beneath(current, component.cString, Self.directoryFlags, 0)
            if fd < 0 && errno == ENOENT && create {
                if mkdirat(current, component.cString, 0o755) != 0 && errno != EEXIST {
                    let err = errno
                    close(current)
                    throw OffswitchError.system(stage(entry, "mkdirat(\(EntryPath.display(walked.relative)))"), errno: err)
                }
                // mkdirat's mode passes through the umask; the directory is the one just made.
                _ = fchmodat(current, component.cString, 0o755, 0)
                fd = ofs_open_beneath(current, component.cString, Self.directoryFlags, 0)
            }
            if fd < 0 {
                let err = errno
                defer { close(current) }
                let shown = EntryPath.display(walked.relative)
                var info = stat()
                let found = fstatat(current, component.cString, &info, AT_SYMLINK_NOFOLLOW) == 0
                if found && info.st_mode & S_IFMT == S_IFLNK {
                    throw refusal(entry, "\(role) \"\(shown)\" is a symbolic link, and nothing in a layer is followed")
                }
                if found && info.st_mode & S_IFMT != S_IFDIR { throw refusal(entry, "\(role) \"\(shown)\" is not a directory") }
                if err == ENOENT { throw refusal(entry, "\(role) \"\(shown)\" does not exist in this layer") }
                throw OffswitchError.system(stage(entry, "openat2(\(shown), RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)"), errno: err)
            }
            close(current)
            current = fd
        }
        return current
    }

    /// What is at `name` in `parent` now (never following it); nil when nothing is.
    private func existing(_ parent: Int32, _ name: [UInt8], entry: String) throws(OffswitchError) -> stat? {
        var info = stat()
        if fstatat(parent, name.cString, &info, AT_SYMLINK_NOFOLLOW) == 0 { return info }
        if errno == ENOENT { return nil }
        throw OffswitchError.system(stage(entry, "fstatat(\(EntryPath.display(name)))"), errno: errno)
    }

    /// Removes what is at `path` so that a new entry can take its place: a later entry replaces an
    /// earlier one, as in any tar. A directory goes only when it is empty.
    private func remove(_ path: EntryPath, in parent: Int32, _ info: stat, entry: String) throws(OffswitchError) {
        if info.st_mode & S_IFMT == S_IFDIR {
            if unlinkat(parent, path.name.cString, AT_REMOVEDIR) != 0 {
                if errno == ENOTEMPTY || errno == EEXIST { throw refusal(entry, "it would replace a directory that is not empty") }
                throw OffswitchError.system(stage(entry, "unlinkat(AT_REMOVEDIR)"), errno: errno)
            }
            directoryTimes[path] = nil
            if let cachedParent, cachedParent.path.isWithin(path) {
                close(cachedParent.fd)
                self.cachedParent = nil
            }
        } else {
            try systemCall(stage(entry, "unlinkat")) { unlinkat(parent, path.name.cString, 0) }
        }
    }

    // MARK: Entries

    /// A new regular file at `path` (what was there removed), open for writing; the caller writes
    /// the data, then calls `finishFile`.
    func createFile(_ path: EntryPath, entry: String) throws(OffswitchError) -> Int32 {
        let parent = try parentDirectory(of: path, entry: entry)
        if let info = try existing(parent, path.name, entry: entry) { try remove(path, in: parent, info, entry: entry) }
        return try systemCall(stage(entry, "openat(O_CREAT | O_EXCL)")) {
            openat(parent, path.name.cString, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        }
    }

    func write(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, entry: String) throws(OffswitchError) {
        var offset = 0
        while offset < chunk.count {
            offset += try systemCall(stage(entry, "write")) { Glibc.write(fd, chunk.baseAddress! + offset, chunk.count - offset) }
        }
    }

    /// Owner, then mode (chown clears setuid and setgid), then xattrs (chown also clears file
    /// capabilities), then times: the order in which none undoes another.
    func finishFile(_ fd: Int32, _ header: TarEntry, xattrs: [(name: [UInt8], value: [UInt8])], entry: String) throws(OffswitchError) {
        try systemCall(stage(entry, "fchown(\(header.uid), \(header.gid))")) { fchown(fd, header.uid, header.gid) }
        try systemCall(stage(entry, "fchmod(0\(String(header.mode, radix: 8)))")) { fchmod(fd, mode_t(header.mode)) }
        try setXattrs(fd, xattrs, entry: entry)
        var times = [header.modified, header.modified]
        try systemCall(stage(entry, "futimens")) { futimens(fd, &times) }
    }

    private func setXattrs(_ fd: Int32, _ xattrs: [(name: [UInt8], value: [UInt8])], entry: String) throws(OffswitchError) {
        for xattr in xattrs {
            // One byte more than the value, so that even an empty value has an address.
            let value = xattr.value + [0]
            try systemCall(stage(entry, "fsetxattr(\(EntryPath.display(xattr.name)))")) {
                ofs_fsetxattr(fd, xattr.name.cString, value, xattr.value.count)
            }
        }
    }

    /// A directory: made unless one is there (an entry over an existing directory only updates
    /// its owner, mode and xattrs); its times are set at the end.
    func makeDirectory(_ path: EntryPath, _ header: TarEntry, xattrs: [(name: [UInt8], value: [UInt8])], entry: String) throws(OffswitchError) {
        let fd: Int32
        if path.isRoot {
            fd = try systemCall(stage(entry, "open(.)")) { ofs_open_beneath(root, ".", O_RDONLY | O_DIRECTORY, 0) }
        } else {
            let parent = try parentDirectory(of: path, entry: entry)
            let info = try existing(parent, path.name, entry: entry)
            if let info, info.st_mode & S_IFMT != S_IFDIR { try remove(path, in: parent, info, entry: entry) }
            if info == nil || info!.st_mode & S_IFMT != S_IFDIR {
                try systemCall(stage(entry, "mkdirat")) { mkdirat(parent, path.name.cString, 0o700) }
            }
            fd = try systemCall(stage(entry, "openat2(O_DIRECTORY)")) {
                ofs_open_beneath(parent, path.name.cString, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            }
        }
        defer { close(fd) }
        try systemCall(stage(entry, "fchown(\(header.uid), \(header.gid))")) { fchown(fd, header.uid, header.gid) }
        try systemCall(stage(entry, "fchmod(0\(String(header.mode, radix: 8)))")) { fchmod(fd, mode_t(header.mode)) }
        try setXattrs(fd, xattrs, entry: entry)
        if directoryTimes[path] == nil && retainedPathBytes + path.relative.count > Self.retainedLimit {
            var times = [header.modified, header.modified]
            try systemCall(stage(entry, "futimens")) { futimens(fd, &times) }
            return
        }
        if directoryTimes[path] == nil { retainedPathBytes += path.relative.count }
        directoryTimes[path] = header.modified
    }

    /// A symlink, its target kept as the archive wrote it: never resolved, here or later.
    func makeSymlink(_ path: EntryPath, target: [UInt8], _ header: TarEntry, entry: String) throws(OffswitchError) {
        let parent = try parentDirectory(of: path, entry: entry)
        if let info = try existing(parent, path.name, entry: entry) { try remove(path, in: parent, info, entry: entry) }
        try systemCall(stage(entry, "symlinkat")) { symlinkat(target.cString, parent, path.name.cString) }
        try setOwnerAndTimes(parent, path.name, header, entry: entry)
    }

    /// A FIFO (Docker makes them too: they hold no data and reach nothing).
    func makeFIFO(_ path: EntryPath, _ header: TarEntry, entry: String) throws(OffswitchError) {
        let parent = try parentDirectory(of: path, entry: entry)
        if let info = try existing(parent, path.name, entry: entry) { try remove(path, in: parent, info, entry: entry) }
        try systemCall(stage(entry, "mkfifoat")) { mkfifoat(parent, path.name.cString, 0o600) }
        try systemCall(stage(entry, "fchownat(\(header.uid), \(header.gid))")) {
            fchownat(parent, path.name.cString, header.uid, header.gid, AT_SYMLINK_NOFOLLOW)
        }
        // fchmodat follows a last symlink, but the name is the FIFO just made, and only this
        // unpacker writes the tree; a FIFO cannot be opened to fchmod without blocking.
        try systemCall(stage(entry, "fchmodat(0\(String(header.mode, radix: 8)))")) {
            fchmodat(parent, path.name.cString, mode_t(header.mode), 0)
        }
        var times = [header.modified, header.modified]
        try systemCall(stage(entry, "utimensat(AT_SYMLINK_NOFOLLOW)")) { utimensat(parent, path.name.cString, &times, AT_SYMLINK_NOFOLLOW) }
    }

    private func setOwnerAndTimes(_ parent: Int32, _ name: [UInt8], _ header: TarEntry, entry: String) throws(OffswitchError) {
        try systemCall(stage(entry, "fchownat(\(header.uid), \(header.gid), AT_SYMLINK_NOFOLLOW)")) {
            fchownat(parent, name.cString, header.uid, header.gid, AT_SYMLINK_NOFOLLOW)
        }
        var times = [header.modified, header.modified]
        try systemCall(stage(entry, "utimensat(AT_SYMLINK_NOFOLLOW)")) { utimensat(parent, name.cString, &times, AT_SYMLINK_NOFOLLOW) }
    }

    /// A hard link to `target`, which must already be in this layer and not be a directory or a
    /// whiteout; it is reached with the same no-symlink rules, and linkat never follows it.
    func makeHardLink(_ path: EntryPath, target: EntryPath, entry: String) throws(OffswitchError) {
        let shownTarget = EntryPath.display(target.relative)
        if target.isRoot { throw refusal(entry, "a hard link to the layer directory") }
        if target == path { throw refusal(entry, "a hard link to itself") }
        let targetParent = try openDirectory(target.parent, entry: entry, create: false, role: "its link target's parent")
        defer { close(targetParent) }
        guard let info = try existing(targetParent, target.name, entry: entry) else {
            throw refusal(entry, "its link target \"\(shownTarget)\" does not exist in this layer")
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: throw refusal(entry, "its link target \"\(shownTarget)\" is a directory")
        case S_IFCHR, S_IFBLK: throw refusal(entry, "its link target \"\(shownTarget)\" is a whiteout")
        default: break
        }
        let parent = try parentDirectory(of: path, entry: entry)
        if let present = try existing(parent, path.name, entry: entry) {
            if present.st_dev == info.st_dev && present.st_ino == info.st_ino { return }
            try remove(path, in: parent, present, entry: entry)
        }
        try systemCall(stage(entry, "linkat(\(shownTarget))")) { linkat(targetParent, target.name.cString, parent, path.name.cString, 0) }
    }

    /// An OCI whiteout (`.wh.NAME`) as overlayfs has it: a character device 0:0 named NAME. When
    /// this layer already has NAME, the layer's entry stays: a whiteout only hides lower layers.
    func makeWhiteout(_ hidden: EntryPath, _ header: TarEntry, entry: String) throws(OffswitchError) {
        let parent = try parentDirectory(of: hidden, entry: entry)
        if try existing(parent, hidden.name, entry: entry) != nil { return }
        try systemCall(stage(entry, "mknodat(\(EntryPath.display(hidden.relative)), S_IFCHR, 0:0)")) {
            mknodat(parent, hidden.name.cString, S_IFCHR, 0)
        }
        try setOwnerAndTimes(parent, hidden.name, header, entry: entry)
    }

    /// An OCI opaque marker (`DIR/.wh..wh..opq`): overlayfs's `trusted.overlay.opaque=y` on DIR,
    /// made when missing, so that nothing of DIR in lower layers shows through.
    func markOpaque(_ path: EntryPath, entry: String) throws(OffswitchError) {
        let fd: Int32
        if path.isRoot {
            fd = try systemCall(stage(entry, "open(.)")) { ofs_open_beneath(root, ".", O_RDONLY | O_DIRECTORY, 0) }
        } else {
            let parent = try parentDirectory(of: path, entry: entry)
            switch try existing(parent, path.name, entry: entry) {
            case nil:
                try systemCall(stage(entry, "mkdirat")) { mkdirat(parent, path.name.cString, 0o755) }
                _ = fchmodat(parent, path.name.cString, 0o755, 0)
            case let info? where info.st_mode & S_IFMT != S_IFDIR:
                throw refusal(entry, "an opaque marker in \"\(EntryPath.display(path.relative))\", which is not a directory")
            default:
                break
            }
            fd = try systemCall(stage(entry, "openat2(O_DIRECTORY)")) {
                ofs_open_beneath(parent, path.name.cString, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            }
        }
        defer { close(fd) }
        try systemCall(stage(entry, "fsetxattr(trusted.overlay.opaque)")) { ofs_fsetxattr(fd, "trusted.overlay.opaque", "y", 1) }
    }

    /// Sets every directory's times from its entry, now that nothing more is written into them.
    /// A directory that a later entry replaced is skipped.
    func applyDirectoryTimes() throws(OffswitchError) {
        for (path, time) in directoryTimes {
            let shown = EntryPath.display(path.relative)
            let fd = ofs_open_beneath(root, path.relative.cString, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0)
            if fd < 0 {
                if errno == ENOENT || errno == ENOTDIR || errno == ELOOP { continue }
                throw OffswitchError.system(stage(shown, "openat2(O_DIRECTORY)"), errno: errno)
            }
            defer { close(fd) }
            var times = [time, time]
            try systemCall(stage(shown, "futimens")) { futimens(fd, &times) }
        }
    }
}

extension EntryPath {
    /// The layer directory itself.
    static let layerRoot = try! EntryPath([UInt8(ascii: ".")])
}
