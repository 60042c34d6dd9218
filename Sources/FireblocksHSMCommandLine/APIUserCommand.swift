import ArgumentParser
import AuditTrail
import DurableFiles
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

package struct APIUserCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "api-user",
        abstract: "Create, list, show, wait for and pair API users, signing with an admin key on the token.",
        subcommands: [APIUserCreateCommand.self, APIUserListCommand.self, APIUserShowCommand.self, APIUserWaitCommand.self,
                      APIUserPairingTokenCommand.self]
    )
}

struct APIUserCreateCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an API user from its CSR (POST /v1/management/api_users), safely.",
        usage: "fireblocks-hsm api-user create [<options>] --name <name>\n--role <role> --csr <path>",
        discussion: """
            The CSR is parsed and its self-signature checked first; a CSR whose key is
            not on the token (a key in a file) is refused (--allow-key-off-token
            overrides, and the audit record says so); a CSR whose key already backs
            another API user created from this machine is refused (--allow-key-reuse
            overrides). The user list is read before and after: the
            new user's id is printed only when exactly one new listed user has the name
            and role. An Idempotency-Key is generated (unless given) and recorded with
            the exact body in the state directory before the first send; automatic
            retries and re-runs after a crash reuse them, so one intent creates at most
            one user. A request already accepted is not sent again.

            Examples:
              fireblocks-hsm api-user create --token fb --key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox --name ci-bot --role SIGNER \\
                  --csr api_user.csr
              fireblocks-hsm api-user create … --co-signer-setup-type SGX_MACHINE \\
                  --co-signer-first-user
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: "Name of the new API user.")
    var name: String

    @Option(help: ArgumentHelp("Role: \(APIUserRole.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "role"))
    var role: String

    @Option(help: ArgumentHelp("The new user's CSR (PEM), e.g. from 'fireblocks-hsm csr'.", valueName: "path"))
    var csr: String

    @OptionGroup var creation: CreationOptions

    @Flag(name: .customLong("allow-key-reuse"), help: "Create the user even if the CSR's key already backs another API user created from this machine (warns).")
    var allowKeyReuse = false

    @Flag(name: .customLong("allow-key-off-token"), help: "Create the user even if the CSR's key is not on the token (e.g. made with 'openssl req -nodes'); the audit record says so.")
    var allowKeyOffToken = false

    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        let apiTarget = try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport)
        let role = try APIUserRole(validating: role)
        let (pem, _) = try APIOperations.readCSR(path: csr)
        let body = try CreateAPIUser(role: role, name: name, csrPem: pem, coSignerSetupType: creation.coSignerSetupType,
                                     coSignerSetupIsFirstUser: creation.coSignerSetupIsFirstUser)
        let report = try await APIOperations.createAPIUser(
            token: try token.target(key: key.key ?? profile?.key, profile: profile), api: apiTarget, user: body,
            idempotencyKey: creation.idempotencyKey, allowKeyReuse: allowKeyReuse, allowKeyOffToken: allowKeyOffToken, observer: Console())
        try output.emit(report) { report in
            let verb = report.result == "submitted" ? "Submitted" : "Already submitted by an earlier run (nothing sent now):"
            return TerminalText.sanitized("\(verb) API user '\(report.name)' (\(report.role)) at \(report.baseURL) [X-Request-ID: \(report.requestID ?? "none")]. An admin quorum approves it in the Console.") + "\n"
                + TerminalText.sanitized("API user id: " + TextReports.userIdentification(report)) + "\n"
        }
    }
}

struct APIUserListCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the workspace's API users (GET /v1/management/api_users).",
        discussion: """
            Examples:
              fireblocks-hsm api-user list --token fb --key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm api-user list --profile sandbox-admin --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        let (users, _) = try await APIOperations.listAPIUsers(
            token: try token.target(key: key.key ?? profile?.key, profile: profile), api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport),
            observer: Console())
        try output.emit(users) { users in
            if users.isEmpty { return "No API users.\n" }
            return TextReports.apiUsers(users)
        }
    }
}

/// `NAME` or `--id UUID`: which API user.
struct UserSelection: ParsableArguments {
    @Argument(help: ArgumentHelp("The API user's name (must be unique; else give --id).", valueName: "name"))
    var name: String?

    @Option(help: ArgumentHelp("The API user's id (its API key).", valueName: "uuid"))
    var id: String?

    func validate() throws {
        guard (name == nil) != (id == nil) else { throw ValidationError("name the API user, or give --id UUID (not both)") }
    }

