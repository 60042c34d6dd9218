import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Grows a token's audit log for measurements (`bench audit-fill`): records appended through
/// the same appender the proxy uses, then sealed by one signed checkpoint. Only for throwaway
/// benchmark tokens: every record stays in the log.
public enum AuditBenchmark {
    /// What `bench audit-fill` reports.
    public struct Report: Codable, Sendable, Equatable {
        /// Records appended now.
        public let appended: Int
        /// Records in the log afterwards.
        public let records: Int
        /// Seconds the appends and the seal took.
        public let seconds: Double
    }

    /// Appends `records` filler records (event `bench.filler`) and seals them.
    public static func fill(target: TokenTarget, directory: URL, records: Int, observer: any OperationObserver) throws -> Report {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        let audit = try AuditService.prepare(opened: opened, directory: directory, observer: observer)
        let appender = try audit.appender()
        let started = Date()
        var done = 0
        while done < records {
            let batch = min(1000, records - done)
            let entries = (0..<batch).map { AuditEntry(event: "bench.filler", facts: ["n": .integer(done + $0)]) }
            try appender.append(entries, sync: false)
            done += batch
        }
        try audit.seal(appender)
        return Report(appended: records, records: appender.size, seconds: Date().timeIntervalSince(started))
    }
}
