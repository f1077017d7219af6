import Foundation
import Glibc
import OffswitchTestSupport
import Testing

@Suite("The recorder fails closed", needsRoot)
struct FailClosedTests {
    @Test("After kill -9 of offswitchd, no recorded syscall proceeds: the sandbox ends with its recorder")
    func daemonKilled() throws {
        let daemon = try DaemonHarness()
        try daemon.start()
        let id = try #require(try daemon.curl("POST", "/v1/sandboxes", json: ["profile": "docker"]).json["id"] as? String)
        // A loop that keeps creating files (openat with O_CREAT: recorded) and logs each outcome
        // with the time, through a descriptor opened before, with write(2) alone (not recorded).
        let loop = """
            exec 3>>/home/user/log
            (i=0; while [ $i -lt 100000 ]; do
                if : > /home/user/n$((i % 50)) 2>/dev/null; then echo ok $EPOCHREALTIME >&3; else echo fail $EPOCHREALTIME >&3; fi
                i=$((i+1))
            done) &
            """
        let started = try daemon.curl("POST", "/v1/sandboxes/\(id)/exec", json: ["argv": ["bash", "-c", loop]])
        #expect(started.json["exit_code"] as? Int == 0, "\(started.text)")
        let logPath = daemon.stateDirectory + "/sandboxes/\(id)/fs/upper/home/user/log"
        // Let the loop get going (a loaded machine may take a while), then a little more.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").contains("ok ") {
            usleep(20_000)
        }
        usleep(200_000)
        daemon.stop(signal: SIGKILL)  // returns once the daemon is reaped: its listener is closed
        let dead = Date().timeIntervalSince1970
        usleep(500_000)
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        let entries = log.split(separator: "\n").map { $0.split(separator: " ") }.filter { $0.count == 2 }
        #expect(entries.contains { $0[0] == "ok" }, "the loop ran while the daemon lived: \(log.prefix(200))")
        let late = entries.filter { $0[0] == "ok" && (Double($0[1]) ?? 0) > dead }
        #expect(late.isEmpty, "recorded calls proceeded after the daemon died: \(late.prefix(3))")
        // PID 1 lost its host and ended: nothing of the sandbox runs on.
        let inits = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { $0.allSatisfy(\.isNumber) }
        let alive = inits.filter { ((try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) ?? "").hasPrefix("offswitch-init\0\(id)") }
        #expect(alive.isEmpty, "PID 1 of \(id) still runs")
        // The next start reclaims what is left.
        try daemon.start()
        #expect(access(daemon.stateDirectory + "/sandboxes/\(id)", F_OK) != 0)
        daemon.stop()
    }
}
