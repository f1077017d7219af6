import Foundation
import Glibc
import OffswitchTestSupport
import Testing

/// The file route moves files through the daemon a chunk at a time, up to 64 MiB: a sandbox's
/// sparse petabyte is refused, and a file at the limit never sits whole in the daemon's memory.
@Suite("offswitchd's file route is streamed and capped", needsRoot)
struct FileLimitTests {
    static let limit = 64 << 20

    /// The daemon's peak resident set (VmHWM), in bytes.
    static func peakMemory(_ daemon: DaemonHarness) throws -> Int {
        let pid = try #require(daemon.process?.processIdentifier)
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return (Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0) << 10
    }

    @Test("GET of a sparse 1P file is 413 file_too_large; a 64 MiB file goes both ways without the daemon holding it")
    func capped() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: ["limits": ["upper_mib": 256]]).json["id"] as? String)
        let made = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "truncate -s 1P huge && head -c 67108864 /dev/urandom > limit && sha256sum limit"]])
        #expect(made.json["exit_code"] as? Int == 0, "\(made.text)")
        let digest = String((made.json["stdout"] as? String ?? "").prefix(64))

        let huge = try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=huge")
        #expect(huge.status == 413 && huge.errorCode == "file_too_large", "\(huge.status) \(huge.text.prefix(300))")
        #expect(huge.text.contains("/home/user/huge") && huge.text.contains("64 MiB"))

        let before = try Self.peakMemory(daemon)
        let copy = daemon.directory + "/limit"
        let got = try daemon.curl("GET", "/v1/sandboxes/\(id)/files?path=limit", outputFile: copy)
        #expect(got.status == 200)
        #expect((try FileManager.default.attributesOfItem(atPath: copy)[.size] as? Int) == Self.limit)
        // Back in under another name, chunked (no Content-Length: the daemon counts as it writes).
        let put = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=back", bodyFile: copy, headers: ["Transfer-Encoding: chunked"])
        #expect(put.status == 204, "\(put.text)")
        let grown = try Self.peakMemory(daemon) - before
        // Held whole, the file would be in memory at least once each way (64 MiB, and more in copies).
        #expect(grown < 32 << 20, "the daemon's peak memory grew by \(grown >> 20) MiB moving a 64 MiB file")
        let check = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "sha256sum < back"]])
        #expect((check.json["stdout"] as? String ?? "").hasPrefix(digest), "\(check.text)")

        // One byte over: refused by its length before anything is written, or while counting a chunked body.
        let over = daemon.directory + "/over"
        #expect(FileManager.default.createFile(atPath: over, contents: nil) && truncate(over, off_t(Self.limit + 1)) == 0)
        let sized = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=over-sized", bodyFile: over)
        #expect(sized.status == 413 && sized.errorCode == "file_too_large", "\(sized.text)")
        let chunked = try daemon.curl("PUT", "/v1/sandboxes/\(id)/files?path=over-chunked", bodyFile: over, headers: ["Transfer-Encoding: chunked"])
        #expect(chunked.status == 413 && chunked.errorCode == "file_too_large", "\(chunked.text)")
        let left = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", "test ! -e over-sized && stat -c %s over-chunked"]])
        #expect(left.json["stdout"] as? String == "0\n", "a refused write leaves nothing of its body: \(left.text)")
        #expect(try daemon.curl("DELETE", "/v1/sandboxes/\(id)").status == 204)
    }
}
