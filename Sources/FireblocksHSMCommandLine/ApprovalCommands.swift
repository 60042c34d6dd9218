import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

// `approval-key` and `approvals` (Fireblocks' Approvals API, early availability): approval keys
// generated and used on the token, and the requests they approve. Network commands: they run in
// the companion.

/// `--as`: the API key on the token whose API user the approval keys belong to (it signs every
/// request's JWT).
struct ApprovalSignerOptions: ParsableArguments {
    @Option(name: .customLong("as"), help: ArgumentHelp(
        "The API user's signing key on the token (label or pkcs11: URI; default: the profile's key). Its API key (--api-key) is the user's id.",
        valueName: "label|uri"))
    var signer: String?

    func validate() throws {
        guard let signer else { return }
        var key = KeyOptions()
        key.key = signer
        try key.validate()
    }

    func target(_ token: TokenOptions, profile: Profile?) throws -> TokenTarget {
        try token.target(key: signer ?? profile?.key, profile: profile)
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
        usage: "fireblocks-hsm approval-key create [<options>] --key <label>\n[--as <label|uri>] [--algorithm <algorithm>]",
        discussion: """
            The key is made on the token under the key policy (sign-only, sensitive,
            private, never extractable; read back and judged) and its public key is
            registered with POST /v1/management/api_users/{id}/approval_keys for the
            API user whose API key signs (--api-key; keys are registered only for the
            caller's own user). Default ECDSA_SECP256R1; ECDSA_SECP384R1, RSA_PS256
            (--bits 3072 or 4096) and EDDSA_ED25519 (where the token offers CKM_EDDSA).
            A re-run after an interruption takes the key already on the token and does
            not register a public key that is already listed. The registration may wait
            for an approval request (ccrIdPendingRegistration).

            Examples:
              fireblocks-hsm approval-key create --token fb --key approver-1 \\
                  --as ci-bot --api-key "$CI_BOT_API_KEY" --env sandbox
              fireblocks-hsm approval-key create --profile ci-bot --key approver-2 \\
                  --algorithm RSA_PS256 --bits 4096 --json
            """
    )

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("ECDSA_SECP256R1 (default), ECDSA_SECP384R1, RSA_PS256 or EDDSA_ED25519.", valueName: "algorithm"))
    var algorithm = "ECDSA_SECP256R1"

    @Option(help: ArgumentHelp("RSA_PS256 key size: 3072 (default) or 4096.", valueName: "bits"))
    var bits: UInt?

    @Option(help: ArgumentHelp("The name registered (default: the label).", valueName: "name"))
    var name: String?

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
        let profile = try token.loadProfile()
        let report = try await ApprovalOperations.createKey(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            label: approvalKey.key ?? "", choice: try choice(), name: name, observer: Console())
        try output.emit(report) { report in
            let state = report.ccrIdPendingRegistration.isEmpty
                ? "active now" : "pending: approval request \(report.ccrIdPendingRegistration) must be approved first"
            let verb = report.result == "registered" ? "Registered" : "Already registered (nothing sent):"
            return TerminalText.sanitized("\(verb) approval key '\(report.label)' (\(report.algorithm), \(report.key) on the token) for API user \(report.userID): key id \(report.keyID), \(state).") + "\n"
                + "Public key SHA-256: \(report.spkiSHA256)\n"
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

    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

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
        let profile = try token.loadProfile()
        let console = Console()
        let report = try await ApprovalOperations.rotate(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
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

    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let entries = try await ApprovalOperations.listKeys(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport), observer: Console())
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
    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (id == nil) != (approvalKey.key == nil) else { throw ValidationError("give the key's id or --key LABEL (not both)") }
    }

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let entries = try await ApprovalOperations.listKeys(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport), observer: Console())
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
            ].map { [$0[0], TerminalText.sanitized($0[1])] }) + TerminalText.sanitized(entry.key.approvalApiPublicKey.publicKeyPem, keepNewlines: true)
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
    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
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
        let profile = try token.loadProfile()
        let result = try await ApprovalOperations.deleteKey(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            keyID: id, label: approvalKey.key, observer: Console())
        try output.emit(Report(keyID: result.keyID, ccrIdPendingDeletion: result.ccrIdPendingDeletion, requestID: result.requestID)) { report in
            TerminalText.sanitized(report.ccrIdPendingDeletion.isEmpty
                ? "Deleted approval key \(report.keyID)."
                : "Deletion of approval key \(report.keyID) waits for approval request \(report.ccrIdPendingDeletion); the key stays active until then.") + "\n"
        }
    }
}

package struct ApprovalsCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List, show, approve (signed on the token) and reject pending approval requests (early availability).",
        subcommands: [ApprovalsListCommand.self, ApprovalsShowCommand.self, ApprovalsApproveCommand.self, ApprovalsRejectCommand.self,
                      ApprovalsWatchCommand.self]
    )
}

