import ArgumentParser
import FireblocksHSM
import TokenKeys

struct CSRSubcommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csr",
        abstract: "Make the API user's CSR (PKCS#10, SHA256withRSA), signed on the token.",
        discussion: """
            Replaces 'openssl req -new -newkey rsa:4096 -nodes -keyout api_private.key
            -out api_user.csr': the key stays on the token. The CSR is verified with the
            public key read from the token before it is written (atomically; never over
            an existing file without --force).

            Examples:
              fireblocks-hsm csr --token fb --key api-user-1 --cn John_the_API_Guy \\
                  --o "Acme Corp" --ou "API Team" --c US --st NY --l "New York" \\
                  --out api_user.csr
              fireblocks-hsm csr --token fb --key api-user-1 --o "Acme Corp" --out - > \\
                  api_user.csr
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions

    @OptionGroup var subjectOptions: SubjectOptions

    @Option(help: ArgumentHelp("Where to write the PEM CSR ('-' for stdout).", valueName: "path"))
    var out: String

    @Flag(help: "Replace --out if it exists.")
    var force = false

    @OptionGroup var audit: AuditOptions

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if out == "-", output.json {
            throw ValidationError("'--out -' and '--json' both want stdout; write the CSR to a file")
        }
    }

    func run() throws {
        let subject = try subjectOptions.subject()
        let profile = try token.loadProfile()
        let (report, pem) = try CSRCreation.make(target: try token.target(key: key.key, profile: profile), subject: subject,
                                                output: out, overwrite: force,
                                                 auditDirectory: audit.directory(profile: profile), observer: Console())
        if out == "-" {
            Console().output(pem)
        } else {
            try output.emit(report, text: TextReports.csr)
        }
    }
}
