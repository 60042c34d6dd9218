import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// `approval-key create|list|show|delete|rotate` (Fireblocks' Approvals API, early availability):
// approval keys generated and used on the token. Network commands: they run in the companion.
// The `approvals` commands are in ApprovalsCommands.swift.

/// What every approval command signs and calls with: `--as`, the API key on the token whose API
/// user the approval keys belong to (it signs every request's JWT), and the token, API and audit
/// trail options every network command takes.
struct ApprovalSessionOptions: ParsableArguments {
    @Option(name: .customLong("as"), help: ArgumentHelp(
        "The API user's signing key on the token (label or pkcs11: URI; default: the profile's key). Its API key (--api-key) is the user's id.",
        valueName: "label|uri"))
    var signer: String?

    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    func validate() throws {
        guard let signer else { return }
        var key = KeyOptions()
        key.key = signer
        try key.validate()
    }

    /// The signing key on the token and the API (with the profile, when one is named), as
    /// every approval command reaches them.
    func targets(_ network: Network) throws -> (token: TokenTarget, api: APITarget) {
        let profile = try token.loadProfile()
        return (try token.target(key: signer ?? profile?.key, profile: profile),
                try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport))
    }
}

/// `--key`: the approval key's label on the token.
struct ApprovalKeyLabelOption: ParsableArguments {
    @Option(help: ArgumentHelp("The approval key's label on the token.", valueName: "label"))
    var key: String?
}

package struct ApprovalKeyCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "approval-key",
        abstract: "Generate approval keys on the token and register, list, show and delete them (Approvals API, early availability).",
        subcommands: [ApprovalKeyCreateCommand.self, ApprovalKeyListCommand.self, ApprovalKeyShowCommand.self, ApprovalKeyDeleteCommand.self,
                      ApprovalKeyRotateCommand.self]
    )
}

struct ApprovalKeyCreateCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Generate an approval key on the token and register it for the API user.",
        usage: "fireblocks-hsm approval-key create [<options>] --key <label>\n[--as <label|uri>] [--algorithm <algorithm>] [--evidence <dir>]",
        discussion: """
            The key is made on the token under the key policy (sign-only, sensitive,
            private, never extractable; read back and judged) and its public key is
            registered with POST /v1/management/api_users/{id}/approval_keys for the
            API user whose API key signs (--api-key; keys are registered only for the
            caller's own user). Default ECDSA_SECP256R1; ECDSA_SECP384R1, RSA_PS256
            (--bits 3072 or 4096) and EDDSA_ED25519 (where the token offers CKM_EDDSA).
            A re-run after an interruption takes the key already on the token and does
            not register a public key that is already listed. The registration may wait
            for an approval request (ccrIdPendingRegistration). --evidence DIR writes the
            key's evidence bundle, checked as an onboarding's (docs/auditor-guide.md).

            Examples:
              fireblocks-hsm approval-key create --token fb --key approver-1 \\
                  --as ci-bot --api-key "$CI_BOT_API_KEY" --env sandbox
              fireblocks-hsm approval-key create --profile ci-bot --key approver-2 \\
                  --algorithm RSA_PS256 --bits 4096 --json
            """
    )

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var session: ApprovalSessionOptions

    @Option(help: ArgumentHelp("ECDSA_SECP256R1 (default), ECDSA_SECP384R1, RSA_PS256 or EDDSA_ED25519.", valueName: "algorithm"))
    var algorithm = "ECDSA_SECP256R1"

    @Option(help: ArgumentHelp("RSA_PS256 key size: 3072 (default) or 4096.", valueName: "bits"))
    var bits: UInt?

    @Option(help: ArgumentHelp("The name registered (default: the label).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("Write the key's evidence bundle there (public key, attributes read back, registration, audit records with proofs; docs/auditor-guide.md).", valueName: "dir"))
    var evidence: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard approvalKey.key != nil else { throw ValidationError("give the new approval key's label: --key LABEL") }
        _ = try choice()
    }

    func choice() throws -> ApprovalKeyChoice { try Self.choice(algorithm: algorithm, bits: bits) }

    static func choice(algorithm: String, bits: UInt?) throws -> ApprovalKeyChoice {
        let parsed: ApprovalKeyAlgorithm
        do { parsed = try ApprovalKeyAlgorithm(validating: algorithm) } catch { throw ValidationError("--algorithm: \(error.reason)") }
        if let bits, parsed != .RSA_PS256 { throw ValidationError("--bits is for RSA_PS256 only (\(bits))") }
        switch parsed {
        case .ECDSA_SECP256R1: return .p256
        case .ECDSA_SECP384R1: return .p384
        case .EDDSA_ED25519: return .ed25519
        case .RSA_PS256:
            switch bits ?? 3072 {
            case 3072: return .rsa3072
            case 4096: return .rsa4096
            default: throw ValidationError("--bits must be 3072 or 4096")
            }
        }
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let report = try await ApprovalOperations.createKey(
            token: targets.token, api: targets.api,
            label: approvalKey.key ?? "", choice: try choice(), name: name, evidence: evidence, observer: Console())
        try output.emit(report) { report in
            let state = report.status == "APPROVAL_API_KEY_STATUS_ENABLED" ? "active now"
                : report.ccrIdPendingRegistration.isEmpty ? "status \(report.status)"
                : "pending: approval request \(report.ccrIdPendingRegistration) must be approved first"
            let verb = report.result == "registered" ? "Registered" : "Already registered (nothing sent):"
            return TerminalText.sanitized("\(verb) approval key '\(report.label)' (\(report.algorithm), \(report.key) on the token) for API user \(report.userID): key id \(report.keyID), \(state).") + "\n"
                + "Public key SHA-256: \(report.spkiSHA256)\n"
                + (report.evidence.map { TerminalText.sanitized("Evidence: \($0)") + "\n" } ?? "")
        }
    }
}

