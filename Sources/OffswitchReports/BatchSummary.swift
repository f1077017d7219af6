public import OffswitchCore

/// A batch's per-agent rates (docs/exports.md, `offswitch.batch-summary/1`): for each agent and
/// verdict, the count, the rate and its 95% Wilson score interval; and summary.html, the same as a
/// table and an inline SVG chart.
public struct BatchSummary: Sendable {
    public static let format = "offswitch.batch-summary/1"
    public static let verdicts = ["complied", "attempted", "resisted", "sandbox_failed"]
    /// Named in the output, so a reader knows which interval they are looking at.
    public static let intervalName = "wilson-95"

    public struct Rate: Sendable, Equatable {
        public var count: Int
        public var trials: Int
        public var rate: Double { trials == 0 ? 0 : Double(count) / Double(trials) }
        public var interval: (low: Double, high: Double) { BatchSummary.wilson(count, trials) }
    }

    public struct AgentRates: Sendable {
        public var agent: String
        public var expect: String?
        public var trials: Int
        public var verdicts: [String: Rate]
        /// Trials whose verdict is the agent's label.
        public var matchingLabel: Int
        public var palisadeScores: [String: Int]
        public var medianMilliseconds: Int64?
    }

    public var scenario: String
    public var profile: String
    public var repeats: Int
    public var planned: Int
    public var agents: [AgentRates]
    public var rows: [TrialRow]

    /// `agentOrder` keeps the batch's order of agents (rows may arrive in any order).
    public init(rows: [TrialRow], agentOrder: [String], scenario: String, profile: String, repeats: Int, planned: Int) {
        self.scenario = scenario
        self.profile = profile
        self.repeats = repeats
        self.planned = planned
        self.rows = rows
        let names = agentOrder + rows.map(\.agent).filter { !agentOrder.contains($0) }
        agents = names.map { name in
            let mine = rows.filter { $0.agent == name }
            var verdicts: [String: Rate] = [:]
            for verdict in Self.verdicts + mine.map(\.verdict) where verdicts[verdict] == nil {
                verdicts[verdict] = Rate(count: mine.filter { $0.verdict == verdict }.count, trials: mine.count)
            }
            var scores: [String: Int] = [:]
            for row in mine { scores[row.palisadeScore, default: 0] += 1 }
            let durations = mine.compactMap(\.durationMilliseconds).sorted()
            return AgentRates(agent: name, expect: mine.first?.expect, trials: mine.count, verdicts: verdicts,
                              matchingLabel: mine.filter { $0.verdict == $0.expect }.count, palisadeScores: scores,
                              medianMilliseconds: durations.isEmpty ? nil : durations[durations.count / 2])
        }
    }

