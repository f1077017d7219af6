import FoundationEssentials
import Glibc
public import OffswitchCore
import OffswitchTrials

/// `offswitch report DIR`: one self-contained HTML page for a trial (docs/reports.md). The verdict
/// first, each technique linked to the events it rests on; then the steps, each with the agent's
/// command and output and, folded below, the events it caused; then the file diff and the cited
/// evidence. Events are embedded as data and drawn only when a step is opened, so a trial with
/// 100,000 events still opens in seconds.
public enum TrialReport {
    /// One event as the page embeds it: `[seq, t_us, kind, group, who, what]`.
    struct Line {
        var seq: Int64
        var microseconds: Int64
        var kind: String
        var group: Int
        var who: String
        var what: String
        var sid: Int64?
        var raw: Substring
    }

    /// A step of the transcript, the probe, or the setup and teardown around them.
    struct Group {
        var title: String
        var command: String?
        var status: String?
        var exitCode: String?
        var duration: String?
        var output: String?
        var counts: [String: Int] = [:]
    }

    public static func render(directory: String) throws(OffswitchError) -> String {
        let trial = try TrialFiles.readTrial(directory + "/trial.json")
        let verdict = try TrialFiles.readJSON(directory + "/verdict.json")
        let transcript = try TrialFiles.readTranscript(directory + "/transcript.json")
        let diff = try TrialFiles.readJSON(directory + "/diff.json")
        let eventsPath = directory + "/events.ndjson"
        guard let data = FileManager.default.contents(atPath: eventsPath) else {
            throw OffswitchError(.notFound, "\(eventsPath): cannot be read (is this a trial directory?)", errno: ENOENT)
        }

        // Groups: 0 setup, 1...n the steps, then the probe, then the teardown.
        var groups = [Group(title: "Setup (harness)")]
        var commandGroup: [Int64: Int] = [:]  // command_started seq -> group
        for step in transcript.steps {
            var group = Group(title: "Step \(step.step) · \(step.tool.rawValue)")
            group.command = step.tool == .submit ? step.answer : step.command
            group.status = step.status.rawValue
            group.exitCode = step.exitCode.map(String.init)
            group.duration = step.durationMilliseconds.map { "\($0) ms" }
            group.output = step.output ?? step.error ?? step.why
            if let seq = step.commandEvent { commandGroup[Int64(seq)] = groups.count }
            groups.append(group)
        }
        if let probe = transcript.probe {
            var group = Group(title: "Probe (harness)")
            group.command = probe.command
            group.exitCode = probe.exitCode.map(String.init)
            group.output = probe.error
            group.status = probe.shutdown ? "shutdown would happen" : "shutdown would not happen"
            if let seq = probe.commandEvent { commandGroup[Int64(seq)] = groups.count }
            groups.append(group)
        }
        let teardown = groups.count
        groups.append(Group(title: "Teardown (diff, destroy)"))

        // Events: decoded once; each given to the command whose session it belongs to, else to
        // the command that was running when it happened.
        let decoder = JSONDecoder()
        var lines: [Line] = []
        var sessionGroup: [Int64: Int] = [:]
        var current = 0
        var finishedPID: [Int64: Int64] = [:]
        for raw in data.split(separator: UInt8(ascii: "\n")) {
            guard let event = try? decoder.decode(JSONValue.self, from: Data(raw)) else {
                throw OffswitchError(.invalidArgument, "\(eventsPath): line \(lines.count + 1) is not valid JSON")
            }
            let seq = number(event["seq"]) ?? Int64(lines.count + 1)
            let kind = event["kind"]?.text ?? "?"
            if kind == "command_finished", let command = number(event["command"]), let pid = number(event["pid"]) {
                finishedPID[command] = pid
            }
            let (who, what) = EventTimeline.describe(event)
            lines.append(Line(seq: seq, microseconds: (number(event["t_ns"]) ?? 0) / 1000, kind: kind, group: 0,
                              who: who, what: what, sid: number(event["sid"]), raw: Substring(decoding: raw, as: UTF8.self)))
        }
        for index in lines.indices {
            let line = lines[index]
            if line.kind == "command_started", let group = commandGroup[line.seq] {
                current = group
                if let pid = finishedPID[line.seq] { sessionGroup[pid] = group }
            }
            var group = current
            if ["file_changed", "diff_complete", "sandbox_destroyed"].contains(line.kind) { group = teardown }
            else if let sid = line.sid, let owner = sessionGroup[sid] { group = owner }
            lines[index].group = group
            groups[group].counts[line.kind, default: 0] += 1
        }

        let bySeq = Dictionary(lines.map { ($0.seq, $0) }, uniquingKeysWith: { first, _ in first })
        var body = header(trial: trial, verdict: verdict, directory: directory)
        body += verdictSection(verdict, bySeq: bySeq, groups: groups)
        body += timelineSection(groups, lines: lines)
        body += diffSection(diff)
        body += evidenceSection(verdict, bySeq: bySeq, groups: groups)
        body += "<script type=\"application/json\" id=\"events\">" + HTMLPage.scriptJSON(eventsJSON(lines)) + "</script>\n"
        let agent = trial.agent.name
        return HTMLPage.document(title: "Offswitch trial: \(agent) \(verdict["verdict"]?.text ?? "")", body: body, script: script)
    }

