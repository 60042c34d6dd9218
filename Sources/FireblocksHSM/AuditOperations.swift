import ErrorShape
import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys
import TransparencyLog

/// `audit init`, `show`, `checkpoint`, `verify`, `repair`.
public enum AuditOperations {
    /// What `audit init` reports.
    public struct KeyReport: Codable, Sendable, Equatable {
        /// The token.
        public let token: String
        /// The audit key's label.
        public let label: String
        /// SHA-256 of its DER SubjectPublicKeyInfo: what an auditor records.
        public let spkiSHA256: String
        /// Its public key, PEM.
        public let publicKeyPEM: String
        /// Whether this run made it.
        public let created: Bool
    }

    /// Makes the audit key when there is none; reports it either way.
    public static func initialize(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> KeyReport {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        let audit = AuditService(opened: opened, directory: directory, observer: observer)
        let existed = try audit.auditKey(create: false)
        if existed == nil { try audit.requireWritable() }
        guard let key = try existed ?? audit.auditKey(create: true) else {
            throw OperationError(.auditUnwritable, "the audit key could not be made")
        }
        return KeyReport(token: opened.token.info.label, label: key.label, spkiSHA256: key.fingerprint,
                         publicKeyPEM: key.publicKey.pemRepresentation, created: existed == nil)
    }

    /// The records, optionally from a time on and of one event.
    public static func show(target: TokenTarget, directory: URL, since: Date?, event: String?,
                            observer: any OperationObserver) throws -> [AuditRecord] {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: false, observer: observer)
        let audit = AuditService(opened: opened, directory: directory, observer: observer)
        try audit.log.requireTrustedFiles()
        return try audit.log.lines().compactMap { line in
            guard let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)) else { return nil }
            if let event, record.event != event { return nil }
            if let since, let time = try? Date(record.time, strategy: .iso8601), time < since { return nil }
            return record
        }
    }

    /// The latest signed checkpoint (the token's), as a C2SP signed note.
    public static func checkpoint(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> String? {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).tokenCheckpoint()?.formatted
    }

    /// Checks the log, against the token's checkpoint and an auditor's.
    public static func verify(target: TokenTarget, directory: URL, external: String?,
                              observer: any OperationObserver) throws -> AuditService.Verification {
        let note = try external.map { try SignedNote(parsing: $0) }
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).verify(external: note)
    }

    /// Cuts a torn last line off, and records that it did.
    public static func repairTornTail(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> Int {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).repairTornTail()
    }

    /// A person's re-anchoring of the trail (see ``AuditService/reanchor(reason:)``).
    public static func reanchor(target: TokenTarget, directory: URL, reason: String,
                                observer: any OperationObserver) throws -> AuditService.Reanchoring {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).reanchor(reason: reason)
    }
}
