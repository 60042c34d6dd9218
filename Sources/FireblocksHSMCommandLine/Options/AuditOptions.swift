import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `--audit-dir`: where the token's audit log and checkpoint are kept.
package struct AuditOptions: ParsableArguments {
    package init() {}

    static let environmentVariable = "FIREBLOCKS_HSM_AUDIT_DIR"

    @Option(name: .customLong("audit-dir"), help: ArgumentHelp("Where the audit logs are kept (env FIREBLOCKS_HSM_AUDIT_DIR; default $XDG_STATE_HOME/fireblocks-hsm/audit).", valueName: "path"))
    var auditDirectory: String?

    /// The flag, the environment variable, the profile's `auditDir`,
    /// `$XDG_STATE_HOME/fireblocks-hsm/audit`, or `~/.local/state/fireblocks-hsm/audit`.
    package func directory(profile: Profile?) -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let auditDirectory { return URL(fileURLWithPath: auditDirectory) }
        if let value = environment[Self.environmentVariable], !value.isEmpty { return URL(fileURLWithPath: value) }
        if let value = profile?.auditDir, !value.isEmpty { return URL(fileURLWithPath: value) }
        let base = environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path) + "/.local/state"
        return URL(fileURLWithPath: base).appendingPathComponent("fireblocks-hsm/audit")
    }
}
