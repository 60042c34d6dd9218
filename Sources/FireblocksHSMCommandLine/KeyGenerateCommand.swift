import ArgumentParser
import FireblocksHSM
import TokenKeys
import HexEncoding

struct KeyGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate an RSA key pair on the token: sign-only, sensitive, never extractable.",
        usage: "fireblocks-hsm key generate [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--key <label|uri>]\n[--bits <bits>] [--id <hex>] [--state-dir <path>]\n[--lock-timeout <seconds>] [--audit-dir <path>]\n[--audit-min-free <size|N%>] [--json]",
        discussion: """
            Every attribute of the key policy is set explicitly and read back; if the
            token did not honour it the pair is destroyed and the command fails. Refuses
            a label or id that already exists on the token; two runs for one label make
            one key (the second waits for the first, up to --lock-timeout, then finds
            the label taken).

            Examples:
              fireblocks-hsm key generate --token fb --key api-user-1
              fireblocks-hsm key generate --token fb --key api-user-2 --bits 3072 \\
                  --id 02 --pin-source env:HSM_PIN --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions

    @Option(help: "Modulus size: 2048, 3072 or 4096.")
    var bits: UInt = 4096

    @Option(help: ArgumentHelp("CKA_ID in hex (default: SHA-1 of the modulus, the convention that matches certificates to keys).", valueName: "hex"))
    var id: String?

    @OptionGroup var state: StateOptions
    @OptionGroup var audit: AuditOptions

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard KeyPolicy.supportedModulusBits.contains(bits) else {
            throw ValidationError("'--bits' must be 2048, 3072 or 4096")
        }
        if let id, bytes(fromHex: id) == nil {
            throw ValidationError("'--id' must be hex, e.g. 01 or 5f:3c")
        }
        try state.validate()
    }

    func run() throws {
        let profile = try token.loadProfile()
        let report = try KeyOperations.generate(
            target: try token.target(key: key.key, profile: profile), bits: bits, id: id.flatMap(bytes(fromHex:)),
            stateDirectory: state.directory, lockTimeout: state.lockTimeout,
            auditDirectory: audit.directory(profile: profile), observer: Console())
        try output.emit(report, text: TextReports.generated)
    }
}
