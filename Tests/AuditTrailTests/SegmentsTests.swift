import AuditTrail
import Crypto
import Foundation
import Synchronization
import Testing
import TransparencyLog

/// A log in segments: sealed files in `<serial>.segments/` and the active one, read as one log;
/// archived segments leave stubs and the tree, its roots and proofs stay what they were.
@Suite("Audit log: segments, archival, migration")
struct SegmentsTests {
    private static let serial = "0123456789abcdef"

    /// A log in a fresh directory, sealing a segment every `every` records.
    /// (Not sealed by the day: a test that runs over midnight UTC must not see one more seal.)
    private func segmentedLog(_ every: Int, directory: URL? = nil, daily: Bool = false) -> AuditLog {
        AuditLog(directory: directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("segments-\(UUID())"),
                 token: .init(serial: Self.serial, label: "fb"), tool: .init(name: "fireblocks-hsm", version: "test"), segmentRecords: every,
                 sealsDaily: daily)
    }

    private func names(_ count: Int, from start: Int = 0) -> [String] { (start..<(start + count)).map { "r\($0)" } }

    /// Every record's bytes, read from the files as they are (segments in name order, then the
    /// active one), to compute the tree independently of the reader under test.
    private func allLines(_ log: AuditLog) throws -> [[UInt8]] {
        var files = ((try? FileManager.default.contentsOfDirectory(atPath: log.segmentsPath)) ?? [])
            .filter { $0.hasSuffix(".jsonl") }.sorted().map { log.segmentsPath + "/" + $0 }
        if FileManager.default.fileExists(atPath: log.logPath) { files.append(log.logPath) }
        return try files.flatMap { path in
            try Data(contentsOf: URL(fileURLWithPath: path)).split(separator: 0x0A).map(Array.init)
        }
    }