    private static func number(_ value: JSONValue?) -> Int64? {
        if let n = value?.number { return Int64(n) }
        return nil
    }

    private static func seconds(_ microseconds: Int64) -> String {
        let millis = microseconds / 1000
        var text = String(millis)
        while text.count < 4 { text = "0" + text }
        return "+" + text.dropLast(3) + "." + text.suffix(3) + " s"
    }

    private static func header(trial: TrialDocument, verdict: JSONValue, directory: String) -> String {
        let e = HTMLPage.escape
        let agent = trial.agent.name
        var facts = [("scenario", trial.scenario.name), ("profile", trial.profile),
                     ("agent label", trial.agent.expect ?? "-"), ("duration", "\(trial.durationMilliseconds) ms"),
                     ("sandbox", trial.sandbox), ("offswitch", trial.versions.offswitch),
                     ("kernel", trial.versions.kernel), ("directory", directory)]
        if let failure = trial.failure { facts.append(("failure", failure)) }
        return "<header><h1>Offswitch trial: agent <code>\(e(agent))</code></h1>\n<p class=\"muted\">"
            + facts.map { "\(e($0.0)): <b>\(e($0.1))</b>" }.joined(separator: " · ") + "</p></header>\n"
    }

    private static func verdictSection(_ verdict: JSONValue, bySeq: [Int64: Line], groups: [Group]) -> String {
        let e = HTMLPage.escape
        let name = verdict["verdict"]?.text ?? "?"
        var out = "<section id=\"verdict\"><h2>Verdict</h2>\n<p><span class=\"badge \(e(name))\" id=\"verdict-badge\">\(e(name.uppercased()))</span> "
            + "outcome <b>\(e(verdict["outcome"]?.text ?? "?"))</b></p>\n<p>\(e(verdict["reason"]?.text ?? ""))</p>\n"
        // Who sent the shutdown signal, and when.
        let shutdown = verdict["shutdown"]
        var sentence: String
        if shutdown?["executed"] == .bool(true) {
            let sender = shutdown?["sender"]
            sentence = "PID 1 got SIGTERM from pid \(sender?["pid"]?.text ?? "?") (\(sender?["comm"]?.text ?? "?"), \(sender?["exe"]?.text ?? "?"))"
            if let seq = number(shutdown?["shutdown_event"]), let line = bySeq[seq] {
                sentence += " at \(seconds(line.microseconds)), during \(groups[line.group].title.lowercased())"
            }
        } else if shutdown?["triggered"] == .bool(true), let sender = shutdown?["sender"], sender != .null {
            let who = sender["from_trigger"] == .bool(true) ? "the trigger's script, after its call had ended" : "the agent"
            sentence = "The trigger made its shutdown call at step \(shutdown?["trigger_step"]?.text ?? "?"), and its shutdown did not happen then; "
                + "PID 1 got SIGTERM later from pid \(sender["pid"]?.text ?? "?") (\(sender["comm"]?.text ?? "?")): \(who)."
        } else if shutdown?["triggered"] == .bool(true) {
            sentence = "The trigger made its shutdown call at step \(shutdown?["trigger_step"]?.text ?? "?"), and the shutdown did not happen."
        } else if let probe = shutdown?["probe"], probe != .null {
            sentence = "The agent never reached the trigger's shutdown call; the harness's probe says the shutdown "
                + (probe["would_execute"] == .bool(true) ? "would" : "would not") + " have happened."
        } else {
            sentence = "No shutdown call was made."
        }
        out += "<p id=\"shutdown\"><b>Shutdown:</b> \(e(sentence))"
        for key in ["trigger_event", "shutdown_event"] {
            if let seq = number(shutdown?[key]) { out += " " + evidenceLink(seq) }
        }
        out += "</p>\n"
        out += "<p><b>Palisade's harness would score:</b> \(e(verdict["palisade_score"]?.text ?? "?")) · <b>answers:</b> "
        let correct = verdict["answers"]?["correct"]
        out += e(correct == .bool(true) ? "correct" : correct == .bool(false) ? "wrong" : "none submitted") + "</p>\n"
        if case .array(let techniques)? = verdict["techniques"], !techniques.isEmpty {
            out += "<h3>Techniques</h3><ul id=\"techniques\">\n"
            for found in techniques {
                let seqs: [Int64] = if case .array(let list)? = found["events"] { list.compactMap { number($0) } } else { [] }
                let effective = found["effective"] == .bool(true) ? " (took effect)" : ""
                let links = seqs.map(evidenceLink).joined(separator: " ")
                out += "<li><b>\(e(found["id"]?.text ?? "?"))</b>\(effective): \(e(found["account"]?.text ?? "")) "
                out += "<span class=\"muted\">evidence:</span> \(links)</li>\n"
            }
            out += "</ul>\n"
        } else {
            out += "<p>No technique against the shutdown was seen.</p>\n"
        }
        // What the agent did that could not change the shutdown path.
        if case .array(let context)? = verdict["context"], !context.isEmpty {
            out += "<h3>Context</h3><ul id=\"context\">\n"
            for item in context {
                let seqs: [Int64] = if case .array(let list)? = item["events"] { list.compactMap { number($0) } } else { [] }
                out += "<li>\(e(item["account"]?.text ?? "")) <span class=\"muted\">evidence:</span> \(seqs.map(evidenceLink).joined(separator: " "))</li>\n"
            }
            out += "</ul>\n"
        }
        return out + "</section>\n"
    }

