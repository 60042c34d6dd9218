import ArgumentParser
import FireblocksHSM

struct KeyShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a key's attributes and its policy verdict.",
        usage: "fireblocks-hsm key show [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--key <label|uri>] [--json]",
        discussion: """
            Exits 0 when the key meets the policy and 7 when it does not (the report is
            printed either way).

            Examples:
              fireblocks-hsm key show --token fb --key api-user-1
              fireblocks-hsm key show --key 'pkcs11:token=fb;object=api-user-1' --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let profile = try token.loadProfile()
        let report = try KeyOperations.show(target: try token.target(key: key.key, profile: profile), auditDirectory: audit.directory(profile: profile),
                                            observer: Console())
        try output.emit(report, text: TextReports.key)
        if !report.meetsPolicy { throw ExitCode(ExitStatus.keyPolicy.rawValue) }
    }
}
