import ArgumentParser
import FireblocksAPI
import FireblocksHSM

struct APIUserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-user",
        abstract: "Create and list API users, signing with an admin key on the token.",
        subcommands: [APIUserCreateCommand.self, APIUserListCommand.self]
    )
}

struct APIUserCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an API user from its CSR (POST /v1/management/api_users), safely.",
        discussion: """
            The CSR is parsed and its self-signature checked first; a CSR whose key
            already backs another API user created from this machine is refused
            (--allow-key-reuse overrides). The user list is read before and after: the
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

    @OptionGroup var output: OutputOptions

    func run() async throws {
        let profile = try token.loadProfile()
        let apiTarget = try api.target(profile: profile, auditDirectory: audit.directory(profile: try token.loadProfile()))
        let role = try APIUserRole(validating: role)
        let (pem, _) = try APIOperations.readCSR(path: csr)
        let body = try CreateAPIUser(role: role, name: name, csrPem: pem, coSignerSetupType: creation.coSignerSetupType,
                                     coSignerSetupIsFirstUser: creation.coSignerSetupIsFirstUser)
        let report = try await APIOperations.createAPIUser(
            token: try token.target(key: key.key ?? profile?.key, profile: profile), api: apiTarget, user: body,
            idempotencyKey: creation.idempotencyKey, allowKeyReuse: allowKeyReuse, observer: Console())
        try output.emit(report) { report in
            let verb = report.result == "submitted" ? "Submitted" : "Already submitted by an earlier run (nothing sent now):"
            return TerminalText.sanitized("\(verb) API user '\(report.name)' (\(report.role)) at \(report.baseURL) [X-Request-ID: \(report.requestID ?? "none")]. An admin quorum approves it in the Console.") + "\n"
                + TerminalText.sanitized("API user id: " + TextReports.userIdentification(report)) + "\n"
        }
    }
}

struct APIUserListCommand: AsyncParsableCommand {
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

    func run() async throws {
        let profile = try token.loadProfile()
        let (users, _) = try await APIOperations.listAPIUsers(
            token: try token.target(key: key.key ?? profile?.key, profile: profile), api: try api.target(profile: profile, auditDirectory: audit.directory(profile: try token.loadProfile())),
            observer: Console())
        try output.emit(users) { users in
            if users.isEmpty { return "No API users.\n" }
            return TextReports.apiUsers(users)
        }
    }
}