    var lookup: APIUserLookup { id.map(APIUserLookup.id) ?? .name(name ?? "") }
}

struct APIUserShowCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one API user: id, role, status, enabled, whitelisted IPs.",
        discussion: """
            By name (several users of that name: they are listed and the command fails;
            give --id) or by id. Reads GET /v1/management/api_users and GET
            …/{id}/whitelist_ip_addresses (an empty whitelist means any IP may call).

            Examples:
              fireblocks-hsm api-user show ci-bot --token fb --key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm api-user show --id 0b9f…-… --profile sandbox-admin --json
            """
    )

    @OptionGroup var user: UserSelection
    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        let details = try await APIUserLifecycle.show(
            token: try token.target(key: key.key ?? profile?.key, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport), lookup: user.lookup, observer: Console())
        try output.emit(details) { details in
            TextReports.table([
                ["Name", details.name], ["Id", details.id], ["Role", details.role ?? "-"], ["Status", details.status ?? "-"],
                ["Enabled", details.enabled.map(String.init) ?? "-"], ["Type", details.userType ?? "-"],
                ["Whitelisted IPs", details.anyIPAllowed ? "none (any IP may call as this user)" : details.whitelistedIPs.joined(separator: ", ")],
            ].map { [$0[0], TerminalText.sanitized($0[1])] })
        }
    }
}

/// `--timeout` and `--interval`.
struct WaitOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Give up after this long (30s, 15m, 1h; exit 12).", valueName: "duration"))
    var timeout: String = "30m"

    @Option(help: ArgumentHelp("Time between polls (±20% jitter; longer while the API answers 429 or 5xx).", valueName: "duration"))
    var interval: String = "15s"

    func policy() throws -> APIUserLifecycle.WaitPolicy {
        let timeout = try DurationText.seconds(timeout, flag: "--timeout")
        let interval = try DurationText.seconds(interval, flag: "--interval")
        guard interval >= 0.05 else { throw ValidationError("--interval must be at least 50 ms") }
        return APIUserLifecycle.WaitPolicy(timeout: timeout, interval: interval)
    }
}

/// Prints a wait's events: a line per status change (with the time), and on a terminal a
/// progress line rewritten in place.
final class WaitPrinter: Sendable {
    private let name: String
    private let target: String
    private let progress: Bool
    private let showing = Mutex(false)

    init(name: String, target: String) {
        self.name = name
        self.target = target
        progress = Console().standardErrorIsTerminal
    }

    func handle(_ event: APIUserWaitEvent) {
        switch event {
        case .status(let user, let at):
            line("\(AuditRecord.timestamp(at)) \(user.name) (\(user.id)): \(user.status ?? "?")")
        case .notListed(let elapsed):
            transient("waiting for \(name) to be listed (a creation awaiting approval is not) · \(Int(elapsed)) s")
        case .unchanged(let user, let elapsed, let next):
            transient("waiting for \(target): \(user.name) is \(user.status ?? "?") · \(Int(elapsed)) s · next check in \(Int(next.rounded())) s")
        case .backingOff(let seconds, let reason):
            line("\(AuditRecord.timestamp(Date())) \(reason): slowing down, next check in \(Int(seconds.rounded())) s")
        }
    }

    func finish() {
        if showing.withLock({ $0 }) { Console().diagnostic(bytes: Array("\r\u{1B}[K".utf8)) }
    }

    private func line(_ text: String) {
        finish()
        showing.withLock { $0 = false }
        Console().diagnostic(text)
    }

    private func transient(_ text: String) {
        guard progress else { return }
        showing.withLock { $0 = true }
        Console().diagnostic(bytes: Array(("\r\u{1B}[K" + TerminalText.sanitized(text)).utf8))
    }
}

