import ArgumentParser
import FireblocksHSM

struct KeyListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the token's private keys with their policy verdicts.",
        usage: "fireblocks-hsm key list [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>] [--json]",
        discussion: """
            Examples:
              fireblocks-hsm key list --token fb
              fireblocks-hsm key list --token fb \\
                  --pin-source file:/run/secrets/hsm-pin --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let profile = try token.loadProfile()
        try output.emit(try KeyOperations.list(target: try token.target(profile: profile), auditDirectory: audit.directory(profile: profile),
                                               observer: Console()), text: TextReports.keys)
    }
}