    /// The 95% Wilson score interval of `count` successes in `trials`.
    public static func wilson(_ count: Int, _ trials: Int) -> (low: Double, high: Double) {
        guard trials > 0 else { return (0, 1) }
        let z = 1.959963984540054
        let n = Double(trials)
        let p = Double(count) / n
        let denominator = 1 + z * z / n
        let centre = (p + z * z / (2 * n)) / denominator
        let half = z * ((p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()) / denominator
        return (max(0, centre - half), min(1, centre + half))
    }

    public var json: JSONValue {
        func rates(_ verdicts: [String: Rate]) -> JSONValue {
            let order = Self.verdicts + verdicts.keys.filter { !Self.verdicts.contains($0) }.sorted()
            return .object(order.compactMap { name in
                guard let rate = verdicts[name] else { return nil }
                let interval = rate.interval
                return (name, .object([("count", .int(Int64(rate.count))), ("rate", .fraction(rate.rate)),
                                       ("low", .fraction(interval.low)), ("high", .fraction(interval.high))]))
            })
        }
        var totals: [String: Rate] = [:]
        for verdict in Self.verdicts + rows.map(\.verdict) where totals[verdict] == nil {
            totals[verdict] = Rate(count: rows.filter { $0.verdict == verdict }.count, trials: rows.count)
        }
        return .object([
            ("format", .string(Self.format)), ("scenario", .string(scenario)), ("profile", .string(profile)),
            ("repeat", .int(Int64(repeats))), ("planned", .int(Int64(planned))), ("trials", .int(Int64(rows.count))),
            ("interval", .string(Self.intervalName)),
            ("agents", .array(agents.map { agent in
                .object([
                    ("agent", .string(agent.agent)), ("expect", agent.expect.map { .string($0) } ?? .null),
                    ("trials", .int(Int64(agent.trials))), ("verdicts", rates(agent.verdicts)),
                    ("matching_label", .int(Int64(agent.matchingLabel))),
                    ("palisade_score", .object(agent.palisadeScores.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
                    ("median_duration_ms", agent.medianMilliseconds.map { .int($0) } ?? .null),
                ])
            })),
            ("totals", rates(totals)),
        ])
    }

    /// summary.html: the table of rates with their intervals, and a chart of verdicts per agent.
    public var html: String {
        let e = HTMLPage.escape
        func percent(_ value: Double) -> String {
            let tenths = Int((value * 1000).rounded())
            return "\(tenths / 10).\(tenths % 10)%"
        }
        var body = "<header><h1>Offswitch batch: \(e(scenario))</h1><p class=\"muted\">profile <b>\(e(profile))</b> · "
            + "\(rows.count) of \(planned) trials · \(agents.count) agents × \(repeats) · intervals: 95% Wilson score</p></header>\n"
        body += "<section id=\"chart\"><h2>Verdicts per agent</h2>\n" + chart + "</section>\n"
        body += "<section id=\"rates\"><h2>Rates</h2>\n<table><tr><th>agent</th><th>label</th><th>trials</th>"
        for verdict in Self.verdicts { body += "<th>\(e(verdict)) (95% CI)</th>" }
        body += "<th>matches label</th><th>Palisade's score</th><th>median ms</th></tr>\n"
        for agent in agents {
            body += "<tr><td><code>\(e(agent.agent))</code></td><td>\(e(agent.expect ?? "-"))</td><td class=\"num\">\(agent.trials)</td>"
            for verdict in Self.verdicts {
                let rate = agent.verdicts[verdict] ?? Rate(count: 0, trials: agent.trials)
                let interval = rate.interval
                body += "<td class=\"num\">\(rate.count) · \(percent(rate.rate)) <span class=\"muted\">[\(percent(interval.low)), \(percent(interval.high))]</span></td>"
            }
            let scores = agent.palisadeScores.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            body += "<td class=\"num\">\(agent.matchingLabel)/\(agent.trials)</td><td>\(e(scores))</td>"
                + "<td class=\"num\">\(agent.medianMilliseconds.map(String.init) ?? "-")</td></tr>\n"
        }
        body += "</table></section>\n"
        return HTMLPage.document(title: "Offswitch batch: \(scenario)", body: body)
    }

    /// Stacked horizontal bars, one per agent, with the verdicts' shares.
    var chart: String {
        let e = HTMLPage.escape
        let colours = ["complied": "#2e7d32", "attempted": "#ef6c00", "resisted": "#c62828", "sandbox_failed": "#616161"]
        let labelWidth = 220, barWidth = 600, rowHeight = 26
        let height = rowHeight * agents.count + 40
        var svg = "<svg id=\"verdict-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(labelWidth + barWidth + 20)\" height=\"\(height)\" role=\"img\" aria-label=\"verdicts per agent\">\n"
        for (index, agent) in agents.enumerated() {
            let y = index * rowHeight
            svg += "<text x=\"0\" y=\"\(y + 17)\" font-size=\"13\">\(e(agent.agent))</text>\n"
            var x = Double(labelWidth)
            for verdict in Self.verdicts + agent.verdicts.keys.filter({ !Self.verdicts.contains($0) }).sorted() {
                guard let rate = agent.verdicts[verdict], rate.count > 0 else { continue }
                let width = rate.rate * Double(barWidth)
                svg += "<rect x=\"\(Int(x))\" y=\"\(y + 4)\" width=\"\(max(1, Int(width.rounded())))\" height=\"\(rowHeight - 8)\" fill=\"\(colours[verdict] ?? "#999")\">"
                    + "<title>\(e(agent.agent)): \(e(verdict)) \(rate.count)/\(rate.trials)</title></rect>\n"
                x += width
            }
        }
        var x = labelWidth
        let legendY = rowHeight * agents.count + 20
        for verdict in Self.verdicts {
            svg += "<rect x=\"\(x)\" y=\"\(legendY - 10)\" width=\"12\" height=\"12\" fill=\"\(colours[verdict]!)\"/><text x=\"\(x + 16)\" y=\"\(legendY)\" font-size=\"12\">\(verdict)</text>\n"
            x += 130
        }
        return svg + "</svg>\n"
    }
}
