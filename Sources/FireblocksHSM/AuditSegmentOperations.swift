import AuditTrail
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import TransparencyLog

/// A range of records whose segment was archived (`audit archive`), as a verification found it.
public struct ArchivedRange: Codable, Sendable, Equatable {
    /// The first record and the count.
    public let first: Int
    public let count: Int
    /// Where it was moved, and its name there.
    public let to: String
    public let file: String
    /// Its SHA-256, as recorded.
    public let sha256: String
    /// True when the segment was put back and read (and found to be the file archived); false
    /// when its records were not read: the tree was computed from the hashes kept for them.
    public let putBack: Bool
}

/// What `audit archive` did.
public struct ArchiveReport: Codable, Sendable, Equatable {
    /// The segments moved (first record, count, SHA-256, file name there).
    public let segments: [ArchivedRange]
    /// Where they went.
    public let to: String
    /// The (last) `audit.archived` record's index: one is made per 64 segments (nil when
    /// nothing was archived).
    public let recordIndex: Int?
}

extension AuditService {
    /// The archived segments of the log, and whether each is back in place.
    public func archivedRanges() throws -> [ArchivedRange] {
        try log.segments().sealed.compactMap { segment in
            guard let stub = segment.stub else { return nil }
            return ArchivedRange(first: segment.first, count: segment.count, to: stub.to, file: stub.file, sha256: stub.sha256,
                                 putBack: segment.path != nil)
        }
    }

    /// Cuts the log into sealed segments in place (see ``AuditLog/splitIntoSegments(anchor:)``)
    /// once it is found to extend the token's anchored checkpoint, and records
    /// `audit.segmented`. Every root stays what it was.
    public func splitIntoSegments() throws -> SegmentSplitReport {
        guard let key = try auditKey(create: false) else {
            throw OperationError(.auditAnchorMissing, "the token has no audit key: there is no anchored checkpoint to check the log against before it is cut")
        }
        let anchored = try verifiedAnchor(key: key)
        try requireFreeSpace()
        let report = try log.splitIntoSegments(anchor: anchored.checkpoint)
        if report.segmentsWritten > 0 {
            try record([AuditEntry(event: "audit.segmented", facts: ["segmentsWritten": .integer(report.segmentsWritten),
                                                                      "segments": .integer(report.segments),
                                                                      "recordsPerSegment": .integer(log.segmentRecords)])])
        }
        return report
    }

    /// Moves the sealed segments whose records are all older than `date` to `directory`:
    /// each copied and read back, then `audit.archived` recorded and sealed (the segments'
    /// records, lengths, SHA-256s and subtree hashes), then a stub left in place of each and
    /// its file removed. The tree, its roots and every proof stay as they were.
    public func archive(before date: Date, to directory: String) throws -> ArchiveReport {
        guard let key = try auditKey(create: false) else {
            throw OperationError(.auditAnchorMissing, "the token has no audit key: there is no anchored checkpoint to check the log against")
        }
        // Every record is read and checked against the anchor first (not only those after a
        // cached frontier): the hashes recorded for what leaves are the sealed records'.
        let verified = try log.verify(against: [("the token's", try verifiedAnchor(key: key).checkpoint)])
        try requireFreeSpace()
        let target = URL(fileURLWithPath: directory).standardizedFileURL.path
        let chosen = try log.segmentsToArchive(before: date)
        guard !chosen.isEmpty else { return ArchiveReport(segments: [], to: target, recordIndex: nil) }
        guard target != URL(fileURLWithPath: log.segmentsPath).standardizedFileURL.path else {
            throw OperationError(.invalidInput, "the archive directory is the log's own segment directory: archive to other storage")
        }
        try AtomicFile.makePrivateDirectory(target)
        var archived: [ArchivedSegment] = []
        var index: Int?
        // One record per 64 segments: a record stays far under the 1 MiB a reader takes for one.
        var pending = chosen[...]
        while !pending.isEmpty {
            let batch = pending.prefix(64)
            pending = pending.dropFirst(batch.count)
            let stubs = try batch.map { try log.copySegment($0, to: target) }
            // What is recorded is what was verified: the stubs give the anchored root.
            try log.requireStubs(stubs, keep: verified)
            // Every segment archived so far, this batch's included (earlier ones: their stubs).
            let soFar = try log.segments().sealed.compactMap(\.stub).filter { old in !stubs.contains { $0.first == old.first } } + stubs
            let facts: [String: AuditValue] = [
                "to": .string(target),
                "before": .string(AuditRecord.timestamp(date)),
                "segments": .array(stubs.map { stub in
                    .object(["first": .integer(stub.first), "count": .integer(stub.count), "bytes": .integer(stub.bytes),
                             "sha256": .string(stub.sha256), "file": .string(stub.file), "subtrees": .array(stub.subtrees.map { .string($0) })])
                }),
                "archivedSoFar": .object(["segments": .integer(soFar.count), "sha256": .string(ArchivedSegment.digest(soFar))]),
            ]
            let note = try record([AuditEntry(event: "audit.archived", facts: facts)])
            guard let recordIndex = (try? Checkpoint(noteText: note.text)).map({ $0.treeSize - 1 }) else {
                throw OperationError(.auditInconsistent, "the checkpoint just signed does not parse: nothing more was archived")
            }
            // This batch's stubs name the record; verify checks the newest one a stub names, which
            // lists them all (earlier stubs keep naming theirs).
            try log.leaveStubs(stubs.map { $0.named(by: recordIndex) })
            index = recordIndex
            archived += stubs
        }
        return ArchiveReport(segments: archived.map { ArchivedRange(first: $0.first, count: $0.count, to: $0.to, file: $0.file, sha256: $0.sha256, putBack: false) },
                             to: target, recordIndex: index)
    }
}

extension AuditOperations {
    /// Cuts the log into sealed segments (see ``AuditService/splitIntoSegments()``).
    public static func splitIntoSegments(target: TokenTarget, directory: URL, observer: any OperationObserver) throws -> SegmentSplitReport {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).splitIntoSegments()
    }

    /// Archives the sealed segments older than `date` (see ``AuditService/archive(before:to:)``).
    public static func archive(target: TokenTarget, directory: URL, before date: Date, to: String,
                               observer: any OperationObserver) throws -> ArchiveReport {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: directory)
        return try AuditService(opened: opened, directory: directory, observer: observer).archive(before: date, to: to)
    }
}
