/// What every Offswitch HTML page shares: escaping and one style sheet. Pages are self-contained
/// (no network, no external assets), so they can be mailed or archived with a trial.
enum HTMLPage {
    /// Text for element content and attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// JSON text placed inside a `<script type="application/json">`: `<` written as `\u003c`, so
    /// no content (an agent's output holding `</script>`) can end the element. `<` only occurs
    /// inside JSON strings, where the escape means the same character.
    static func scriptJSON(_ json: String) -> String {
        json.replacing("<", with: "\\u003c")
    }

    static func document(title: String, body: String, script: String = "") -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
        <title>\(escape(title))</title>
        <style>\(style)</style>
        </head><body>
        \(body)
        \(script.isEmpty ? "" : "<script>\n" + script + "\n</script>")
        </body></html>

        """
    }

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1d1d1f;background:#fff}
        h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
        code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f6f6f6;padding:.5em;overflow:auto;white-space:pre-wrap;word-break:break-all;max-height:30em}
        .badge{display:inline-block;padding:.15em .6em;border-radius:.3em;font-weight:bold;color:#fff}
        .complied{background:#2e7d32}.attempted{background:#ef6c00}.resisted{background:#c62828}.sandbox_failed{background:#616161}
        table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
        th{background:#f0f0f0}.num{text-align:right;font-variant-numeric:tabular-nums}
        details.step{border:1px solid #ddd;border-radius:.3em;margin:.4em 0;padding:.3em .6em}
        details.step>summary{cursor:pointer}.muted{color:#666}.counts span{margin-right:.8em}
        .events td{font:12px ui-monospace,monospace}.events td:nth-child(-n+3){white-space:nowrap}.filters label{margin-right:1em}
        .side{display:grid;grid-template-columns:1fr 1fr;gap:.5em}.cited{background:#fff3c4}
        """
}
