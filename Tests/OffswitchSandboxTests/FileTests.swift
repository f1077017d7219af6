import Foundation
import Glibc
import OffswitchCore
import OffswitchSandbox
import OffswitchTestSupport
import Testing

@Suite("File API", needsRoot)
struct FileTests {
    @Test("Round trip, parents created, bytes exact, owned by the writer")
    func roundTrip() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let bytes: [UInt8] = Array("line\r\nbinary:\u{0}\u{1}\u{ff}".utf8) + (0...255).map { UInt8($0) }
            try sandbox.writeFile("/home/user/a/b/c.bin", bytes)
            #expect(try sandbox.readFile("/home/user/a/b/c.bin") == bytes)
            #expect(try sandbox.readFile("a/b/c.bin") == bytes, "relative paths start at the user's home")
            let owner = try sandbox.exec(ExecRequest(argv: ["stat", "-c", "%U %a", "/home/user/a/b/c.bin", "/home/user/a"]))
            #expect(owner.out == "user 644\nuser 755\n")
            let large = [UInt8](repeating: 0x5a, count: 8 << 20)
            try sandbox.writeFile("/tmp/large", large, user: .root, mode: 0o600)
            #expect(try sandbox.readFile("/tmp/large", user: .root) == large)
        }
    }

    @Test("The host's window into a root: a symlink planted inside never leads the host out of it")
    func hostWindow() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let marker = "offswitch-window-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            // Inside, /run/w points at /tmp: resolved by the host outside the root, that is the host's /tmp.
            #expect(try sandbox.bash("ln -s /tmp /run/w && ln -s /etc/passwd /tmp/pw", user: .root).exitCode == 0)
            let root = try sandbox.root()
            try root.makeDirectory("/run/w/\(marker)")
            let listener = try root.listen(at: "/run/w/\(marker)/s.sock", mode: 0o666)
            defer { close(listener) }
            #expect(access("/tmp/" + marker, F_OK) != 0, "the host's /tmp was written")
            #expect(try sandbox.bash("stat -c %F /tmp/\(marker)/s.sock").out == "socket\n")
            // The last component is not followed unless asked; the file it names is the sandbox's.
            #expect(root.openIfPresent("/tmp/pw", flags: O_RDONLY) == nil)
            let passwd = try #require(root.openIfPresent("/tmp/pw", flags: O_RDONLY, followLast: true))
            defer { close(passwd) }
            var info = stat(), host = stat()
            #expect(fstat(passwd, &info) == 0 && stat("/etc/passwd", &host) == 0)
            #expect(info.st_ino != host.st_ino || info.st_dev != host.st_dev, "the host's /etc/passwd was opened")
            #expect(root.upperDirectory == sandbox.upperDirectory)
        }
    }

    @Test("Typed errors naming the path: missing, directory, permission, not regular")
    func errors() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            func code(_ body: () throws -> Void) -> (OffswitchError.Code?, String) {
                do { try body(); return (nil, "") } catch let error as OffswitchError { return (error.code, error.description) } catch { return (nil, "\(error)") }
            }
            let missing = code { _ = try sandbox.readFile("/home/user/nope") }
            #expect(missing.0 == .notFound && missing.1.contains("/home/user/nope"))
            #expect(code { _ = try sandbox.readFile("/etc") }.0 == .isDirectory)
            #expect(code { try sandbox.writeFile("/home/user", [1]) }.0 == .isDirectory)
            let denied = code { try sandbox.writeFile("/etc/passwd", [1]) }
            #expect(denied.0 == .permissionDenied && denied.1.contains("/etc/passwd"))
            #expect(code { _ = try sandbox.readFile("/root/x") }.0 == .permissionDenied)
            #expect(code { _ = try sandbox.readFile("/dev/zero") }.0 == .notRegularFile)
            _ = try sandbox.bash("mkfifo /home/user/fifo")
            #expect(code { _ = try sandbox.readFile("/home/user/fifo") }.0 == .notRegularFile)
            #expect(code { _ = try sandbox.readFile("") }.0 == .invalidArgument)
            #expect(code { _ = try sandbox.readFile("/etc/host\u{0}name") }.0 == .invalidArgument)
        }
    }

    @Test("Files over the file API's 64 MiB are refused before they are read or written: a sparse 1P file, a 64 MiB + 1 write")
    func sizeLimit() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            #expect(try sandbox.bash("truncate -s 1P /home/user/huge && truncate -s 64M /home/user/limit").exitCode == 0)
            do {
                _ = try sandbox.readFile("/home/user/huge")
                Issue.record("a 1 PiB file was read")
            } catch let error as OffswitchError {
                #expect(error.code == .fileTooLarge && error.description.contains("/home/user/huge") && error.description.contains("64 MiB"), "\(error)")
            }
            #expect(try sandbox.readFile("/home/user/limit").count == Sandbox.fileLimit, "at the limit is fine")
            #expect(throws: OffswitchError(.fileTooLarge, "read(/home/user/limit): 67108864 bytes or more, over the file API's limit of 1 MiB (inside the sandbox, exec has none)")) {
                _ = try sandbox.readFile("/home/user/limit", limit: 1 << 20)
            }
            do {
                try sandbox.writeFile("/home/user/over", [UInt8](repeating: 1, count: Sandbox.fileLimit + 1))
                Issue.record("a file over the limit was written")
            } catch let error as OffswitchError {
                #expect(error.code == .fileTooLarge, "\(error)")
            }
            #expect(try sandbox.bash("test ! -e /home/user/over").exitCode == 0, "refused before the file was made")
        }
    }

    @Test("Paths and symlinks cannot lead outside the sandbox root")
    func confinement() throws {
        try withSandbox { (sandbox: Sandbox) throws in
            let hostname = try sandbox.readFile("../../../../etc/hostname")
            #expect(String(decoding: hostname, as: UTF8.self) == sandbox.hostname + "\n")
            _ = try sandbox.bash("ln -s / /home/user/rootlink; ln -s /proc/1/root /home/user/magic; ln -s ../../../../../etc/hostname /home/user/up")
            #expect(String(decoding: try sandbox.readFile("/home/user/rootlink/etc/hostname"), as: UTF8.self) == sandbox.hostname + "\n")
            #expect(String(decoding: try sandbox.readFile("/home/user/up"), as: UTF8.self) == sandbox.hostname + "\n")
            #expect(throws: OffswitchError.self) { _ = try sandbox.readFile("/home/user/magic/etc/hostname", user: .root) }
            // Writing through an absolute symlink lands inside the sandbox, never on the host.
            let marker = "offswitch-file-probe-\(getpid())"
            _ = try sandbox.bash("ln -s /tmp/\(marker) /home/user/out")
            try sandbox.writeFile("/home/user/out", Array("inside".utf8))
            #expect(access("/tmp/\(marker)", F_OK) != 0)
            #expect(try sandbox.bash("cat /tmp/\(marker)").out == "inside")
        }
    }
}