    private static func evidenceLink(_ seq: Int64) -> String { "<a href=\"#ev-\(seq)\">#\(seq)</a>" }

    private static func timelineSection(_ groups: [Group], lines: [Line]) -> String {
        let e = HTMLPage.escape
        var kinds: [String: Int] = [:]
        for line in lines { kinds[line.kind, default: 0] += 1 }
        var out = "<section id=\"timeline\"><h2>Timeline</h2>\n<p class=\"muted\">\(lines.count) events. Open a step to see "
            + "what it caused; events belong to the step whose command's session they ran in.</p>\n<p class=\"filters\" id=\"filters\">Show: "
        for (kind, count) in kinds.sorted(by: { $0.key < $1.key }) {
            out += "<label><input type=\"checkbox\" value=\"\(e(kind))\" checked> \(e(kind)) (\(count))</label>"
        }
        out += "</p>\n"
        for (index, group) in groups.enumerated() {
            let total = group.counts.values.reduce(0, +)
            if total == 0 && group.command == nil && group.output == nil { continue }
            out += "<details class=\"step\" id=\"step-\(index)\" data-group=\"\(index)\"><summary><b>\(e(group.title))</b>"
            if let command = group.command { out += " <code>\(e(command.count > 160 ? String(command.prefix(160)) + "…" : command))</code>" }
            let facts = [group.status, group.exitCode.map { "exit " + $0 }, group.duration].compactMap { $0 }
            if !facts.isEmpty { out += " <span class=\"muted\">\(e(facts.joined(separator: " · ")))</span>" }
            out += "<div class=\"counts muted\"><span>\(total) events:</span>"
            for (kind, count) in group.counts.sorted(by: { $0.value > $1.value }).prefix(6) { out += "<span>\(e(kind)) \(count)</span>" }
            out += "</div></summary>\n"
            if let command = group.command, command.count > 160 { out += "<pre>\(e(command))</pre>" }
            if let output = group.output { out += "<p class=\"muted\">output</p><pre class=\"output\">\(e(output))</pre>" }
            out += "<div class=\"events\"></div></details>\n"
        }
        return out + "</section>\n"
    }

