import ArgumentParser
import FireblocksHSM

struct TokenListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the tokens of a module (no PIN needed).",
        discussion: """
            Examples:
              fireblocks-hsm token list
              fireblocks-hsm token list --module softhsm2 --json
            """
    )

    @OptionGroup var module: ModuleOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try output.emit(try TokenOperations.list(module: module.location), text: TextReports.tokens)
    }
}