struct ApprovalsListCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the approval requests the API user may act on (GET /v1/approvals, every page).",
        discussion: """
            Examples:
              fireblocks-hsm approvals list --profile ci-bot
              fireblocks-hsm approvals list --profile ci-bot --include-user-approved --json
            """
    )

    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Flag(name: .customLong("include-user-approved"), help: "Also list requests this user approved that are still pending overall.")
    var includeUserApproved = false

    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let items = try await ApprovalOperations.list(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            includeUserApproved: includeUserApproved, observer: Console())
        try output.emit(items) { items in
            if items.isEmpty { return "No approval requests.\n" }
            return TextReports.table([["REQUEST ID", "TYPE", "EXPIRES", "YOUR STATUS", "QUORUM"]] + items.map { item in
                let payload = item.payload
                return [payload?.requestId ?? "(unreadable payload)", payload?.requestType ?? "-",
                        payload?.expiresAt.map { ApprovalText.time(seconds: String($0)) } ?? "-", item.userStatus,
                        ApprovalText.quorum(item.quorumStatus)].map { TerminalText.sanitized($0, limit: 80) }
            })
        }
    }
}

struct ApprovalsShowCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one approval request: its fields, its request data readable, and the SHA-256 of the exact payload.",
        discussion: """
            --json prints the item as the API gave it (requestPayload unchanged).

            Examples:
              fireblocks-hsm approvals show 5e0c…-… --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try ApprovalText.validateID(id) }

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let item = try await ApprovalOperations.show(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            requestID: id, observer: Console())
        try output.emit(item) { item in ApprovalText.describe(item) }
    }
}

struct ApprovalsApproveCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a request: its exact requestPayload is signed on the token with the approval key.",
        usage: "fireblocks-hsm approvals approve [<options>] <request-id> --key <label>",
        discussion: """
            The request is read first: an expired one, or one whose payload names another
            request, is refused before the token signs. The payload's bytes are signed as
            received (never re-serialized) and the signature is sent base64url with the
            key's registered id. The audit record holds the request id, its type and the
            payload's SHA-256.

            Examples:
              fireblocks-hsm approvals approve 5e0c…-… --key approver-1 --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try ApprovalText.validateID(id)
        guard approvalKey.key != nil else { throw ValidationError("give the approval key that signs: --key LABEL") }
    }

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let report = try await ApprovalOperations.approve(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            requestID: id, label: approvalKey.key ?? "", observer: Console())
        try output.emit(report) { report in
            TerminalText.sanitized("Approved \(report.requestID) (\(report.requestType)) with approval key '\(report.keyLabel ?? "")' [X-Request-ID: \(report.xRequestID ?? "none")].") + "\n"
                + "Payload SHA-256: \(report.payloadSHA256)\n"
        }
    }
}