struct ApprovalKeyRotateCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Replace an approval key: register the new one, wait until it is enabled, delete the old one's registration.",
        usage: "fireblocks-hsm approval-key rotate [<options>] --from <label>\n--to <label> [--as <label|uri>] [--algorithm <algorithm>]",
        discussion: """
            The two-key overlap (an API user has at most two approval keys): the new key is
            generated on the token and registered (as 'approval-key create' does), the API
            is polled until it lists the new key ENABLED (its registration may wait for an
            approval request; --timeout, exit 12), then the old key's registration is
            deleted (that may wait for an approval request too; the old key stays active
            until then). Each step reads where things are first, so an interrupted
            rotation is resumed by running the same command again. The old key stays on
            the token: delete it with 'key delete' once it is no longer registered.

            Examples:
              fireblocks-hsm approval-key rotate --from approver-1 --to approver-2 \\
                  --profile ci-bot --timeout 2h
            """
    )

    @Option(help: ArgumentHelp("The approval key being replaced (its label on the token).", valueName: "label"))
    var from: String

    @Option(help: ArgumentHelp("The new approval key's label (generated, or taken from an earlier run).", valueName: "label"))
    var to: String

    @OptionGroup var session: ApprovalSessionOptions

    @Option(help: ArgumentHelp("The new key's algorithm: ECDSA_SECP256R1 (default), ECDSA_SECP384R1, RSA_PS256 or EDDSA_ED25519.", valueName: "algorithm"))
    var algorithm = "ECDSA_SECP256R1"

    @Option(help: ArgumentHelp("RSA_PS256 key size: 3072 (default) or 4096.", valueName: "bits"))
    var bits: UInt?

    @Option(help: ArgumentHelp("The name registered (default: the label).", valueName: "name"))
    var name: String?

    @OptionGroup var wait: WaitOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard from != to else { throw ValidationError("--from and --to name the same key") }
        _ = try ApprovalKeyCreateCommand.choice(algorithm: algorithm, bits: bits)
        _ = try wait.policy()
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let console = Console()
        let report = try await ApprovalOperations.rotate(
            token: targets.token, api: targets.api,
            from: from, to: to, choice: try ApprovalKeyCreateCommand.choice(algorithm: algorithm, bits: bits), name: name,
            wait: try wait.policy(), observer: console) { event in
                switch event {
                case .registered(let report):
                    console.note(TerminalText.sanitized("new approval key '\(report.label)': \(report.result), key id \(report.keyID)"))
                case .status(let status, _):
                    console.note(TerminalText.sanitized("new approval key: \(status)"))
                case .backingOff(let seconds, let reason):
                    console.note(TerminalText.sanitized("backing off \(Int(seconds.rounded())) s: \(reason)"))
                }
            }
        try output.emit(report) { report in
            let old: String
            switch report.oldKey {
            case "deleted": old = "the old key's registration (\(report.oldKeyID ?? "?")) was deleted"
            case "already-deleted": old = "the old key was no longer registered"
            default: old = "the old key's deletion waits for approval request \(report.ccrIdPendingDeletion.isEmpty ? "(already requested)" : report.ccrIdPendingDeletion); it stays active until then"
            }
            return TerminalText.sanitized("Rotated '\(report.oldLabel)' to '\(report.new.label)' (key id \(report.new.keyID), enabled); \(old).") + "\n"
        }
    }
}

