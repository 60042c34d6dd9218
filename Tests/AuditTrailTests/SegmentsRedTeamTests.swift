import AuditTrail
import Crypto
import Foundation
import Testing
import TransparencyLog

/// What someone who can write the audit directory (not the token) does to a log in segments:
/// forged stubs, segments moved about, interrupted operations. Each must be refused with a
/// clear error (never a crash), or accepted because it is correct.
@Suite("Audit log: segments under attack")
struct SegmentsRedTeamTests {
    private static let serial = "0123456789abcdef"

    private func segmentedLog(_ every: Int, directory: URL? = nil) -> AuditLog {
        AuditLog(directory: directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("segments-rt-\(UUID())"),
                 token: .init(serial: Self.serial, label: "fb"), tool: .init(name: "fireblocks-hsm", version: "test"), segmentRecords: every)
    }

    private func names(_ count: Int, from start: Int = 0) -> [String] { (start..<(start + count)).map { "r\($0)" } }

    private func segmentFiles(_ log: AuditLog) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: log.segmentsPath)) ?? []).sorted()
    }

    private func allLines(_ log: AuditLog) throws -> [[UInt8]] {
        var files = segmentFiles(log).filter { $0.hasSuffix(".jsonl") }.map { log.segmentsPath + "/" + $0 }
        if FileManager.default.fileExists(atPath: log.logPath) { files.append(log.logPath) }
        return try files.flatMap { path in try Data(contentsOf: URL(fileURLWithPath: path)).split(separator: 0x0A).map(Array.init) }
    }

    private func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// A stub as `audit archive` writes it, for the given leaf hashes of records `first…`.
    private func stub(first: Int, leaves: [MerkleTree.Hash], bytes: Int, sha256: String = String(repeating: "ab", count: 32)) -> ArchivedSegment {
        let subtrees = AuditSegments.subtrees(first: first, count: leaves.count).map { piece in
            hex(MerkleTree.root(leaves[(piece.first - first)..<(piece.first - first + (1 << piece.level))]))
        }
        return ArchivedSegment(first: first, count: leaves.count, bytes: bytes, sha256: sha256, subtrees: subtrees, to: "/elsewhere", file: "x.jsonl")
    }

    private func write(_ stub: ArchivedSegment, as name: String? = nil, in log: AuditLog) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try FileManager.default.createDirectory(atPath: log.segmentsPath, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let digits = String(stub.first)
        let path = log.segmentsPath + "/" + (name ?? String(repeating: "0", count: max(0, 12 - digits.count)) + digits + "-\(stub.count).archived")
        try (encoder.encode(stub) + Data([0x0A])).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
    }

    private func verify(_ log: AuditLog, _ anchor: Anchor) throws -> (size: Int, root: [UInt8], tiles: TileCheck) {
        try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)])
    }

    /// A stub for records after the anchored checkpoint stands for records nobody checked: the
    /// next append must not sign a tree with them (here they are another token's, and would be
    /// "put back" once signed).
    @Test func aStubForRecordsAfterTheAnchorIsNeverSignedOver() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(20))
        #expect(segmentFiles(log) == ["000000000000-20.jsonl"])
        // Records 20–35 forged elsewhere: another token's, not even in place.
        let forger = AuditLog(directory: FileManager.default.temporaryDirectory.appendingPathComponent("forger-\(UUID())"),
                              token: .init(serial: "feedfacefeedface", label: "x"), tool: .init(name: "evil", version: "1"), segmentRecords: 1 << 30)
        defer { try? FileManager.default.removeItem(at: forger.directory) }
        try forger.appendUnsealed((0..<16).map { AuditEntry(event: "api-user.retired", facts: ["n": .integer($0)]) })
        let forged = try allLines(forger)
        let file = Data(forged.flatMap { $0 + [0x0A] })
        let sha = hex(SHA256.hash(data: file))
        try write(stub(first: 20, leaves: forged.map { MerkleTree.leafHash($0) }, bytes: file.count, sha256: sha), in: log)
        // The tiles' right edge to match (the tile writer would otherwise read records 20–35 to catch up).
        let real = try allLines(log).map { MerkleTree.leafHash($0) }
        let edge = log.tilesPath + "/tile/0/000.p/36"
        try FileManager.default.createDirectory(atPath: log.tilesPath + "/tile/0/000.p", withIntermediateDirectories: true)
        try Data((real + forged.map { MerkleTree.leafHash($0) }).flatMap { $0 }).write(to: URL(fileURLWithPath: edge))

        let refused = #expect(throws: AuditError.self) { try anchor.append(log, ["next"]) }
        #expect(refused?.code == .inconsistent, "\(String(describing: refused))")
        #expect(throws: AuditError.self) { try verify(log, anchor) }
        if refused == nil {
            // It was signed: the forged file "put back" now verifies as part of the trail.
            try file.write(to: URL(fileURLWithPath: log.segmentsPath + "/000000000020-16.jsonl"))
            #expect(throws: AuditError.self) { try verify(log, anchor) }
        }
    }

    /// A stub whose `bytes` is near Int.max: every later offset would overflow (a trap).
    @Test func aStubOfAbsurdLengthIsRefusedNotACrash() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(20))
        try anchor.append(log, names(20, from: 20))
        try anchor.append(log, names(5, from: 40))
        let lines = try allLines(log)
        let second = log.segmentsPath + "/000000000020-20.jsonl"
        try FileManager.default.removeItem(atPath: second)
        // The total just short of Int.max: every offset after it overflows.
        let firstBytes = try #require(try FileManager.default.attributesOfItem(atPath: log.segmentsPath + "/000000000000-20.jsonl")[.size] as? Int)
        try write(stub(first: 20, leaves: lines[20..<40].map { MerkleTree.leafHash($0) }, bytes: Int.max - 10 - firstBytes), in: log)
        #expect(throws: AuditError.self) { try verify(log, anchor) }
        #expect(throws: AuditError.self) { try anchor.append(log, ["x"]) }
        let follower = AuditLogFollower(log)
        #expect(throws: AuditError.self) { while try !follower.next().isEmpty {} }
    }

    /// A stub whose JSON gives a first record near Int.max (the name gives 0).
    @Test func aStubWhoseFirstRecordOverflowsIsRefusedNotACrash() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(20))
        try anchor.append(log, names(2, from: 20))
        try FileManager.default.removeItem(atPath: log.segmentsPath + "/000000000000-20.jsonl")
        let forged = ArchivedSegment(first: Int.max - 5, count: 20, bytes: 100, sha256: String(repeating: "ab", count: 32),
                                     subtrees: [String(repeating: "00", count: 32)], to: "/x", file: "x")
        try write(forged, as: "000000000000-20.archived", in: log)
        let refused = #expect(throws: AuditError.self) { try log.segments() }
        #expect(refused?.code == .inconsistent)
    }

    /// A stub that claims 999999999999 records while the tiles are there: the tiles' leaf hashes
    /// are not gathered for that many (an allocation of terabytes).
    @Test func aStubOfAbsurdRecordCountIsRefusedNotACrash() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        for batch in 0..<15 { try anchor.append(log, names(20, from: batch * 20)) }
        #expect(FileManager.default.fileExists(atPath: log.tilesPath + "/tile/0/000"))
        for file in segmentFiles(log) { try FileManager.default.removeItem(atPath: log.segmentsPath + "/" + file) }
        let count = 999_999_999_999
        let forged = ArchivedSegment(first: 0, count: count, bytes: 100, sha256: String(repeating: "ab", count: 32),
                                     subtrees: AuditSegments.subtrees(first: 0, count: count).map { _ in String(repeating: "00", count: 32) },
                                     to: "/x", file: "x")
        try write(forged, in: log)
        #expect(throws: AuditError.self) { try verify(log, anchor) }
    }

    /// Two files for the same first record: one of them would be skipped.
    @Test func twoSegmentsWithTheSameFirstRecordAreRefused() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(20))
        try anchor.append(log, names(20, from: 20))
        let lines = try allLines(log)
        // The same records again under other counts: each a name in the scheme, each skipped or not by readdir order.
        for count in [3, 5, 7, 11] {
            let path = log.segmentsPath + "/000000000000-\(count).jsonl"
            try Data(lines[..<count].flatMap { $0 + [0x0A] }).write(to: URL(fileURLWithPath: path))
        }
        let refused = #expect(throws: AuditError.self) { try log.segments() }
        #expect(refused?.reason.contains("000000000000") == true, "\(String(describing: refused))")
    }

    /// A split interrupted under one segment count and completed under another (the variable
    /// not set in the second shell) must not lose records.
    @Test func anInterruptedSplitCompletedWithAnotherCountLosesNothing() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("segments-rt-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let old = segmentedLog(1 << 30, directory: directory)
        let anchor = Anchor()
        for batch in 0..<10 { try anchor.append(old, names(5, from: batch * 5)) }
        let lines = try allLines(old)
        // The first run (16 a segment) wrote its first segment, then stopped.
        let first = segmentedLog(16, directory: directory)
        try FileManager.default.createDirectory(atPath: first.segmentsPath, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try Data(lines[..<16].flatMap { $0 + [UInt8(0x0A)] }).write(to: URL(fileURLWithPath: first.segmentsPath + "/000000000000-16.jsonl"))
        // The second run, 32 a segment.
        let second = segmentedLog(32, directory: directory)
        _ = try? second.splitIntoSegments(anchor: anchor.checkpoint)
        #expect(try allLines(second) == lines, "\(segmentFiles(second))")
        #expect(try verify(second, anchor).root == anchor.checkpoint.rootHash)
    }

    /// An active file that holds a full segment but was not renamed (a crash between the chmod
    /// 0400 and the rename of a seal) is sealed before anything is appended to it: as another
    /// user than root, a 0400 file cannot be opened for appending at all.
    @Test func aSealInterruptedBeforeItsRenameIsCompletedByTheNextAppend() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("segments-rt-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        let anchor = Anchor()
        try anchor.append(segmentedLog(1 << 30, directory: directory), names(20))
        let log = segmentedLog(16, directory: directory)
        chmod(log.logPath, 0o400)
        try anchor.append(log, ["after the crash"])
        #expect(segmentFiles(log) == ["000000000000-20.jsonl"])
        #expect(try allLines(log).count == 21 && (try verify(log, anchor)).size == 21)
    }

    /// An auditor's saved checkpoint whose records were archived since: the incremental check
    /// cannot start there, and says so (the full verification then runs), instead of failing.
    @Test func anIncrementalVerificationFromInsideAnArchivedRangeFallsBack() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-rt-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        try anchor.append(log, names(10))
        let saved = anchor.checkpoint
        for batch in 0..<5 { try anchor.append(log, names(10, from: 10 + batch * 10)) }
        let sealed = try log.segments().sealed
        try archiveSegments(log, anchor, Array(sealed.prefix(2)), to: archive)
        let outcome = try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint)
        if case .verified = outcome { Issue.record("verified without the records after the saved checkpoint") }
        #expect(try verify(log, anchor).root == anchor.checkpoint.rootHash)
    }

    /// Tiles edited for an archived range while the stub is right: the trail is what was signed,
    /// and the tiles are what differs (nothing can rebuild them without the records).
    @Test func tilesEditedForAnArchivedRangeDoNotCondemnTheRecords() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-rt-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        for batch in 0..<60 { try anchor.append(log, names(5, from: batch * 5)) }
        let sealed = try log.segments().sealed
        try archiveSegments(log, anchor, Array(sealed.prefix(2)), to: archive)
        // The level-0 tile 0 (records 0–255) has one hash changed: record 3's.
        let tile = log.tilesPath + "/tile/0/000"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: tile))
        bytes[3 * 32] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: tile))
        do {
            _ = try verify(log, anchor)
        } catch let error as AuditError {
            #expect(error.code == .tilesUnusable, "the records are blamed: \(error)")
        }
    }

    /// The proxy's appender idle while other processes seal two segments.
    @Test func anAppenderFollowsTwoSealsMadeByOthers() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(3))
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        try appender.append([AuditEntry(event: "proxy.request")])
        try anchor.seal(appender)
        try anchor.append(log, names(20, from: 4))
        try anchor.append(log, names(20, from: 24))
        #expect(segmentFiles(log) == ["000000000000-24.jsonl", "000000000024-20.jsonl"])
        try appender.append([AuditEntry(event: "proxy.request")])
        try anchor.seal(appender)
        #expect(try verify(log, anchor).size == 45)
    }

    /// `audit show --follow` holding a sealed segment open when `audit archive` moves it.
    @Test func aFollowerInASegmentThatIsArchivedGoesOn() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-rt-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        try anchor.append(log, names(20))
        try anchor.append(log, names(3, from: 20))
        let follower = AuditLogFollower(log)
        #expect(try follower.next(limit: 1).count == 1)
        let sealed = try log.segments().sealed
        try archiveSegments(log, anchor, [sealed[0]], to: archive)
        var read = 1
        while case let batch = try follower.next(limit: 100), !batch.isEmpty { read += batch.count }
        #expect(read == 24, "the 23 records and the audit.archived one")
    }

    /// A sealed segment others could write: records in it that no checkpoint covers yet (the
    /// proxy seals before it checkpoints) could be rewritten by them, as the active file's could.
    @Test func aSegmentOthersCouldWriteIsRefusedAsTheLogIs() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(20))
        let segment = log.segmentsPath + "/000000000000-20.jsonl"
        chmod(segment, 0o666)
        let refused = #expect(throws: AuditError.self) { try anchor.append(log, ["x"]) }
        #expect(refused?.code == .untrustedFile, "\(String(describing: refused))")
        chmod(segment, 0o400)
        // A hard link (a backup that links unchanged files) is no reason to refuse a file never written again.
        let backup = log.directory.path + "/backup-link"
        #expect(link(segment, backup) == 0)
        try anchor.append(log, ["y"])
    }

    /// A segment swapped (same records' count, other records) between the archive's verification
    /// and its copy: the hashes of the copy are not the verified tree's, and are not recorded.
    @Test func aSegmentSwappedBeforeItsCopyIsNotArchived() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-rt-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        try anchor.append(log, names(20))
        try anchor.append(log, names(3, from: 20))
        let verified = try log.verify(against: [("the token's", anchor.checkpoint)])
        // Another log of the same token: records 0–19 in place, other facts.
        let other = segmentedLog(1 << 30)
        defer { try? FileManager.default.removeItem(at: other.directory) }
        try other.appendUnsealed(names(20, from: 500).map { AuditEntry(event: "proxy.request", facts: ["path": .string($0)]) })
        let segment = log.segmentsPath + "/000000000000-20.jsonl"
        try FileManager.default.removeItem(atPath: segment)
        try FileManager.default.copyItem(atPath: other.logPath, toPath: segment)
        let stubs = [try log.copySegment(try log.segments().sealed[0], to: archive)]
        #expect(throws: AuditError.self) { try log.requireStubs(stubs, keep: verified) }
    }

    /// A sealed, anchored segment replaced by a stub that no `audit.archived` record names (its
    /// subtree hashes computed from the file, as anyone who can read it can) is the deletion of
    /// signed records: refused. Each stub names its `audit.archived` record; the newest named
    /// one lists (counts and hashes) every segment archived so far.
    @Test func aSegmentDeletedBehindAStubNoRecordNamesIsRefused() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("gone-rt-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        let anchor = Anchor()
        try anchor.append(log, names(20), event: "api-user.onboarded")
        try anchor.append(log, names(20, from: 20))
        try anchor.append(log, names(3, from: 40))
        // The attacker's "archive": no record of it in the log.
        try log.leaveStubs([try log.copySegment(try log.segments().sealed[0], to: elsewhere)])
        try FileManager.default.removeItem(atPath: elsewhere)
        let unnamed = #expect(throws: AuditError.self) { try verify(log, anchor) }
        #expect(unnamed?.code == .inconsistent && unnamed?.reason.contains("names no audit.archived record") == true, "\(String(describing: unnamed))")
    }
}
