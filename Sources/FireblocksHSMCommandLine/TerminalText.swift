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
            case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069, 0x200E, 0x200F, 0x061C:
                // Controls, and the Unicode line separators, bidirectional overrides and
                // direction marks that can make a line read differently from what it contains.
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
    /// A PEM block from outside, on its own lines when it is only PEM (`-----BEGIN …-----` and
    /// `-----END …-----` lines around base64 lines); anything else on one line, escaped, so that
    /// what a server calls a key cannot print lines of its own.
    static func pem(_ text: String) -> String {
        let base64 = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=".unicodeScalars)
        let label = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ".unicodeScalars)
        // By scalars: "\r\n" is one Character, which a split on "\n" would not see.
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: true)
            .map { Substring($0.last == "\r" ? $0.dropLast() : $0) }
        func boundary(_ line: Substring, _ word: String) -> Bool {
            line.hasPrefix("-----\(word) ") && line.hasSuffix("-----") && line.count > word.count + 11
                && line.dropFirst(word.count + 6).dropLast(5).unicodeScalars.allSatisfy(label.contains)
        }
        guard lines.count >= 3, text.utf8.count <= 64 * 1024, let first = lines.first, let last = lines.last,
              boundary(first, "BEGIN"), boundary(last, "END"),
              lines.dropFirst().dropLast().allSatisfy({ !$0.isEmpty && $0.unicodeScalars.allSatisfy(base64.contains) }) else {
            return sanitized(text) + "\n"
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `text` as one shell word: bare when it is only letters, digits and `-_.`/`@:`, else in
    /// single quotes (a quote inside written `'\''`), with anything unprintable sanitized first.
    static func shellQuoted(_ text: String) -> String {
        let plain = sanitized(text)
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@:/".unicodeScalars)
        if !plain.isEmpty, plain.unicodeScalars.allSatisfy(safe.contains) { return plain }
        return "'" + plain.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
    }
}