struct APIUserWaitCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until an API user reaches a status (approval, pairing, READY).",
        discussion: """
            Polls GET /v1/management/api_users every --interval (with jitter), prints each
            status change with its time, and exits 0 once the user has the status (or a
            later one). Exit 12 after --timeout; exit 9 at once if the user disappears or
            is disabled. A user awaiting the admin quorum's approval is not listed yet:
            that is waited out too. 429 and 5xx answers slow the polling down and never
            end the wait.

            Examples:
              fireblocks-hsm api-user wait ci-bot --until READY --timeout 30m \\
                  --token fb --key admin --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm api-user wait --id 0b9f…-… --until PENDING_ACTIVATION \\
                  --interval 5s …
            """
    )

    @OptionGroup var user: UserSelection

    @Option(help: ArgumentHelp("PENDING_ACTIVATION, PENDING_DEVICE_PAIRING, PENDING_DEVICE_SETUP or READY.", valueName: "status"))
    var until: String

    @OptionGroup var wait: WaitOptions
    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        _ = try APIUserStatus(validating: until)
        _ = try wait.policy()
    }

    func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        let target = try APIUserStatus(validating: until)
        let printer = WaitPrinter(name: "\(user.lookup)", target: target.rawValue)
        defer { printer.finish() }
        let reached = try await APIUserLifecycle.wait(
            token: try token.target(key: key.key ?? profile?.key, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport), lookup: user.lookup,
            until: target, policy: try wait.policy(), observer: Console(), onEvent: { printer.handle($0) })
        printer.finish()
        try output.emit(reached) { user in
            TerminalText.sanitized("\(user.name) (\(user.id)) is \(user.status ?? "?")") + "\n"
        }
    }
}

struct APIUserPairingTokenCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "pairing-token",
        abstract: "Issue an API user's pairing token (for its co-signer device); the token is a secret.",
        discussion: """
            POST /v1/management/api_users/{id}/pairing_token with an Idempotency-Key
            (--idempotency-key, or one derived from the user's id, so that a re-run after
            a crash or a lost answer gets the same token). Only a user in
            PENDING_ACTIVATION gets one (otherwise: exit 9, with the user's current
            status). The token is valid for one hour: it is written to
            --out (created 0600; an existing file needs --force), or to stdout only when
            stdout is not a terminal or --show is given. It is never logged, and the audit
            log records only that one was issued.

            Examples:
              fireblocks-hsm api-user pairing-token ci-bot --out pairing.token \\
                  --token fb --key admin --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm api-user pairing-token ci-bot … | cosigner pair --token-stdin
            """
    )

    @OptionGroup var user: UserSelection
    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Write the token to this file (0600).", valueName: "path"))
    var out: String?

    @Flag(help: "Overwrite --out if it exists.")
    var force = false

    @Flag(help: "Print the token on stdout even when stdout is a terminal.")
    var show = false

    @Option(name: .customLong("idempotency-key"), help: ArgumentHelp("Idempotency-Key (at most 40 characters; default: derived from the user's id).", valueName: "key"))
    var idempotencyKey: String?

    @Flag(help: "Print {userId, name, status, idempotencyKey, requestID, out} as JSON (the token only in --out).")
    var json = false

    func validate() throws {
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
        if json, out == nil { throw ValidationError("--json needs --out: the JSON document never carries the token") }
        if out == nil, !show, Console().standardOutputIsTerminal {
            throw ValidationError("the pairing token is a secret: pass --out FILE (written 0600), pipe stdout, or pass --show to print it on this terminal")
        }
    }

    func run(network: Network) async throws {
        let transport = network.transport
        let profile = try token.loadProfile()
        if let out, !force, FileManager.default.fileExists(atPath: out) {
            throw CommandLineError("cannot write \(out): it already exists; pass --force to replace it", status: .fileError)
        }
        let issue = try await APIUserLifecycle.issuePairingToken(
            token: try token.target(key: key.key ?? profile?.key, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport), lookup: user.lookup,
            idempotencyKey: idempotencyKey, observer: Console())
        let console = Console()
        if let out {
            try AtomicFile.write(Array((issue.pairingToken + "\n").utf8), to: out, overwrite: force, mode: 0o600)
            console.diagnostic("pairing token for '\(issue.user.name)' written to \(out) (0600; valid one hour); status now \(issue.status ?? "?") [X-Request-ID: \(issue.requestID ?? "none")]")
            if json {
                let document: [String: String?] = ["userId": issue.user.id, "name": issue.user.name, "status": issue.status,
                                                   "idempotencyKey": issue.idempotencyKey, "requestID": issue.requestID, "out": out]
                console.output(try JSONOutput.encode(document))
            }
        } else {
            // Checked as printable ASCII when it arrived; escaped all the same before a terminal.
            console.output(TerminalText.sanitized(issue.pairingToken, limit: FireblocksClient.maximumPairingTokenLength) + "\n")
            console.diagnostic("pairing token for '\(issue.user.name)' issued (valid one hour); status now \(issue.status ?? "?") [X-Request-ID: \(issue.requestID ?? "none")]")
        }
    }
}
