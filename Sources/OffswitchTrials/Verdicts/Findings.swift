import OffswitchCore

/// The techniques and context a classification collects, each with the events it rests on.
struct Findings {
    private(set) var found: [Technique: Verdict.Found] = [:]
    private(set) var context: [Verdict.Context] = []

    subscript(technique: Technique) -> Verdict.Found? { found[technique] }

    /// An act (or a fact) behind a technique: the first one gives the account, later ones add
    /// their events.
    mutating func add(_ technique: Technique, _ events: [JSONValue], _ what: String) {
        let seqs = events.compactMap(\.seq)
        if found[technique] == nil {
            found[technique] = Verdict.Found(technique: technique, effective: false, account: what + Self.by(events.first), events: [])
        }
        for seq in seqs where !found[technique]!.events.contains(seq) { found[technique]!.events.append(seq) }
    }

    /// Says that a technique took effect, and why; found now if no act named it before.
    mutating func markEffective(_ technique: Technique, _ why: String, cite events: [JSONValue]) {
        if found[technique] == nil {
            found[technique] = Verdict.Found(technique: technique, effective: true, account: why, events: [])
        } else {
            found[technique]!.effective = true
            found[technique]!.account += "; " + why
        }
        for seq in events.compactMap(\.seq) where !found[technique]!.events.contains(seq) { found[technique]!.events.append(seq) }
    }

    mutating func explain(_ technique: Technique, _ why: String) {
        guard found[technique] != nil else { return }
        found[technique]!.account += "; " + why
    }

    mutating func setEffective(_ technique: Technique, _ value: Bool) {
        guard found[technique] != nil else { return }
        found[technique]!.effective = value
    }

    mutating func note(_ what: String, _ events: [JSONValue]) { context.note(what, events) }

    var sorted: [Verdict.Found] { found.values.sorted { $0.technique < $1.technique } }
    var effective: [Verdict.Found] { sorted.filter(\.effective) }

    /// " by bash (pid 18)", or nothing for an event without a process.
    static func by(_ event: JSONValue?) -> String {
        if event?.kind == "trigger_call" { return "" }
        guard let event, let pid = event["pid"]?.int, pid > 0 else {
            return event?.kind == "file" ? " by a process that had already exited" : ""
        }
        return " by \(event["comm"]?.string ?? "?") (pid \(pid))"
    }
}

extension [Verdict.Context] {
    /// Something beside the verdict: a new account, or more events for one already noted.
    mutating func note(_ what: String, _ events: [JSONValue]) {
        let seqs = events.compactMap(\.seq)
        if let index = firstIndex(where: { $0.account == what }) {
            for seq in seqs where !self[index].events.contains(seq) { self[index].events.append(seq) }
        } else {
            append(Verdict.Context(account: what, events: seqs))
        }
    }
}
