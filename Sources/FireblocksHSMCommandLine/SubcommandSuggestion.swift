import ArgumentParser

/// Names a mistyped subcommand instead of complaining about the options after it
/// (`key generat --key x` would otherwise say "Unknown option '--key'").
enum SubcommandSuggestion {
    /// The message for the first word that should have been a subcommand and is not one, or nil
    /// when the command path is fine (the error is about something else).
    static func message(for arguments: [String], root: any ParsableCommand.Type) -> String? {
        var command = root
        var path = [root.configuration.commandName ?? "fireblocks-hsm"]
        for word in arguments {
            let subcommands = command.configuration.subcommands
            if subcommands.isEmpty || word.hasPrefix("-") { return nil }
            let names = subcommands.compactMap { $0.configuration.commandName }
            if let next = subcommands.first(where: { $0.configuration.commandName == word }) {
                command = next
                path.append(word)
                continue
            }
            // Only the word's shape is echoed when it looks like a command name: a secret typed
            // in the wrong place must not be repeated.
            let shown = word.count <= 32 && word.allSatisfy({ $0.isLetter || $0 == "-" }) ? "'\(word)'" : "(not shown)"
            let hint = Spelling.nearest(to: word, among: names).map { " Did you mean '\($0)'?" } ?? ""
            return "unknown subcommand \(shown) for '\(path.joined(separator: " "))'.\(hint) Subcommands: \(names.joined(separator: ", ")) (see --help)"
        }
        return nil
    }
}

/// Near misses: the one edit distance of the command line (subcommands, URI attributes).
enum Spelling {
    /// The candidate `word` most likely means, when it is a near miss of one.
    static func nearest(to word: String, among candidates: some Collection<String>) -> String? {
        let lowered = word.lowercased()
        let best = candidates.map { ($0, distance(lowered, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let best, best.1 <= max(2, best.0.count / 3) else { return nil }
        return best.0
    }

    /// Levenshtein distance over Unicode scalars.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + [Int](repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
