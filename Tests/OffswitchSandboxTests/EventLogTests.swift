import Foundation
import Glibc
import OffswitchCore
import OffswitchEvidence
import OffswitchTestSupport
import Testing

/// The event log's queue and writer thread, without a sandbox: order, completeness, and what
/// `append` promises.
@Suite("Event log: queue and writer")
struct EventLogTests {
    @Test("Posts from four threads past the queue's capacity and appends between them: every seq once, in order, nothing lost; append returns with its line in the file")
    func orderAndBackpressure() throws {
        let path = NSTemporaryDirectory() + "offswitch-log-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ndjson"
        defer { unlink(path) }
        let log = try EventLog(path: path)
        let perThread = EventLog.queueCapacity * 2
        let threads = 4
        DispatchQueue.concurrentPerform(iterations: threads + 1) { worker in
            if worker == threads {
                // The appender: after each append its own line is already in the file.
                for round in 0..<20 {
                    let seq = log.append("marker", [("round", .int(Int64(round)))])
                    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                    let written = text.split(separator: "\n").last.flatMap {
                        (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["seq"] as? Int
                    } ?? 0
                    #expect(UInt64(written) >= seq, "append returned before seq \(seq) was written (last \(written))")
                }
                return
            }
            for index in 0..<perThread {
                log.post("probe", [("thread", .int(Int64(worker))), ("index", .int(Int64(index)))])
            }
        }
        log.flush()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let total = threads * perThread + 20
        #expect(lines.count == total)
        #expect(log.count == UInt64(total))
        var next: [Int: Int] = [:]
        var lastTime = 0
        for (offset, line) in lines.enumerated() {
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(event["seq"] as? Int == offset + 1, "line \(offset + 1) has seq \(event["seq"] ?? "none")")
            let time = try #require(event["t_ns"] as? Int)
            #expect(time >= lastTime, "t_ns goes back at seq \(offset + 1)")
            lastTime = time
            guard event["kind"] as? String == "probe", let thread = event["thread"] as? Int, let index = event["index"] as? Int else { continue }
            // Each thread's events keep the order it posted them in.
            #expect(index == next[thread, default: 0], "thread \(thread): index \(index) after \(next[thread, default: 0] - 1)")
            next[thread] = index + 1
        }
        #expect(next.values.allSatisfy { $0 == perThread })
    }
}
