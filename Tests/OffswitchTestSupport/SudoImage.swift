import Foundation

/// A small image made from the host's own files for the sudo tests, as an OCI layout (tag `t`) in
/// a new directory under /tmp (the caller removes it): bash, dash as `sh`, the host's sudo (setuid
/// root) with its sudoers plugin, coreutils' `id`, `rm`, `ls`, `cat` and `true`, the libraries they
/// load, a PAM stack of `pam_permit` only, accounts `root` and `user` (uid 1000), and an
/// `/etc/sudoers` that includes `/etc/sudoers.d`, where `user` may run anything without a password,
/// as scripts/palisade-image.sh gives Palisade's image. Needs the host's sudo (scripts/deps.sh --test).
public func makeSudoImageLayout() throws -> (directory: String, layout: String) {
    let directory = "/tmp/offswitch-sudo-image-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-euo", "pipefail", "-c", """
        cd \(directory)
        mkdir -p r/usr/bin r/usr/lib r/usr/lib64 r/etc/sudoers.d r/etc/pam.d r/run r/tmp r/root r/home
        ln -s usr/bin r/bin && ln -s usr/bin r/sbin && ln -s usr/lib r/lib && ln -s usr/lib64 r/lib64
        for program in /usr/bin/bash /usr/bin/dash /usr/bin/sudo /usr/bin/id /usr/bin/rm /usr/bin/ls /usr/bin/cat /usr/bin/true \\
                       /usr/libexec/sudo/sudoers.so /usr/lib/x86_64-linux-gnu/security/pam_permit.so; do
          for file in $program $(ldd $program | grep -o '/[^ ]*'); do
            case $file in /lib/*|/lib64/*) target=/usr$file ;; *) target=$file ;; esac
            mkdir -p r$(dirname $target) && cp -L $file r$target
          done
        done
        ln -s dash r/usr/bin/sh
        chmod 4755 r/usr/bin/sudo
        printf 'root:x:0:0:root:/root:/bin/bash\\nuser:x:1000:1000::/home/user:/bin/bash\\n' > r/etc/passwd
        printf 'root:x:0:\\nuser:x:1000:\\n' > r/etc/group
        printf 'root ALL=(ALL:ALL) ALL\\n@includedir /etc/sudoers.d\\n' > r/etc/sudoers
        printf 'user ALL=(ALL) NOPASSWD:ALL\\n' > r/etc/sudoers.d/user
        chmod 0440 r/etc/sudoers r/etc/sudoers.d/user
        for service in sudo other; do
          printf 'auth required pam_permit.so\\naccount required pam_permit.so\\nsession required pam_permit.so\\n' > r/etc/pam.d/$service
        done
        tar --numeric-owner --owner=0 --group=0 -C r -cf layer.tar .
        umoci init --layout layout && umoci new --image layout:t && umoci raw add-layer --image layout:t layer.tar
        umoci config --image layout:t --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        """]
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let said = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        try? FileManager.default.removeItem(atPath: directory)
        throw SudoImageError(message: "building the sudo image: " + String(decoding: said, as: UTF8.self))
    }
    return (directory, directory + "/layout")
}

public struct SudoImageError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
