import ArgumentParser
import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `--audit-dir`: where the token's audit log and checkpoint are kept; `--audit-min-free`: the
/// free space its filesystem must keep for an operation (or, for `serve`, a request) to start.
package struct AuditOptions: ParsableArguments {
    package init() {}

    static let environmentVariable = "FIREBLOCKS_HSM_AUDIT_DIR"
    static let minimumFreeVariable = "FIREBLOCKS_HSM_AUDIT_MIN_FREE"

    @Option(name: .customLong("audit-dir"), help: ArgumentHelp("Where the audit logs are kept (env FIREBLOCKS_HSM_AUDIT_DIR; default $XDG_STATE_HOME/fireblocks-hsm/audit).", valueName: "path"))
    var auditDirectory: String?

    @Option(name: .customLong("audit-min-free"), help: ArgumentHelp("Refuse to start an operation (serve: a request) while the audit directory's filesystem has less free: a size (2GiB, 500MiB, 0 = no check) or a share of it (10%) (env FIREBLOCKS_HSM_AUDIT_MIN_FREE; default 1GiB or 5%, whichever is smaller).", valueName: "size|N%"))
    var minimumFreeText: String?

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

    /// The free space the audit directory's filesystem must keep: the flag, else the
    /// environment variable, else 1 GiB or 5 % of the filesystem, whichever is smaller.
    package func minimumFree(environment: [String: String] = ProcessInfo.processInfo.environment) throws(ValidationError) -> AuditDiskThreshold {
        let example = "a size (2GiB, 500MiB, 1073741824; 0 turns the check off) or a share of the filesystem (10%, 0.5%)"
        if let minimumFreeText {
            guard let threshold = AuditDiskThreshold(parsing: minimumFreeText) else {
                throw ValidationError("--audit-min-free '\(TerminalText.sanitized(minimumFreeText))' is not \(example)")
            }
            return threshold
        }
        if let value = environment[Self.minimumFreeVariable], !value.isEmpty {
            guard let threshold = AuditDiskThreshold(parsing: value) else {
                throw ValidationError("\(Self.minimumFreeVariable)='\(TerminalText.sanitized(value))' is not \(example)")
            }
            return threshold
        }
        return .standard
    }

    /// Refuses a threshold that is not one (a usage error), and makes the one given this
    /// process's: every audit trail the command opens for an operation keeps it
    /// (``AuditDiskThreshold/processWide``). The companion executable parses the same options,
    /// so it keeps the same.
    package func validate() throws {
        AuditDiskThreshold.processWide = try minimumFree()
        // Read once, where appends seal segments: a value that is none would silently mean 2^20.
        if let value = ProcessInfo.processInfo.environment[AuditSegments.recordsVariable], AuditSegments.records(parsing: value) == nil {
            throw ValidationError("\(AuditSegments.recordsVariable) (\(value.count) characters, not shown) is not a whole number of records from 16 to 1073741824")
        }
    }
}
