import ArgumentParser

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "List and initialise tokens.",
        subcommands: [TokenListCommand.self, TokenInitCommand.self]
    )
}
