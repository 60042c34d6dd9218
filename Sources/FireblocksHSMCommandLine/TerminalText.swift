import FireblocksHSM
/// Text from outside (server answers, user names, file contents) made safe to print on a
/// terminal: control characters (ANSI/OSC escapes could forge lines or retitle the terminal)
/// shown as escapes, and over-long text cut with a note. JSON output is not passed through
/// here: it carries the exact strings, escaped by the JSON encoder.
package enum TerminalText {
    /// The longest text printed as one piece before it is cut.
    package static let defaultLimit = 2000

    /// `text` with every C0/C1 control character and DEL written as `\u{…}` (tab kept as a
    /// space, newline as `\n` unless `keepNewlines`), and cut after `limit` characters.
    package static func sanitized(_ text: String, limit: Int = defaultLimit, keepNewlines: Bool = false) -> String {
        var result = ""
        var count = 0
        var cut = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                cut += 1
                continue
            }
            count += 1
            switch scalar.value {
            case 0x0A where keepNewlines: result.unicodeScalars.append(scalar)
            case 0x0A: result += "\\n"
            case 0x09: result += " "
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069:
                // Controls, and the Unicode line separators and bidirectional overrides that can
                // make a line read differently from what it contains.
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        if cut > 0 { result += "… [\(cut) more characters not shown; --json has the whole text]" }
        return result
    }
}

extension TerminalText {
    /// `text` as one shell word: bare when it is only letters, digits and `-_.`/`@:`, else in
    /// single quotes (a quote inside written `'\''`), with anything unprintable sanitized first.
    static func shellQuoted(_ text: String) -> String {
        let plain = sanitized(text)
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@:/".unicodeScalars)
        if !plain.isEmpty, plain.unicodeScalars.allSatisfy(safe.contains) { return plain }
        return "'" + plain.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
