import ArgumentParser
import AuditTrail
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct EvidenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Check an onboarding's evidence bundle.",
        subcommands: [EvidenceVerifyCommand.self]
    )
}

struct EvidenceVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify an evidence bundle with the audit public key you trust (no token needed).",
        discussion: """
            Checks the DSSE envelope's signature over the in-toto statement, every file's
            SHA-256, the CSR's self-signature and key, the checkpoint's signature, and each
            audit record's inclusion proof. Prints the audit key fingerprint it trusted.

            Examples:
              fireblocks-hsm evidence verify out/ci-bot-evidence --audit-key audit.pub
            """
    )

    @Argument(help: ArgumentHelp("The evidence folder.", valueName: "dir"))
    var directory: String

    @Option(name: .customLong("audit-key"), help: ArgumentHelp("The audit public key (PEM) you trust.", valueName: "path"))
    var auditKey: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        guard let pem = FileManager.default.contents(atPath: auditKey) else {
            throw CommandLineError("cannot read the audit key \(auditKey)", status: .fileError)
        }
        let result = try EvidenceBundle.verify(directory: directory, auditKeyPEM: String(decoding: pem, as: UTF8.self))
        try output.emit(result) { result in
            "Evidence verified with the audit key SHA-256 \(result.auditKeySHA256): \(result.files.count) files as signed, \(result.records) audit records included in the checkpoint of \(result.treeSize).\n"
        }
    }
}

extension EvidenceVerifyCommand: JSONReporting { var wantsJSON: Bool { output.json } }