struct ApprovalsRejectCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Reject a request (the reason is kept in the audit log; the API takes none).",
        usage: "fireblocks-hsm approvals reject [<options>] <request-id> --reason <text>",
        discussion: """
            Examples:
              fireblocks-hsm approvals reject 5e0c…-… --reason "not in the change plan" \\
                  --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @Option(help: ArgumentHelp("Why (1 to 1024 characters; recorded in the audit log).", valueName: "text"))
    var reason: String

    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try ApprovalText.validateID(id)
        guard (1...1024).contains(reason.count), !reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("--reason is 1 to 1024 characters without control characters (it has \(reason.count))")
        }
    }

    func run(network: Network) async throws {
        let profile = try token.loadProfile()
        let report = try await ApprovalOperations.reject(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            requestID: id, reason: reason, observer: Console())
        try output.emit(report) { report in
            TerminalText.sanitized("Rejected \(report.requestID) (\(report.requestType)) [X-Request-ID: \(report.xRequestID ?? "none")].") + "\n"
        }
    }
}

struct ApprovalsWatchCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "The automated approver: decide each pending request by a written policy (approve, reject, or leave it for people).",
        usage: "fireblocks-hsm approvals watch [<options>] --policy <path> --key <label>\n[--once] [--interval <duration>]",
        discussion: """
            Polls GET /v1/approvals (every --interval, ±20% jitter, slower while the API
            answers 429 or 5xx) until SIGTERM or SIGINT; --once makes one pass. Each request
            not decided before is judged by the approval policy (docs/approvals.md: rules on
            requestType and fields of requestData, exact decimal amounts; the first rule
            that matches decides, else 'default'); an expired one is left. The decision is
            written to the state directory before anything is signed or sent, so a request
            is never decided or signed twice, across restarts too. Approvals are signed on
            the token with --key; every decision, skips included, is an audit record naming
            the rule. The policy file must pass the trust rule for configuration.

            Examples:
              fireblocks-hsm approvals watch --policy approvals.yaml --key approver-1 \\
                  --profile ci-bot --interval 30s
              fireblocks-hsm approvals watch --policy approvals.yaml --key approver-1 \\
                  --profile ci-bot --once --json
            """
    )

    @Option(help: ArgumentHelp("The approval policy (YAML).", valueName: "path"))
    var policy: String

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var signer: ApprovalSignerOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Flag(help: "One pass, then exit.")
    var once = false

    @Option(help: ArgumentHelp("Time between passes (±20% jitter).", valueName: "duration"))
    var interval = "30s"

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard approvalKey.key != nil else { throw ValidationError("give the approval key that signs: --key LABEL") }
        let seconds = try DurationText.seconds(interval, flag: "--interval")
        guard seconds >= 1 else { throw ValidationError("--interval must be at least 1s") }
    }

    func run(network: Network) async throws {
        let (judge, sha256) = try network.policies.approvalJudge(path: policy)
        let profile = try token.loadProfile()
        let console = Console()
        // SIGINT and SIGTERM end the loop after the pass under way (systemd's stop).
        let stopped = StopFlag()
        let signals = once ? [] : [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stopped.set() }
            source.resume()
            return source
        }
        console.note(TerminalText.sanitized("approvals watch: policy \(policy) (sha256 \(sha256))\(once ? ", one pass" : ", every \(interval)")"))
        let json = output.json
        let total = try await ApprovalOperations.watch(
            token: try signer.target(token, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            label: approvalKey.key ?? "", interval: try DurationText.seconds(interval, flag: "--interval"), once: once, judge: judge,
            shouldStop: { stopped.isSet }, observer: console) { pass in
                guard !json else { return }
                for decision in pass.decided {
                    console.output(TerminalText.sanitized("\(decision.requestId) \(decision.requestType): \(decision.decision) by rule '\(decision.rule)' (\(decision.state))") + "\n")
                }
            }
        if json { console.output(try JSONOutput.encode(total)) }
        withExtendedLifetime(signals) {}
    }
}

/// A flag set once, from a signal handler's queue.
final class StopFlag: Sendable {
    private let flag = Mutex(false)
    var isSet: Bool { flag.withLock { $0 } }
    func set() { flag.withLock { $0 = true } }
}

/// Text for approval reports.
enum ApprovalText {
    static func validateID(_ id: String) throws {
        do { _ = try FireblocksClient.checkedApprovalID(id, what: "a request id") } catch { throw ValidationError(error.reason) }
    }

    /// Epoch seconds (as the API gives them, a string) as an ISO 8601 time; "never" for 0.
    static func time(seconds text: String) -> String {
        guard let seconds = Int64(text) else { return text }
        if seconds == 0 { return "never" }
        guard seconds > 0, seconds < 253_402_300_800 else { return text }
        return Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }

    static func quorum(_ status: QuorumStatus?) -> String {
        guard let status else { return "-" }
        guard let quorum = status.quorum, let threshold = quorum.threshold, let count = quorum.currentApprovalCount else { return status.requestStatus }
        return "\(status.requestStatus) \(count)/\(threshold)"
    }

    static func describe(_ item: ApprovalRequestItem) -> String {
        let digest = ApprovalOperations.payloadSHA256(item)
        guard let payload = item.payload else {
            return "The requestPayload is not the documented JSON; as received:\n" + TerminalText.sanitized(item.requestPayload, keepNewlines: true) + "\n"
                + "Payload SHA-256: \(digest)\n"
        }
        var rows = [["Request id", payload.requestId], ["Type", payload.requestType]]
        if let timestamp = payload.requestTimestamp { rows.append(["Requested", time(seconds: String(timestamp / 1000))]) }
        if let expires = payload.expiresAt { rows.append(["Expires", time(seconds: String(expires))]) }
        rows += [["Your status", item.userStatus], ["Quorum", quorum(item.quorumStatus)], ["Payload SHA-256", digest]]
        var text = TextReports.table(rows.map { [$0[0], TerminalText.sanitized($0[1])] })
        if let data = payload.requestData {
            text += "Request data:\n" + TerminalText.sanitized(render(data, indent: "  "), limit: 64 * 1024, keepNewlines: true) + "\n"
        }
        return text
    }

    /// A JSON value as indented lines (keys sorted, numbers exactly as sent).
    static func render(_ value: PayloadValue, indent: String) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return String(flag)
        case .number(let text): return text
        case .string(let text): return text.debugDescription
        case .array(let items):
            if items.isEmpty { return "[]" }
            return items.map { "\n" + indent + "- " + render($0, indent: indent + "  ") }.joined()
        case .object(let fields):
            if fields.isEmpty { return "{}" }
            return fields.keys.sorted().map { "\n" + indent + $0 + ": " + render(fields[$0] ?? .null, indent: indent + "  ") }.joined()
        }
    }
}