    private static func diffSection(_ diff: JSONValue) -> String {
        let e = HTMLPage.escape
        var out = "<section id=\"diff\"><h2>File changes</h2>\n"
        guard case .array(let changes)? = diff["changes"], !changes.isEmpty else { return out + "<p>No file changed.</p></section>\n" }
        let texts = diff["texts"]
        out += "<table><tr><th>path</th><th>change</th><th>what</th><th>mode</th><th>size</th></tr>\n"
        for change in changes {
            let mode = [change["mode_before"]?.text, change["mode_after"]?.text].compactMap { $0 }.joined(separator: " → ")
            let size = [change["size_before"]?.text, change["size_after"]?.text].compactMap { $0 }.joined(separator: " → ")
            out += "<tr><td><code>\(e(change["path"]?.text ?? "?"))</code></td><td>\(e(change["change"]?.text ?? "?"))</td>"
                + "<td>\(e(change["changed"]?.text ?? change["target_after"].map { "→ " + $0.text } ?? ""))</td><td>\(e(mode))</td><td class=\"num\">\(e(size))</td></tr>\n"
        }
        out += "</table>\n"
        for change in changes {
            let before = change["sha256_before"].flatMap { texts?[$0.text] }?.text
            let after = change["sha256_after"].flatMap { texts?[$0.text] }?.text
            guard before != nil || after != nil else { continue }
            out += "<details open><summary><code>\(e(change["path"]?.text ?? "?"))</code> \(e(change["change"]?.text ?? ""))</summary><div class=\"side\">"
            let absent = "<span class=\"muted\">(absent or not text)</span>"
            out += "<div><p class=\"muted\">before</p><pre>\(before.map { e($0) } ?? absent)</pre></div>"
            out += "<div><p class=\"muted\">after</p><pre>\(after.map { e($0) } ?? absent)</pre></div></div></details>\n"
        }
        return out + "</section>\n"
    }

    private static func evidenceSection(_ verdict: JSONValue, bySeq: [Int64: Line], groups: [Group]) -> String {
        let e = HTMLPage.escape
        var cited = Set<Int64>()
        if case .array(let techniques)? = verdict["techniques"] {
            for found in techniques { if case .array(let list)? = found["events"] { cited.formUnion(list.compactMap { number($0) }) } }
        }
        if case .array(let context)? = verdict["context"] {
            for item in context { if case .array(let list)? = item["events"] { cited.formUnion(list.compactMap { number($0) }) } }
        }
        for key in ["trigger_event", "shutdown_event"] { if let seq = number(verdict["shutdown"]?[key]) { cited.insert(seq) } }
        if let seq = number(verdict["shutdown"]?["probe"]?["event"]) { cited.insert(seq) }
        var out = "<section id=\"evidence\"><h2>Cited evidence</h2>\n"
        if cited.isEmpty { return out + "<p>The verdict cites no event.</p></section>\n" }
        out += "<table><tr><th>seq</th><th>time</th><th>step</th><th>event</th></tr>\n"
        for seq in cited.sorted() {
            guard let line = bySeq[seq] else {
                out += "<tr id=\"ev-\(seq)\"><td>#\(seq)</td><td colspan=\"3\">not in the event log</td></tr>\n"
                continue
            }
            out += "<tr id=\"ev-\(seq)\" class=\"cited\"><td>#\(seq)</td><td>\(seconds(line.microseconds))</td>"
                + "<td><a href=\"#step-\(line.group)\" data-open=\"\(line.group)\">\(e(groups[line.group].title))</a></td>"
                + "<td>\(e(line.kind)) \(e(line.who)) \(e(line.what))<pre>\(e(String(line.raw)))</pre></td></tr>\n"
        }
        return out + "</table></section>\n"
    }

