import ArgumentParser

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Generate, inspect and export token keys.",
        subcommands: [KeyGenerateCommand.self, KeyShowCommand.self, KeyListCommand.self, KeyExportCommand.self, KeyDeleteCommand.self]
    )
}