struct ApprovalKeyListCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the API user's approval keys: status, last use, and which token key each is.",
        discussion: """
            Examples:
              fireblocks-hsm approval-key list --token fb --as ci-bot \\
                  --api-key "$CI_BOT_API_KEY" --env sandbox
              fireblocks-hsm approval-key list --profile ci-bot --json
            """
    )

    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let entries = try await ApprovalOperations.listKeys(
            token: targets.token, api: targets.api, observer: Console())
        try output.emit(entries) { entries in
            if entries.isEmpty { return "No approval keys.\n" }
            return TextReports.table([["ID", "NAME", "ALGORITHM", "STATUS", "LAST USED", "TOKEN KEY"]] + entries.map { entry in
                [entry.key.id, entry.key.name, entry.key.approvalApiPublicKey.algorithm,
                 entry.key.status.hasPrefix("APPROVAL_API_KEY_STATUS_") ? String(entry.key.status.dropFirst("APPROVAL_API_KEY_STATUS_".count)) : entry.key.status,
                 ApprovalText.time(seconds: entry.key.lastUsedAt), entry.tokenLabel ?? "-"].map { TerminalText.sanitized($0, limit: 80) }
            })
        }
    }
}

struct ApprovalKeyShowCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one approval key (by id, or by its label on the token): status, pending request, last use.",
        discussion: """
            Examples:
              fireblocks-hsm approval-key show --key approver-1 --profile ci-bot
              fireblocks-hsm approval-key show 5e0c…-… --profile ci-bot --json
            """
    )

    @Argument(help: ArgumentHelp("The registered key's id (or give --key).", valueName: "key-id"))
    var id: String?

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (id == nil) != (approvalKey.key == nil) else { throw ValidationError("give the key's id or --key LABEL (not both)") }
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let entries = try await ApprovalOperations.listKeys(
            token: targets.token, api: targets.api, observer: Console())
        guard let entry = entries.first(where: { id != nil ? $0.key.id == id : $0.tokenLabel == approvalKey.key }) else {
            throw CommandLineError(id.map { "no approval key with id '\($0.prefix(128))' is registered for this API user" }
                                   ?? "the token's approval key '\(approvalKey.key ?? "")' is not registered for this API user")
        }
        try output.emit(entry) { entry in
            TextReports.table([
                ["Id", entry.key.id], ["Name", entry.key.name], ["Algorithm", entry.key.approvalApiPublicKey.algorithm],
                ["Status", entry.key.status], ["Created", ApprovalText.time(seconds: entry.key.createdAt)],
                ["Last used", ApprovalText.time(seconds: entry.key.lastUsedAt)], ["User", entry.key.userId],
                ["Token key", entry.tokenLabel ?? "none on this token"],
            ].map { [$0[0], TerminalText.sanitized($0[1])] }) + TerminalText.pem(entry.key.approvalApiPublicKey.publicKeyPem)
        }
    }
}

struct ApprovalKeyDeleteCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a registered approval key (by id, or by its label on the token); the token key stays.",
        discussion: """
            The deletion of the user's last key always waits for an approval request
            (ccrIdPendingDeletion); the key stays active until then.

            Examples:
              fireblocks-hsm approval-key delete --key approver-1 --profile ci-bot
              fireblocks-hsm approval-key delete 5e0c…-… --profile ci-bot --json
            """
    )

    @Argument(help: ArgumentHelp("The registered key's id (or give --key).", valueName: "key-id"))
    var id: String?

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (id == nil) != (approvalKey.key == nil) else { throw ValidationError("give the key's id or --key LABEL (not both)") }
    }

    struct Report: Codable {
        let keyID: String
        let ccrIdPendingDeletion: String
        let requestID: String?
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let result = try await ApprovalOperations.deleteKey(
            token: targets.token, api: targets.api,
            keyID: id, label: approvalKey.key, observer: Console())
        try output.emit(Report(keyID: result.keyID, ccrIdPendingDeletion: result.ccrIdPendingDeletion, requestID: result.requestID)) { report in
            TerminalText.sanitized(report.ccrIdPendingDeletion.isEmpty
                ? "Deleted approval key \(report.keyID)."
                : "Deletion of approval key \(report.keyID) waits for approval request \(report.ccrIdPendingDeletion); the key stays active until then.") + "\n"
        }
    }
}
