#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import FireblocksAPI
import FireblocksHSM
import TokenKeys

package struct OnboardSubcommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "onboard",
        abstract: "The whole onboarding: key on the token, CSR, and (with --submit) the API user.",
        usage: "fireblocks-hsm onboard [<options>] --key <label> --name <name>\n--role <role>",
        discussion: """
            Generates the key under the key policy, makes and verifies the CSR, and with
            --submit creates the API user through the API, signed by an admin key on the
            same token. A re-run after a failure resumes: the key and CSR of the earlier
            run are reused and the creation is re-sent with the same Idempotency-Key:
            never a second key or user. A re-run that changes --name, --role, the
            co-signer fields or the subject is refused (one key backs one user); two
            runs at once for one key label make one key and one user (the second waits,
            up to --lock-timeout, then resumes).

            After the creation, --pairing-token-out FILE issues the pairing token (0600)
            once the user is PENDING_ACTIVATION, and --wait-until STATUS waits for the
            user to get there (exit 12 after --timeout). --replaces OLD records that the
            new user succeeds OLD (rotation; retire OLD in the Console afterwards).

            Examples:
              fireblocks-hsm onboard --token fb --key ci-bot --name ci-bot \\
                  --role SIGNER --o "Acme Corp" --cn ci-bot
              fireblocks-hsm onboard --token fb --key ci-bot --name ci-bot \\
                  --role SIGNER --o "Acme Corp" --cn ci-bot --submit --admin-key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm onboard … --submit --pairing-token-out pairing.token \\
                  --wait-until READY --timeout 30m
              fireblocks-hsm onboard --token fb --key ci-bot-2026 --name ci-bot-2026 … \\
                  --submit --replaces ci-bot
            """
    )

    @OptionGroup var token: TokenOptions

    @Option(help: ArgumentHelp("Label of the new API user's key on the token.", valueName: "label"))
    var key: String

    @Option(help: "Modulus size: 2048, 3072 or 4096.")
    var bits: UInt = 4096

    @Option(help: "Name of the new API user.")
    var name: String

    @Option(help: ArgumentHelp("Role of the new API user: \(APIUserRole.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "role"))
    var role: String

    @OptionGroup var subjectOptions: SubjectOptions

    @Option(name: .customLong("csr-out"), help: ArgumentHelp("Where to write the CSR (default: KEY.csr).", valueName: "path"))
    var csrOut: String?

    @Flag(help: "Replace a CSR file that is not this key's.")
    var force = false

    @Flag(help: "Create the API user through the API (needs --admin-key and the API options).")
    var submit = false

    @Option(name: .customLong("admin-key"), help: ArgumentHelp("The admin API user's key on the token (default: the profile's key).", valueName: "label|uri"))
    var adminKey: String?

    @OptionGroup var api: APIOptions

    @OptionGroup var creation: CreationOptions

    @Option(name: .customLong("lock-timeout"), help: ArgumentHelp("Seconds to wait while another run works on the same key label (0: fail at once).", valueName: "seconds"))
    var lockTimeout: Double = 300

    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Where to write the evidence bundle (default: KEY-evidence beside the CSR).", valueName: "dir"))
    var evidence: String?

    @Option(help: ArgumentHelp("The API user this one succeeds (rotation): recorded in the onboarding record, the audit log and the evidence; the summary says how to retire it.", valueName: "name"))
    var replaces: String?

    @Option(name: .customLong("wait-until"), help: ArgumentHelp("After --submit, wait until the new user is PENDING_ACTIVATION, PENDING_DEVICE_PAIRING, PENDING_DEVICE_SETUP or READY (see --timeout, --interval).", valueName: "status"))
    var waitUntil: String?

    @Option(name: .customLong("pairing-token-out"), help: ArgumentHelp("After --submit, once the new user is PENDING_ACTIVATION, issue its pairing token into this file (0600).", valueName: "path"))
    var pairingTokenOut: String?

    @OptionGroup var wait: WaitOptions

    @OptionGroup var output: OutputOptions

    package func validate() throws {
        if !submit, waitUntil != nil || pairingTokenOut != nil || replaces != nil {
            throw ValidationError("'--wait-until', '--pairing-token-out' and '--replaces' need '--submit' (they follow the API user's creation)")
        }
        if let waitUntil { _ = try APIUserStatus(validating: waitUntil) }
        _ = try wait.policy()
        if let replaces, replaces == name { throw ValidationError("'--replaces' names the user being succeeded, not the new one ('\(name)')") }
        guard KeyPolicy.supportedModulusBits.contains(bits) else {
            throw ValidationError("'--bits' must be 2048, 3072 or 4096")
        }
        guard lockTimeout.isFinite, (0...86400).contains(lockTimeout) else {
            throw ValidationError("'--lock-timeout' must be 0 to 86400 seconds")
        }
        if key.lowercased().hasPrefix("pkcs11:") {
            throw ValidationError("'--key' takes the new key's label, not a pkcs11: URI (the key does not exist yet): give a plain label such as 'ci-bot'; select the token with --token")
        }
        if !submit, adminKey != nil || creation.idempotencyKey != nil {
            throw ValidationError("'--admin-key' and '--idempotency-key' only make sense with '--submit'")
        }
    }

    package func run(network: Network) async throws {
        // onboard always runs in the companion executable (a NetworkCommand): its start-up is
        // nothing beside a key generation, and no flag decides which binary runs it.
        let transport = submit ? network.transport : nil
        let profile = try token.loadProfile()
        // Everything that can be checked without the token is checked first.
        let subject = try subjectOptions.subject()
        let role = try APIUserRole(validating: role)
        var submission: OnboardRequest.Submission?
        let stateDirectory: URL
        if let transport {
            let apiTarget = try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: transport)
            guard let admin = adminKey ?? profile?.key else {
                throw ValidationError("'--submit' needs '--admin-key' (the admin API user's key on the token)")
            }
            submission = OnboardRequest.Submission(adminKey: try KeySelector(argument: admin), api: apiTarget,
                                                   idempotencyKey: creation.idempotencyKey)
            stateDirectory = apiTarget.stateDirectory
        } else {
            stateDirectory = APITargetResolution.stateDirectoryURL(flag: api.stateDirectory, environment: ProcessInfo.processInfo.environment)
        }
        var request = OnboardRequest(
            keyLabel: key, bits: bits, subject: subject, csrPath: csrOut ?? "\(key).csr", overwriteCSR: force, name: name,
            role: role, coSignerSetupType: creation.coSignerSetupType, coSignerSetupIsFirstUser: creation.coSignerSetupIsFirstUser,
            submission: submission)
        request.lockTimeout = lockTimeout
        request.evidenceDirectory = evidence
        request.replaces = replaces
        request.waitUntil = try waitUntil.map(APIUserStatus.init(validating:))
        request.waitPolicy = try wait.policy()
        request.pairingTokenOut = pairingTokenOut
        let report = try await Onboarding.run(token: try token.target(profile: profile), request: request,
                                                  stateDirectory: stateDirectory, auditDirectory: audit.directory(profile: profile),
                                                  observer: Console())
        try output.emit(report, text: TextReports.onboarded)
    }
}