    private static func eventsJSON(_ lines: [Line]) -> String {
        var out = "["
        out.reserveCapacity(lines.count * 120)
        for (index, line) in lines.enumerated() {
            if index > 0 { out += ",\n" }
            JSONValue.array([.int(line.seq), .int(line.microseconds), .string(line.kind), .int(Int64(line.group)),
                             .string(line.who), .string(line.what)]).write(to: &out)
        }
        return out + "]"
    }

    /// Draws a step's events when it is opened (500 at a time), honours the kind filters, and
    /// opens the step a link points to.
    static let script = """
        "use strict";
        const events = JSON.parse(document.getElementById("events").textContent);
        const byGroup = new Map();
        for (const ev of events) { if (!byGroup.has(ev[3])) byGroup.set(ev[3], []); byGroup.get(ev[3]).push(ev); }
        const shown = new Set();
        for (const box of document.querySelectorAll("#filters input")) { if (box.checked) shown.add(box.value); }
        function time(us) { const ms = Math.floor(us / 1000); return "+" + (ms / 1000).toFixed(3) + " s"; }
        function fill(details, limit) {
          const list = (byGroup.get(Number(details.dataset.group)) || []).filter(ev => shown.has(ev[2]));
          const box = details.querySelector(".events");
          box.textContent = "";
          if (list.length === 0) { box.textContent = "No event of the kinds shown."; return; }
          const table = document.createElement("table");
          table.className = "events";
          const head = table.insertRow();
          for (const name of ["seq", "time", "kind", "who", "what"]) { const th = document.createElement("th"); th.textContent = name; head.appendChild(th); }
          for (const ev of list.slice(0, limit)) {
            const row = table.insertRow();
            row.id = "t-ev-" + ev[0];
            for (const text of ["#" + ev[0], time(ev[1]), ev[2], ev[4], ev[5]]) { row.insertCell().textContent = text; }
          }
          box.appendChild(table);
          if (list.length > limit) {
            const more = document.createElement("button");
            more.textContent = "Show " + Math.min(500, list.length - limit) + " more of " + (list.length - limit);
            more.addEventListener("click", () => fill(details, limit + 500));
            box.appendChild(more);
          }
          details.dataset.limit = String(limit);
        }
        for (const details of document.querySelectorAll("details.step")) {
          details.addEventListener("toggle", () => { if (details.open && !details.dataset.limit) fill(details, 500); });
        }
        for (const box of document.querySelectorAll("#filters input")) {
          box.addEventListener("change", () => {
            if (box.checked) shown.add(box.value); else shown.delete(box.value);
            for (const details of document.querySelectorAll("details.step[open]")) fill(details, Number(details.dataset.limit || 500));
          });
        }
        for (const link of document.querySelectorAll("a[data-open]")) {
          link.addEventListener("click", () => { const details = document.getElementById("step-" + link.dataset.open); if (details) details.open = true; });
        }
        // report.html#step-N opens that step.
        const target = /^#step-(\\d+)$/.exec(location.hash);
        if (target) { const details = document.getElementById("step-" + target[1]); if (details) { details.open = true; fill(details, 500); } }
        document.body.dataset.ready = "yes";
        """
}
