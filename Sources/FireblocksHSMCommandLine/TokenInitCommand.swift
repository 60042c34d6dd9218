import ArgumentParser
import FireblocksHSM
import TokenKeys

struct TokenInitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Initialise the module's one uninitialised token (SoftHSM, CI): label, SO PIN, user PIN.",
        usage: "fireblocks-hsm token init [--module <path|name>] --label <label>\n[--so-pin-source <source>] [--pin-source <source>] [--json]",
        discussion: """
            Refuses when the module has no or several uninitialised tokens, and when a
            token with the label exists: initialising erases every key on a token.

            Examples:
              SOFTHSM2_CONF=/tmp/hsm/softhsm2.conf fireblocks-hsm token init \\
                  --module softhsm2 --label fb --so-pin-source env:SO_PIN \\
                  --pin-source env:USER_PIN
            """
    )

    @OptionGroup var module: ModuleOptions

    @Option(help: "Label of the new token (at most 32 bytes).")
    var label: String

    @Option(name: .customLong("so-pin-source"), help: ArgumentHelp("Where the new SO PIN comes from: prompt, env:NAME or file:PATH.", valueName: "source"))
    var securityOfficerPINSource = "prompt"

    @Option(name: .customLong("pin-source"), help: ArgumentHelp("Where the new user PIN comes from: prompt, env:NAME or file:PATH.", valueName: "source"))
    var pinSource = "prompt"

    @OptionGroup var output: OutputOptions

    func run() throws {
        let report = try TokenOperations.initialize(
            module: try module.location, label: label,
            securityOfficerPINSource: try PINSource(parsing: securityOfficerPINSource, origin: "--so-pin-source"),
            userPINSource: try PINSource(parsing: pinSource, origin: "--pin-source"),
            observer: Console())
        try output.emit(report) { "Initialised token '\($0.label)' (serial \($0.serial)).\n" }
    }
}