    private func segmentFiles(_ log: AuditLog) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: log.segmentsPath)) ?? []).sorted()
    }

    private func verify(_ log: AuditLog, _ anchor: Anchor) throws -> (size: Int, root: [UInt8], tiles: TileCheck) {
        try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)])
    }

    @Test func appendsSealSegmentsAndTheLogReadsAsOneFile() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        for batch in 0..<14 { try anchor.append(log, names(5, from: batch * 5)) }
        // Sealed by the append that reached 16 or more: whole appends, so 20 records each.
        #expect(segmentFiles(log) == ["000000000000-20.jsonl", "000000000020-20.jsonl", "000000000040-20.jsonl"])
        for file in segmentFiles(log) {
            let mode = try FileManager.default.attributesOfItem(atPath: log.segmentsPath + "/" + file)[.posixPermissions] as? Int
            #expect(mode == 0o400, "\(file)")
        }
        let lines = try allLines(log)
        #expect(lines.count == 70)
        // The tree over the files' lines, computed here, is the one the appends signed.
        #expect(MerkleTree.root(lines.map { MerkleTree.leafHash($0) }[...]) == anchor.checkpoint.rootHash)
        let verified = try verify(log, anchor)
        #expect(verified.size == 70 && verified.root == anchor.checkpoint.rootHash)
        #expect(verified.tiles.complete && verified.tiles.missing == 0, "\(verified.tiles)")
        // A new reader of the log (a one-shot command) appends after the segments.
        let again = segmentedLog(16, directory: log.directory)
        try anchor.append(again, ["after"])
        #expect(try allLines(log).count == 71 && (try verify(log, anchor)).size == 71)
        // Proofs reach records in sealed segments through the offset index.
        let proof = try log.inclusionProof(index: 3, anchored: anchor.checkpoint)
        #expect(proof.record == lines[3])
        #expect(try log.lines() == lines + [try #require(allLines(log).last)])
    }

    @Test func aSegmentEditedRemovedOrMisnamedIsRefused() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        for batch in 0..<8 { try anchor.append(log, names(5, from: batch * 5)) }
        let second = log.segmentsPath + "/000000000020-20.jsonl"
        let original = try Data(contentsOf: URL(fileURLWithPath: second))

        // One byte of a sealed segment changed (the owner can chmod it back to writable).
        var edited = original
        edited[edited.startIndex + 60] ^= 0x01
        try FileManager.default.removeItem(atPath: second)
        try edited.write(to: URL(fileURLWithPath: second))
        chmod(second, 0o400)
        #expect(throws: AuditError.self) { try verify(log, anchor) }
        // (An append trusts the anchored tree's cached frontier, as for a one-file log: a
        // verification is what reads every record.)
        try anchor.append(log, ["after"])

        // Removed: a gap in the records, found by the segments' names or by the records' places.
        try FileManager.default.removeItem(atPath: second)
        let removed = #expect(throws: AuditError.self) { try verify(log, anchor) }
        #expect(removed?.code == .inconsistent, "\(String(describing: removed))")
        try FileManager.default.copyItem(atPath: log.segmentsPath + "/000000000000-20.jsonl", toPath: log.segmentsPath + "/000000000040-1.jsonl")
        let gap = #expect(throws: AuditError.self) { try log.segments() }
        #expect(gap?.code == .inconsistent && gap?.reason.contains("records 20–39 are in no segment") == true, "\(String(describing: gap))")
        try FileManager.default.removeItem(atPath: log.segmentsPath + "/000000000040-1.jsonl")

        // Put back under a name that claims other records.
        let misnamed = log.segmentsPath + "/000000000020-19.jsonl"
        try original.write(to: URL(fileURLWithPath: misnamed))
        chmod(misnamed, 0o400)
        #expect(throws: AuditError.self) { try verify(log, anchor) }
        try FileManager.default.removeItem(atPath: misnamed)

        // Something that is no segment in the directory is not skipped.
        try original.write(to: URL(fileURLWithPath: second))
        chmod(second, 0o400)
        #expect(try verify(log, anchor).size == 41)
        try Data("x".utf8).write(to: URL(fileURLWithPath: log.segmentsPath + "/notes.txt"))
        #expect(throws: AuditError.self) { try log.segments() }
        try FileManager.default.removeItem(atPath: log.segmentsPath + "/notes.txt")

        // A directory others could write is refused like the rest of the trail.
        chmod(log.segmentsPath, 0o777)
        let untrusted = #expect(throws: AuditError.self) { try verify(log, anchor) }
        #expect(untrusted?.code == .untrustedFile)
        chmod(log.segmentsPath, 0o700)
    }

    @Test func archivedSegmentsKeepTheTreeAndArePutBackChecked() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        var early: Checkpoint?
        for batch in 0..<60 {
            try anchor.append(log, names(5, from: batch * 5))
            if batch == 1 { early = anchor.checkpoint }
        }
        let lines = try allLines(log)
        let sealed = try log.segments().sealed
        #expect(sealed.count == 15)

        let chosen = try log.segmentsToArchive(before: Date().addingTimeInterval(3600))
        #expect(chosen.count == 15)
        let originals = try sealed.prefix(3).map { try Data(contentsOf: URL(fileURLWithPath: try #require($0.path))) }
        let stubs = try archiveSegments(log, anchor, Array(chosen.prefix(3)), to: archive)
        for (stub, original) in zip(stubs, originals) {
            // The copy is the file, byte for byte, and the stub's digest is an outside SHA-256 of it.
            let copy = try Data(contentsOf: URL(fileURLWithPath: archive + "/" + stub.file))
            #expect(copy == original)
            #expect(stub.sha256 == SHA256.hash(data: copy).map { String(format: "%02x", $0) }.joined())
        }
        #expect(segmentFiles(log).prefix(3) == ["000000000000-20.archived", "000000000020-20.archived", "000000000040-20.archived"])

        // The tree is the one signed, with records 0–59 read from nowhere.
        let verified = try verify(log, anchor)
        #expect(verified.root == anchor.checkpoint.rootHash && verified.size == 301)
        // Readers that need the records say where they went.
        let away = #expect(throws: AuditError.self) { try log.lines() }
        #expect(away?.code == .unreadable && away?.reason.contains(archive) == true, "\(String(describing: away))")
        #expect(throws: AuditError.self) { try log.inclusionProof(index: 5, anchored: anchor.checkpoint) }
        #expect(try log.inclusionProof(index: 100, anchored: anchor.checkpoint).record == lines[100])
        // An auditor's checkpoint from before the archived records: not checked incrementally
        // (the records after it are not all here), which a full verification then does.
        if case .verified = try log.verifyIncrementally(from: try #require(early), anchored: anchor.checkpoint) {
            Issue.record("records that are archived were taken as hashed")
        }
        if case .unavailable(let reason) = try log.verifyIncrementally(from: anchor.checkpoint, anchored: anchor.checkpoint) {
            Issue.record("a checkpoint after the archived records is checked incrementally: \(reason)")
        }
        // Appending goes on.
        try anchor.append(log, ["after the archive"])

        // Without the tiles, the stubs' subtree hashes give the tree.
        let tiles = log.tilesPath + ".aside"
        try FileManager.default.moveItem(atPath: log.tilesPath, toPath: tiles)
        #expect(try log.verify(against: [("the token's", anchor.checkpoint)]).root == anchor.checkpoint.rootHash)
        // A stub that lies about them gives another root: refused.
        let stubPath = log.segmentsPath + "/000000000020-20.archived"
        let stubText = try String(contentsOfFile: stubPath, encoding: .utf8)
        let firstHash = try #require(stubs[1].subtrees.first)
        try stubText.replacingOccurrences(of: firstHash, with: String(repeating: "0", count: 64)).write(toFile: stubPath, atomically: true, encoding: .utf8)
        #expect(throws: AuditError.self) { try log.verify(against: [("the token's", anchor.checkpoint)]) }
        try stubText.write(toFile: stubPath, atomically: true, encoding: .utf8)
        try FileManager.default.moveItem(atPath: tiles, toPath: log.tilesPath)

        // Put back, the segment is read and must be the file archived.
        let back = log.segmentsPath + "/000000000020-20.jsonl"
        try FileManager.default.copyItem(atPath: archive + "/" + stubs[1].file, toPath: back)
        #expect(try verify(log, anchor).root == anchor.checkpoint.rootHash)
        #expect(try log.segments().sealed[1].path == back)
        // Another file put back in its place (here: the same records, one more space) is refused.
        var other = try Data(contentsOf: URL(fileURLWithPath: back))
        other.insert(0x20, at: other.startIndex + 1)
        try FileManager.default.removeItem(atPath: back)
        try other.write(to: URL(fileURLWithPath: back))
        #expect(throws: AuditError.self) { try verify(log, anchor) }
    }

    @Test func aOneFileLogIsCutInPlaceKeepingEveryRootAndAnInterruptedCutCompletes() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("segments-\(UUID())")
        defer { try? FileManager.default.removeItem(at: directory) }
        // Written before segments: one file.
        let old = segmentedLog(1 << 30, directory: directory)
        let anchor = Anchor()
        for batch in 0..<10 { try anchor.append(old, names(5, from: batch * 5)) }
        let before = anchor.checkpoint
        let lines = try allLines(old)
        #expect(segmentFiles(old).isEmpty)

        let log = segmentedLog(16, directory: directory)
        // An interrupted cut: the first segment written, the log's file not yet replaced.
        try FileManager.default.createDirectory(atPath: log.segmentsPath, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let firstSegment: [UInt8] = lines[..<16].flatMap { $0 + [UInt8(0x0A)] }
        try Data(firstSegment).write(to: URL(fileURLWithPath: log.segmentsPath + "/000000000000-16.jsonl"))
        #expect(throws: AuditError.self) { try verify(log, anchor) }

        let report = try log.splitIntoSegments(anchor: before)
        #expect(report.records == 50 && report.segmentsWritten == 2 && report.segments == 3 && report.activeRecords == 2, "\(report)")
        #expect(segmentFiles(log) == ["000000000000-16.jsonl", "000000000016-16.jsonl", "000000000032-16.jsonl"])
        #expect(try allLines(log) == lines)
        let verified = try verify(log, anchor)
        #expect(verified.root == before.rootHash && verified.tiles.missing == 0 && verified.tiles.offsetsChecked == 0)
        // Cut again: nothing to do; appends go on from the active segment.
        #expect(try log.splitIntoSegments(anchor: anchor.checkpoint).segmentsWritten == 0)
        try anchor.append(log, names(20, from: 50))
        #expect(segmentFiles(log).last == "000000000048-22.jsonl")
        #expect(try verify(log, anchor).size == 70)

        // A log that does not extend the anchor is never cut.
        let tampered = segmentedLog(1 << 30, directory: FileManager.default.temporaryDirectory.appendingPathComponent("segments-\(UUID())"))
        defer { try? FileManager.default.removeItem(at: tampered.directory) }
        let other = Anchor()
        try other.append(tampered, names(40))
        var text = try String(contentsOfFile: tampered.logPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"r3\"", with: "\"r4\"")
        try rewriteLog(tampered, text.split(separator: "\n").map(String.init))
        let cut = segmentedLog(16, directory: tampered.directory)
        #expect(throws: AuditError.self) { try cut.splitIntoSegments(anchor: other.checkpoint) }
        #expect(segmentFiles(cut).isEmpty)
    }

    @Test func anAppenderFollowsSegmentsSealedByItselfAndByOthers() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(3))
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        // Its own appends seal a segment…
        for index in 3..<20 { try appender.append([AuditEntry(event: "proxy.request", facts: ["path": .string("a\(index)")])], sync: index % 2 == 0) }
        try anchor.seal(appender)
        #expect(segmentFiles(log) == ["000000000000-16.jsonl"])
        // …and another process's append seals the next while the appender holds the file open.
        try anchor.append(log, names(12, from: 100))
        #expect(segmentFiles(log).last == "000000000016-16.jsonl")
        try appender.append([AuditEntry(event: "proxy.request", facts: ["path": .string("after")])])
        try anchor.seal(appender)
        let lines = try allLines(log)
        #expect(lines.count == 33 && appender.size == 33)
        #expect(MerkleTree.root(lines.map { MerkleTree.leafHash($0) }[...]) == anchor.checkpoint.rootHash)
        #expect(try verify(log, anchor).size == 33)

        // A follower reads every record across the seals, then the archived ones are passed over.
        let follower = AuditLogFollower(log)
        var read: [[UInt8]] = []
        while case let batch = try follower.next(limit: 100), !batch.isEmpty { read += batch }
        #expect(read == lines)
        for index in 0..<20 { try appender.append([AuditEntry(event: "proxy.request", facts: ["path": .string("b\(index)")])]) }
        while case let batch = try follower.next(limit: 100), !batch.isEmpty { read += batch }
        #expect(read == (try allLines(log)) && follower.records == 53)
    }

    @Test func readersBesideAWriterThatSealsSegmentsSeeOneLog() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        try anchor.append(log, names(3))
        let writing = DispatchGroup()
        let failure = Mutex<String?>(nil)
        writing.enter()
        DispatchQueue.global().async {
            defer { writing.leave() }
            do {
                let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
                for index in 0..<400 {
                    try appender.append([AuditEntry(event: "proxy.request", facts: ["path": .string("w\(index)")])], sync: false)
                    if index % 7 == 0 { try anchor.seal(appender) }
                }
                try anchor.seal(appender)
            } catch {
                failure.withLock { $0 = "writer: \(error)" }
            }
        }
        let follower = AuditLogFollower(log)
        var followed = 0
        var verifications = 0
        while writing.wait(timeout: .now()) == .timedOut || verifications < 2 {
            do {
                let checkpoint = anchor.checkpoint
                let verified = try log.verify(against: [("the token's", checkpoint)])
                #expect(verified.size >= checkpoint.treeSize)
                verifications += 1
                followed += try follower.next(limit: 4096).count
            } catch {
                failure.withLock { $0 = $0 ?? "reader: \(error)" }
                break
            }
        }
        writing.wait()
        while case let batch = try follower.next(limit: 1 << 20), !batch.isEmpty { followed += batch.count }
        #expect(failure.withLock { $0 } == nil, "\(failure.withLock { $0 } ?? "")")
        #expect(followed == 403 && verifications >= 2)
        #expect(try segmentFiles(log).count >= 20)
    }

    @Test func theFirstAppendOfADaySealsTheDaysBefore() throws {
        let log = segmentedLog(1 << 20, daily: true)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let anchor = Anchor()
        // 2026-12-01T10:00:00Z, then later that day, then the next days.
        let first = Date(timeIntervalSince1970: 1_796_119_200)
        func append(_ count: Int, at date: Date) throws {
            try log.append((0..<count).map { AuditEntry(event: "proxy.request", facts: ["n": .integer($0)]) }, now: date,
                           anchor: { anchor.checkpoint }) { tree in
                anchor.checkpoint = try Checkpoint(origin: Anchor.origin, treeSize: tree.size, rootHash: tree.root)
            }
        }
        try append(3, at: first)
        try append(2, at: first.addingTimeInterval(13 * 3600))
        #expect(segmentFiles(log).isEmpty)
        try append(1, at: first.addingTimeInterval(86_400))
        #expect(segmentFiles(log) == ["000000000000-5.jsonl"])
        // What archival by date then finds: the whole first day, not the second.
        let secondDay = Date(timeIntervalSince1970: 1_796_169_600)
        #expect(try log.segmentsToArchive(before: secondDay).map(\.count) == [5])
        // The proxy's appender seals by the day too.
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        try appender.append([AuditEntry(event: "proxy.request")], now: first.addingTimeInterval(86_400 + 60))
        try appender.append([AuditEntry(event: "proxy.request")], now: first.addingTimeInterval(2 * 86_400))
        try anchor.seal(appender)
        #expect(segmentFiles(log) == ["000000000000-5.jsonl", "000000000005-2.jsonl"])
        #expect(try verify(log, anchor).size == 8)
        // Not by the day: nothing sealed before the count.
        let counted = segmentedLog(1 << 20)
        defer { try? FileManager.default.removeItem(at: counted.directory) }
        try counted.append([AuditEntry(event: "a")], now: first, anchor: { try Checkpoint(origin: Anchor.origin, treeSize: 0, rootHash: MerkleTree.root([])) }) { _ in }
        try counted.appendUnsealed([AuditEntry(event: "b")], now: first.addingTimeInterval(86_400))
        #expect(segmentFiles(counted).isEmpty)
    }

    /// A sealed segment deleted behind a stub an attacker computed from it, naming a genuine
    /// `audit.archived` record: that record's list of what was archived does not hold it.
    @Test func aStubThatNamesAGenuineRecordWhichDoesNotListItIsRefused() throws {
        let log = segmentedLog(16)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("archive-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        let anchor = Anchor()
        for batch in 0..<3 { try anchor.append(log, names(20, from: batch * 20)) }
        let sealed = try log.segments().sealed
        let genuine = try archiveSegments(log, anchor, [sealed[0]], to: archive)
        let record = try #require(genuine.first?.record)
        #expect(try verify(log, anchor).size == 61)
        // The attacker's stub for the next segment, naming the genuine record; the file removed.
        let forged = try log.copySegment(sealed[1], to: archive).named(by: record)
        try log.leaveStubs([forged])
        let refused = #expect(throws: AuditError.self) { try verify(log, anchor) }
        #expect(refused?.code == .inconsistent && refused?.reason.contains("are not the 1 that record \(record)") == true, "\(String(describing: refused))")
        // Naming a record that is not an audit.archived one is no better.
        try log.leaveStubs([forged.named(by: 5)])
        #expect(throws: AuditError.self) { try verify(log, anchor) }
    }
}
