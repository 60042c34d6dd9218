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
            let nearest = names.min { distance(word, $0) < distance(word, $1) }
            let hint = nearest.flatMap { distance(word, $0) <= max(2, $0.count / 3) ? " Did you mean '\($0)'?" : nil } ?? ""
            return "unknown subcommand \(shown) for '\(path.joined(separator: " "))'.\(hint) Subcommands: \(names.joined(separator: ", ")) (see --help)"
        }
        return nil
    }

    /// Levenshtein distance.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
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
