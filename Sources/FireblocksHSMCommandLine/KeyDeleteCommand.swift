import ArgumentParser
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

struct KeyDeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a key pair (both halves), or the lone public half an interrupted generation left.",
        discussion: """
            Shows what it will destroy (each half, its id and fingerprint) and asks;
            --yes skips the question (needed without a terminal). A key this machine
            recorded as backing an API user is refused unless --force: that user could
            never sign again.

            Examples:
              fireblocks-hsm key delete --token fb --key old-bot
              fireblocks-hsm key delete \\
                  --key 'pkcs11:token=fb;object=ci-bot;id=%5f%3c' --yes --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions

    @Flag(help: "Do not ask for confirmation.")
    var yes = false

    @Flag(help: "Delete even a key recorded as backing an API user.")
    var force = false

    @OptionGroup var state: StateOptions
    @OptionGroup var audit: AuditOptions
    @OptionGroup var output: OutputOptions

    struct Report: Encodable {
        let deleted: Bool
        let plan: KeyDeletion.Plan
    }

    func run() throws {
        let console = Console()
        let profile = try token.loadProfile()
        let deletion = try KeyDeletion.plan(target: try token.target(key: key.key, profile: profile), stateDirectory: state.directory,
                                             auditDirectory: audit.directory(profile: profile), observer: console)
        let plan = deletion.plan
        var lines = ["Token '\(plan.token)' (serial \(plan.tokenSerial)): deleting"]
        for item in plan.items {
            lines.append("  \(item.kind) key '\(item.label)' id \(item.id.isEmpty ? "-" : item.id) SHA-256 \(item.fingerprintSHA256 ?? "-")")
        }
        if !plan.backs.isEmpty {
            lines.append("  recorded as backing API user \(plan.backs.joined(separator: ", "))")
        }
        lines.forEach(console.diagnostic)
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
