import ArgumentParser
import FireblocksHSM
import TokenKeys
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct KeyDeleteCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a key pair (both halves), or the lone public half an interrupted generation left.",
        usage: "fireblocks-hsm key delete --key <label|uri> [--token <label|uri>] [--yes]\n[--admin-key <label|uri> --api-key <uuid> --env <name>|--base-url <url>]\n[--force] [--json] [<options>]",
        discussion: """
            Shows what it will destroy (each half, its id and fingerprint) and asks;
            --yes skips the question (needed without a terminal).

            A key this machine recorded as backing an API user (onboard --submit,
            api-user create) is deleted only once that user is known to be retired:
            - a successor was onboarded with 'onboard --replaces OLD' (recorded), or
            - with --admin-key and the API options, the API's user list shows the
              user disabled, or no longer lists its recorded id (removed): this is
              recorded in the audit trail (api-user.retired), or
            - an earlier check recorded that (api-user.retired, same id and API):
              no API call is needed.
            Otherwise it is refused before anything is asked (exit 6): that user
            could never sign again. --force deletes it anyway.

            Examples:
              fireblocks-hsm key delete --token fb --key old-bot
              fireblocks-hsm key delete --token fb --key old-bot \\
                  --admin-key admin --api-key "$ADMIN_API_KEY" --env sandbox
              fireblocks-hsm key delete \\
                  --key 'pkcs11:token=fb;object=ci-bot;id=%5f%3c' --yes --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @Option(name: .customLong("admin-key"), help: ArgumentHelp("Ask the API whether the API users the key backs are retired, signing with this admin API user's key on the token (with --api-key and --env|--base-url).", valueName: "label|uri"))
    var adminKey: String?

    @Flag(help: "Delete even a key recorded as backing an API user not known to be retired (that user can never sign again).")
    var force = false

    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    struct Report: Encodable {
        let deleted: Bool
        let plan: KeyDeletion.Plan
    }

    func validate() throws {
        if adminKey == nil, api.apiKey != nil || api.env != nil || api.baseURL != nil {
            throw ValidationError("the API options ask the API whether the key's API users are retired: give '--admin-key' too (the admin API user's key on the token)")
        }
    }

    func run(network: Network) async throws {
        // A network command whether or not the API is asked (no flag decides which binary runs
        // it, as for onboard): the check needs the HTTP stack, and a deletion is no hot path.
        let console = Console()
        let profile = try token.loadProfile()
        let target = try token.target(key: key.key, profile: profile)
        let auditDirectory = audit.directory(profile: profile)
        let apiTarget = try adminKey.map { _ in try api.target(profile: profile, auditDirectory: auditDirectory, transport: network.transport) }
        let stateDirectory = apiTarget?.stateDirectory
            ?? APITargetResolution.stateDirectoryURL(flag: api.stateDirectory, environment: ProcessInfo.processInfo.environment)
        let admin = try adminKey.map(KeySelector.init(argument:))
        let deletion = try await BlockingBridge.run {
            try KeyDeletion.plan(target: target, stateDirectory: stateDirectory, auditDirectory: auditDirectory, observer: console)
        }
        if let admin, let apiTarget {
            try await deletion.checkUpstream(adminKey: admin, api: apiTarget)
        }
        let plan = deletion.plan
        var lines = ["Token '\(plan.token)' (serial \(plan.tokenSerial)): deleting"]
        for item in plan.items {
            lines.append("  \(item.kind) key '\(item.label)' id \(item.id.isEmpty ? "-" : item.id) SHA-256 \(item.fingerprintSHA256 ?? "-")")
        }
        for user in plan.backedUsers {
            let verdict = user.retired.map { "retired: \($0)" }
                ?? "not known to be retired" + (user.upstream.map { " (\($0))" } ?? "")
            lines.append("  recorded as backing API user \(user.description): \(verdict)")
        }
        lines.map { TerminalText.sanitized($0) }.forEach(console.diagnostic)
        // Refused before anything is asked.
        try deletion.checkMayDelete(force: force)
        if !yes {
            guard let answer = console.confirm("Delete \(plan.items.count == 1 ? "this object" : "these \(plan.items.count) objects") for good?") else {
                throw ValidationError("no terminal to confirm on: pass --yes to delete without asking")
            }
            guard answer else {
                console.diagnostic("nothing deleted")
                throw ExitCode(ExitStatus.usage.rawValue)
            }
        }
        try deletion.perform(force: force)
        try output.emit(Report(deleted: true, plan: plan)) { _ in "Deleted \(plan.items.count) object(s).\n" }
    }
}
