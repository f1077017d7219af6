import COffswitch
import Glibc
import OffswitchCore

extension Sandbox {
    /// The mounts a read-only root covers (Docker's `read_only`, where /tmp is part of the root):
    /// `/`, `/usr` when it is an overlay of its own, and the sandbox's `/tmp`, except any a
    /// `tmpfs` mount was asked for in its place. /dev, /dev/shm and the tmpfs mounts keep theirs.
    var readOnlyMounts: [String] {
        let replaced = Set(spec.tmpfs.map(\.path))
        return (["/"] + diffLayers.map(\.mountPoint) + ["/tmp"]).reduce(into: [String]()) { paths, path in
            if !paths.contains(path) && !replaced.contains(path) { paths.append(path) }
        }
    }

    /// Makes `readOnlyMounts` read-only inside. PID 1 cannot: it gave up the host's powers over
    /// its mounts when it joined the sandbox's user namespace, so a short-lived host child joins
    /// the sandbox's mount namespace (through PID 1's pidfd) and sets the flag there. The mounts
    /// stay read-only for everyone inside, root included, and for the file helper; the host's
    /// own readers (the diff, the file watcher) read the upper directories, which stay as they are.
    func sealRoot() throws(OffswitchError) {
        try ensureRunning()
        let paths = readOnlyMounts
        var failed: Int32 = -1
        let rc = paths.withCStrings { pointers in ofs_mounts_make_readonly(pidfd, pointers, Int32(paths.count), &failed) }
        guard rc == 0 else {
            let error = errno
            let what = failed >= 0 && Int(failed) < paths.count ? "mount_setattr(\(paths[Int(failed)]), read-only)" : "setns(mount namespace)"
            throw OffswitchError(.setupFailed, "read_only: \(what) in sandbox \(id)", errno: error)
        }
    }
}
