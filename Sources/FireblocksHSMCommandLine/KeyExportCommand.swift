import DurableFiles
import ArgumentParser
import FireblocksHSM

extension PublicKeyFormat: ExpressibleByArgument {
    /// Case-insensitive, like every choice the tool takes (`--format PEM`).
    public init?(argument: String) {
        self.init(rawValue: argument.lowercased())
    }
}

struct KeyExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a key's public half (the private key cannot leave the token).",
        usage: "fireblocks-hsm key export [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--audit-dir <path>]\n[--key <label|uri>] [--format <format>] [--out <path>] [--force]",
        discussion: """
            Examples:
              fireblocks-hsm key export --token fb --key api-user-1 --format pem
              fireblocks-hsm key export --token fb --key api-user-1 --format jwk \\
                  --out api-user-1.jwk
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var key: KeyOptions

    @Option(help: "pem (SubjectPublicKeyInfo), der or jwk.")
    var format: PublicKeyFormat = .pem

    @Option(help: ArgumentHelp("Write to this file (atomically) instead of stdout.", valueName: "path"))
    var out: String?

    @Flag(help: "Replace --out if it exists.")
    var force = false

    func validate() throws {
        if format == .der, out == nil, Console().standardOutputIsTerminal {
            throw ValidationError("'--format der' writes binary; redirect stdout or use '--out PATH'")
        }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let bytes = try KeyOperations.exportPublicKey(target: try token.target(key: key.key, profile: profile), format: format,
                                                      auditDirectory: audit.directory(profile: profile), observer: Console())
        if let out {
            try AtomicFile.write(bytes, to: out, overwrite: force, mode: 0o644)
        } else {
            Console().output(bytes: bytes)
        }
    }
}
