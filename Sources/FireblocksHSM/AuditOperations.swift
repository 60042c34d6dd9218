import ErrorShape
import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import TokenKeys
#if canImport(Glibc)
import Glibc
#endif
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
        if existed == nil {
            try audit.requireWritable()
            try audit.requireFreeSpace()
        }
        guard let key = try existed ?? audit.auditKey(create: true) else {
            throw OperationError(.auditUnwritable, "the audit key could not be made")
        }
        return KeyReport(token: opened.token.info.label, label: key.label, spkiSHA256: key.fingerprint,
                         publicKeyPEM: key.publicKey.pemRepresentation, created: existed == nil)
    }

    /// The records, optionally from a time on and of one event.
    public static func show(target: TokenTarget, directory: URL, since: Date?, event: String?,
                            observer: any OperationObserver) throws -> [AuditRecord] {
        try show(target: target, directory: directory, query: AuditQuery(since: since, event: event), observer: observer).map(\.record)
    }

    /// The records `query` selects, each with its line exactly as the log holds it.
    public static func show(target: TokenTarget, directory: URL, query: AuditQuery,
                            observer: any OperationObserver) throws -> [ShownRecord] {
        try AuditReader(target: target, directory: directory, observer: observer).read(query: query).records
    }

    /// A record and its line, byte for byte as it is in the log.
    public struct ShownRecord: Sendable {
        /// The decoded record.
        public let record: AuditRecord
        /// The line, without its newline.
        public let line: [UInt8]
    }

    /// Reads a token's log (its files checked by the trail's trust rule on every read), and
    /// again as it grows: what `audit show` and its follow mode read. Only the bytes appended
    /// since the last read are read, and each record is checked in its place
    /// (``AuditLogFollower``): a log replaced, removed or cut while it is read, or a line that
    /// is not the record belonging at its place, is an error, never skipped.
    public final class AuditReader {
        private let audit: AuditService
        private let follower: AuditLogFollower

        /// Opens the token (no login) and finds its log.
        public init(target: TokenTarget, directory: URL, observer: any OperationObserver) throws {
            let opened = try OpenedToken.open(target, readWrite: false, logIn: false, observer: observer)
            audit = AuditService(opened: opened, directory: directory, observer: observer)
            follower = AuditLogFollower(audit.log)
        }

        /// The archived segments passed over so far (their records are elsewhere): each one's
        /// first record and count.
        public var archivedPassed: [(first: Int, count: Int)] { follower.archivedPassed }

        /// What one read gives.
        public struct Batch: Sendable {
            /// The records the query selects among those read.
            public let records: [ShownRecord]
            /// How many records were read (0: none was appended since, the reader is caught up).
            public let read: Int
        }

        /// The records `query` selects among those appended since the last call (from the first
        /// record, the first time), about `limit` bytes of lines at most.
        public func next(query: AuditQuery, limit: Int = 1 << 20) throws -> Batch {
            try audit.log.requireTrustedFiles()
            let lines = try follower.next(limit: limit)
            let first = follower.records - lines.count
            let decoder = JSONDecoder()
            var shown: [ShownRecord] = []
            for (position, line) in lines.enumerated() {
                guard let record = try? decoder.decode(AuditRecord.self, from: Data(line)) else {
                    throw OperationError(.auditInconsistent, "record \(first + position) of \(follower.path) is not an audit record this tool can read",
                                         facts: ErrorFacts(path: follower.path, recordIndex: first + position))
                }
                if query.matches(record) { shown.append(ShownRecord(record: record, line: line)) }
            }
            return Batch(records: shown, read: lines.count)
        }

        /// The records `query` selects among all those not read before (all of them the first
        /// time); `changed` is false when none was appended since.
        public func read(query: AuditQuery) throws -> (records: [ShownRecord], changed: Bool) {
            var records: [ShownRecord] = []
            var changed = false
            while true {
                let batch = try next(query: query)
                if batch.read == 0 { return (records, changed) }
                records += batch.records
                changed = true
            }
        }
    }

    /// The latest signed checkpoint (the token's), as a C2SP signed note.
    public static func checkpoint(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> String? {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).tokenCheckpoint()?.formatted
    }

    /// Checks the log, against the token's checkpoint and an auditor's (only the records after
    /// it, unless `full`).
    public static func verify(target: TokenTarget, directory: URL, external: String?, full: Bool = false,
                              observer: any OperationObserver) throws -> AuditService.Verification {
        let note = try external.map { try SignedNote(parsing: $0) }
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).verify(external: note, full: full)
    }

    /// What `audit proof --index` reports.
    public struct InclusionProofReport: Codable, Sendable, Equatable {
        /// The record's index, and the tree it is proven in (the token's anchored checkpoint).
        public let index: Int
        public let treeSize: Int
        /// The anchored root (base64).
        public let rootBase64: String
        /// The record's line, exactly as the log holds it (base64): the leaf.
        public let recordBase64: String
        /// SHA-256(0x00 ‖ record), hex.
        public let leafHashHex: String
        /// The RFC 6962 audit path, leaf's sibling first (base64).
        public let path: [String]
        /// The signed checkpoint (C2SP signed note).
        public let checkpoint: String
        /// The whole c2sp.org/tlog-proof.
        public let tlogProof: String
        /// Distinct tiles read.
        public let tilesRead: Int
    }

    /// The inclusion proof of record `index` in the token's anchored tree, from the tiles,
    /// verified before it is returned.
    public static func inclusionProof(target: TokenTarget, directory: URL, index: Int,
                                      observer: any OperationObserver) throws -> InclusionProofReport {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        let proven = try AuditService(opened: opened, directory: directory, observer: observer).inclusionProof(index: index)
        let tree = try Checkpoint(noteText: proven.proof.checkpoint.text)
        return InclusionProofReport(index: index, treeSize: tree.treeSize, rootBase64: Data(tree.rootHash).base64EncodedString(),
                                    recordBase64: Data(proven.record).base64EncodedString(),
                                    leafHashHex: hex(MerkleTree.leafHash(proven.record)),
                                    path: proven.proof.path.map { Data($0).base64EncodedString() },
                                    checkpoint: proven.proof.checkpoint.formatted, tlogProof: proven.proof.formatted,
                                    tilesRead: proven.tilesRead)
    }

    /// What `audit proof --consistency` reports.
    public struct ConsistencyProofReport: Codable, Sendable, Equatable {
        /// The older tree: its size and root (base64).
        public let oldSize: Int
        public let oldRootBase64: String
        /// The newer tree.
        public let newSize: Int
        public let newRootBase64: String
        /// PROOF(oldSize, D[newSize]) of RFC 6962 §2.1.2 (base64).
        public let proof: [String]
        /// The token's anchored checkpoint both trees were proven prefixes of.
        public let anchoredSize: Int
        public let checkpoint: String
        /// Distinct tiles read.
        public let tilesRead: Int

        /// The text form: `old SIZE ROOT`, `new SIZE ROOT`, then one base64 hash per line.
        public var text: String {
            "old \(oldSize) \(oldRootBase64)\nnew \(newSize) \(newRootBase64)\n" + proof.map { $0 + "\n" }.joined()
        }
    }

    /// The consistency proof between two tree sizes (the newer at most the anchored one,
    /// default it), from the tiles, verified before it is returned.
    public static func consistencyProof(target: TokenTarget, directory: URL, oldSize: Int, newSize: Int?,
                                        observer: any OperationObserver) throws -> ConsistencyProofReport {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        let (proof, anchored) = try AuditService(opened: opened, directory: directory, observer: observer)
            .consistencyProof(oldSize: oldSize, newSize: newSize)
        let base64 = { (hash: [UInt8]) in Data(hash).base64EncodedString() }
        return ConsistencyProofReport(oldSize: proof.oldSize, oldRootBase64: base64(proof.oldRoot), newSize: proof.newSize,
                                      newRootBase64: base64(proof.newRoot), proof: proof.proof.map(base64),
                                      anchoredSize: try Checkpoint(noteText: anchored.text).treeSize, checkpoint: anchored.formatted,
                                      tilesRead: proof.tilesRead)
    }

    /// Rebuilds the tiles from the records (see ``AuditService/rebuildTiles()``).
    public static func rebuildTiles(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> TileRebuildReport {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).rebuildTiles()
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

/// Which audit records to show: every given condition must hold.
public struct AuditQuery: Sendable, Equatable {
    /// From this time on.
    public var since: Date?
    /// Before this time.
    public var until: Date?
    /// Events: each exact (`key.deleted`) or a prefix ending in `*` (`proxy.*`); empty: all.
    public var events: [String]
    /// A key label: the record's key (``AuditRecordSummary/key``) or a label among its facts.
    public var key: String?
    /// An API user's name or id, or the local account that wrote the record.
    public var user: String?

    /// Creates the value from its parts.
    public init(since: Date? = nil, until: Date? = nil, event: String? = nil, events: [String] = [], key: String? = nil, user: String? = nil) {
        self.since = since
        self.until = until
        self.events = events + (event.map { [$0] } ?? [])
        self.key = key
        self.user = user
    }

    /// Whether `record` is selected.
    public func matches(_ record: AuditRecord) -> Bool {
        if !events.isEmpty, !events.contains(where: { pattern in
            pattern.hasSuffix("*") ? record.event.hasPrefix(String(pattern.dropLast())) : record.event == pattern
        }) { return false }
        if since != nil || until != nil {
            guard let time = try? Date(record.time, strategy: .iso8601) else { return false }
            if let since, time < since { return false }
            if let until, time >= until { return false }
        }
        let summary = AuditRecordSummary(record)
        if let key, !summary.keys.contains(key) { return false }
        if let user, !(summary.users.contains(user) || record.actor.user == user) { return false }
        return true
    }
}

/// What a person looks for in a record, read from its facts: the key it concerns, the API
/// user (name or id) and the request URI.
public struct AuditRecordSummary: Sendable, Equatable {
    /// The key's label (the first one a record names).
    public let key: String?
    /// Every key label the record names.
    public let keys: [String]
    /// The API user's name, else its id.
    public let user: String?
    /// Every API user name and id the record names.
    public let users: [String]
    /// The request's URI (API calls, signed JWTs, the proxy's requests).
    public let uri: String?

    /// Reads `record`'s facts.
    public init(_ record: AuditRecord) {
        let facts = record.facts
        func text(_ name: String) -> String? {
            if case .string(let value)? = facts[name], !value.isEmpty { return value }
            return nil
        }
        var keys: [String] = []
        for name in ["key", "label", "keyLabel"] { if let value = text(name) { keys.append(value) } }
        if case .object(let object)? = facts["keyOnToken"], case .string(let label)? = object["label"] { keys.append(label) }
        if case .array(let objects)? = facts["objects"] {
            for case .object(let object) in objects { if case .string(let label)? = object["label"] { keys.append(label) } }
        }
        var seenKeys = Set<String>()
        self.keys = keys.filter { seenKeys.insert($0).inserted }
        key = self.keys.first
        let names = ["name", "apiUserName"].compactMap(text)
        let ids = ["apiUserID", "userID"].compactMap(text)
        users = names + ids
        user = names.first ?? ids.first
        uri = text("uri")
    }
}
