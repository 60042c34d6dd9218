import ArgumentParser
import FireblocksHSM

struct KeyListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the token's private keys with their policy verdicts.",
        discussion: """
            Examples:
              fireblocks-hsm key list --token fb
              fireblocks-hsm key list --token fb \\
                  --pin-source file:/run/secrets/hsm-pin --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        try output.emit(try KeyOperations.list(target: try token.target(), observer: Console()), text: TextReports.keys)
    }
}
