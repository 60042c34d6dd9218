import AuditTrail
import Foundation
import Testing
import TransparencyLog

/// The tiles beside a log: kept by every writer, checked by a full verification, used for
/// proofs and incremental verification, never trusted for being there.
@Suite("Audit log: C2SP tiles beside the log")
struct TilesTests {
    private func entries(_ count: Int, from start: Int = 0) -> [String] { (start..<(start + count)).map { "r\($0)" } }

    /// A log of `count` records, sealed.
    private func filled(_ count: Int) throws -> (AuditLog, Anchor) {
        let log = temporaryLog("tiles")
        let anchor = Anchor()
        if count > 0 { try anchor.append(log, entries(count)) }
        return (log, anchor)
    }

    private func path(_ log: AuditLog, _ relative: String) -> String { log.tilesPath + "/" + relative }

    private func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    private func mode(_ path: String) throws -> Int? { try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int }

    private func leafHashes(_ log: AuditLog) throws -> [MerkleTree.Hash] {
        try logLines(log).map { MerkleTree.leafHash(Array($0.utf8)) }
    }

    private func flipByte(_ path: String, at offset: UInt64 = 40) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: offset)
        let byte = try #require(try handle.read(upToCount: 1)).first ?? 0
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: Data([byte ^ 0xFF]))
        try handle.close()
    }

    @Test func appendsWriteTheTilesOfTheC2SPLayoutPrivately() throws {
        let (log, anchor) = try filled(100)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        #expect(exists(path(log, "tile/0/000.p/100")))
        try anchor.append(log, entries(200, from: 100))
        // 300 records: one full level-0 tile, its partial successor, one level-1 hash.
        #expect(!exists(path(log, "tile/0/000.p")), "the superseded partials go once the full tile is written")
        #expect(exists(path(log, "tile/0/001.p/44")) && exists(path(log, "tile/1/000.p/1")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: path(log, "tile/0/001.p")) == ["44"])
        let full = try Data(contentsOf: URL(fileURLWithPath: path(log, "tile/0/000")))
        let hashes = try leafHashes(log)
        #expect(full == Data(hashes[..<256].flatMap { $0 }))
        let level1 = try Data(contentsOf: URL(fileURLWithPath: path(log, "tile/1/000.p/1")))
        #expect(level1 == Data(MerkleTree.root(hashes[..<256])))
        // The offset index: where record 256 starts.
        let offsets = try Data(contentsOf: URL(fileURLWithPath: path(log, "offsets")))
        let start = try logLines(log)[..<256].reduce(0) { $0 + $1.utf8.count + 1 }
        #expect(offsets == Data((0..<8).map { UInt8(truncatingIfNeeded: UInt64(start) >> (56 - 8 * $0)) }))
        for file in ["tile/0/000", "tile/0/001.p/44", "offsets"] { #expect(try mode(path(log, file)) == 0o600, "\(file)") }
        for directory in ["", "/tile", "/tile/0", "/tile/0/001.p"] { #expect(try mode(log.tilesPath + directory) == 0o700, "\(directory)") }
        let verified = try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)])
        #expect(verified.tiles == TileCheck(present: true, checked: 3, missing: 0, offsetsChecked: 1))
    }

    @Test func aLogWithoutTilesGetsThemFromItsNextAppendAndTilesBehindAreCaughtUp() throws {
        let (log, anchor) = try filled(300)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        // Written before tiles existed.
        try FileManager.default.removeItem(atPath: log.tilesPath)
        #expect(try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)]).tiles.present == false)
        try anchor.append(log, ["one more"])
        #expect(exists(path(log, "tile/0/000")) && exists(path(log, "tile/0/001.p/45")))
        // Left behind (a crash after the record, or an older version appending): kept aside,
        // records appended, then put back.
        let aside = log.tilesPath + ".aside"
        try FileManager.default.copyItem(atPath: log.tilesPath, toPath: aside)
        try anchor.append(log, entries(300, from: 301))
        try FileManager.default.removeItem(atPath: log.tilesPath)
        try FileManager.default.moveItem(atPath: aside, toPath: log.tilesPath)
        try anchor.append(log, ["caught up"])
        let check = try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)]).tiles
        #expect(check.missing == 0 && check.offsetsChecked == 2, "\(check)")
        #expect(exists(path(log, "tile/0/002.p/90")))
    }

    @Test func aChangedTileIsNamedByVerificationAndOnlyARebuildReplacesIt() throws {
        let (log, anchor) = try filled(300)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let tile = path(log, "tile/0/000")
        try flipByte(tile)
        do {
            _ = try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)])
            Issue.record("a changed tile was accepted")
        } catch let error as AuditError {
            #expect(error.code == .tilesUnusable && error.reason.contains(tile), "\(error)")
        }
        // The records are not in question: the log verifies without its tiles.
        #expect(try log.verify(against: [("the token's", anchor.checkpoint)]).size == 300)
        // A proof through that tile does not verify, so it is refused, never printed.
        #expect(throws: AuditError(.tilesUnusable, "")) { try log.inclusionProof(index: 3, anchored: anchor.checkpoint) }
        let rebuilt = try log.rebuildTiles(anchor: anchor.checkpoint)
        #expect(rebuilt.records == 300 && rebuilt.fullTiles == 1 && rebuilt.partialTiles == 2 && rebuilt.replacedCount == 1 && rebuilt.replaced == [tile])
        #expect(try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)]).tiles.checked == 3)
        #expect(try log.inclusionProof(index: 3, anchored: anchor.checkpoint).index == 3)
    }

    @Test func aDifferentFullTileAlreadyThereFailsTheAppendThatWouldWriteItAndCutsItBack() throws {
        let (log, anchor) = try filled(250)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let before = try Data(contentsOf: URL(fileURLWithPath: log.logPath))
        let sealed = anchor.checkpoint
        try Data(repeating: 7, count: 8192).write(to: URL(fileURLWithPath: path(log, "tile/0/000")))
        chmod(path(log, "tile/0/000"), 0o600)
        #expect(throws: AuditError(.tilesUnusable, "")) { try anchor.append(log, entries(10, from: 250)) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: log.logPath)) == before, "the records were cut back")
        #expect(anchor.checkpoint == sealed, "nothing was signed")
    }

    @Test func sealingTheLogAsItIsReplacesTheTilesOfWhatItHeldBefore() throws {
        let (log, anchor) = try filled(300)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var lines = try logLines(log)
        lines[10] = lines[10].replacingOccurrences(of: "\"r10\"", with: "\"rX\"")
        try rewriteLog(log, lines)
        // A person accepts the log as it is (a re-anchoring): the tiles are then the edited log's.
        let tree = try log.sealAsItIs { $0 }
        anchor.checkpoint = try Checkpoint(origin: Anchor.origin, treeSize: tree.size, rootHash: tree.root)
        #expect(try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)]).tiles.checked == 3)
        try anchor.append(log, ["after"])
        #expect(try log.inclusionProof(index: 10, anchored: anchor.checkpoint).record == Array(lines[10].utf8))
    }

    @Test func aTileThatCannotBeWrittenFailsTheAppendAndNothingOfItIsKept() throws {
        let (log, anchor) = try filled(5)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let before = try Data(contentsOf: URL(fileURLWithPath: log.logPath))
        // A directory where the next partial tile goes: not a tile file, and nothing is written over it.
        try FileManager.default.createDirectory(atPath: path(log, "tile/0/000.p/6"), withIntermediateDirectories: true)
        #expect(throws: AuditError(.untrustedFile, "")) { try anchor.append(log, ["sixth"]) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: log.logPath)) == before)
        #expect(anchor.checkpoint.treeSize == 5)
        try FileManager.default.removeItem(atPath: path(log, "tile/0/000.p/6"))
        try anchor.append(log, ["sixth"])
        #expect(anchor.checkpoint.treeSize == 6)
    }

    @Test func tileFilesAndDirectoriesOthersCouldWriteOrLinksAreRefused() throws {
        let (log, anchor) = try filled(3)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        chmod(path(log, "tile/0"), 0o777)
        #expect(throws: AuditError(.untrustedFile, "")) { try anchor.append(log, ["x"]) }
        chmod(path(log, "tile/0"), 0o700)
        try FileManager.default.moveItem(atPath: path(log, "tile"), toPath: log.directory.path + "/elsewhere")
        try FileManager.default.createSymbolicLink(atPath: path(log, "tile"), withDestinationPath: log.directory.path + "/elsewhere")
        #expect(throws: AuditError(.untrustedFile, "")) { try anchor.append(log, ["x"]) }
        #expect(throws: AuditError(.untrustedFile, "")) { try log.inclusionProof(index: 0, anchored: anchor.checkpoint) }
    }

    @Test func proofsFromTilesAreCheckedAgainstTheAnchorAndCarryTheRecord() throws {
        let (log, anchor) = try filled(600)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let lines = try logLines(log)
        for index in [0, 255, 256, 511, 599] {
            let proof = try log.inclusionProof(index: index, anchored: anchor.checkpoint)
            #expect(proof.record == Array(lines[index].utf8))
            #expect(MerkleTree.verifyInclusion(leafHash: MerkleTree.leafHash(proof.record), index: index, treeSize: 600,
                                               proof: proof.path, rootHash: anchor.checkpoint.rootHash))
            #expect((1...4).contains(proof.tilesRead), "\(proof.tilesRead)")
        }
        let hashes = try leafHashes(log)
        for (old, new) in [(0, 600), (1, 600), (256, 512), (300, 600), (600, 600)] {
            let proof = try log.consistencyProof(oldSize: old, newSize: new, anchored: anchor.checkpoint)
            #expect(proof.oldRoot == MerkleTree.root(hashes[..<old]) && proof.newRoot == MerkleTree.root(hashes[..<new]))
            #expect(proof.proof == MerkleTree.consistencyProof(oldSize: old, hashes[..<new]), "\(old) → \(new)")
        }
        // The offset index must point at the record it names.
        var offsets = try Data(contentsOf: URL(fileURLWithPath: path(log, "offsets")))
        offsets[7] &+= 1
        try offsets.write(to: URL(fileURLWithPath: path(log, "offsets")))
        #expect(throws: AuditError(.tilesUnusable, "")) { try log.inclusionProof(index: 300, anchored: anchor.checkpoint) }
    }

    @Test func incrementalVerificationHashesOnlyTheRecordsAfterTheSavedCheckpoint() throws {
        let (log, anchor) = try filled(300)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let saved = anchor.checkpoint
        try anchor.append(log, entries(400, from: 300))
        guard case .verified(let outcome) = try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint) else {
            Issue.record("not verified")
            return
        }
        #expect(outcome.size == 700 && outcome.root == anchor.checkpoint.rootHash)
        #expect(outcome.hashedFrom == 300 && outcome.recordsHashed == 400)
        #expect(MerkleTree.verifyConsistency(oldSize: 300, newSize: 700, oldRoot: saved.rootHash, newRoot: anchor.checkpoint.rootHash,
                                             proof: outcome.consistencyProof))
        // A record after the saved checkpoint edited: not verified (a full verification names it).
        var lines = try logLines(log)
        lines[500] = lines[500].replacingOccurrences(of: "\"r500\"", with: "\"rX\"")
        try rewriteLog(log, lines)
        guard case .unavailable = try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint) else {
            Issue.record("an edited record was accepted")
            return
        }
        #expect(throws: AuditError(.inconsistent, "")) { try log.verify(against: [("the token's", anchor.checkpoint)]) }
    }

    @Test func incrementalVerificationWithoutTilesOrWithAWrongIndexIsNotMadeAndARecordOutOfPlaceIsNamed() throws {
        let (log, anchor) = try filled(300)
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let saved = anchor.checkpoint
        try anchor.append(log, entries(10, from: 300))
        try FileManager.default.removeItem(atPath: path(log, "offsets"))
        guard case .unavailable(let reason) = try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint) else {
            Issue.record("verified without the offset index")
            return
        }
        #expect(reason.contains("offset"), "\(reason)")
        try FileManager.default.removeItem(atPath: log.tilesPath)
        guard case .unavailable = try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint) else {
            Issue.record("verified without tiles")
            return
        }
        // A record after the saved one that is out of place is an inconsistency, as in a full pass.
        try anchor.append(log, ["rebuilds the tiles"])
        var lines = try logLines(log)
        lines.swapAt(303, 304)
        try rewriteLog(log, lines)
        #expect(throws: AuditError(.inconsistent, "")) { try log.verifyIncrementally(from: saved, anchored: anchor.checkpoint) }
    }

    @Test func theLongRunningAppenderKeepsTheTilesBesideOtherWriters() throws {
        let log = temporaryLog("tiles")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try anchor.append(log, entries(200))
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        for batch in 0..<3 {
            try appender.append(entries(40, from: 200 + batch * 50).map { AuditEntry(event: "proxy.request", facts: ["path": .string($0)]) },
                                sync: false)
            try log.appendUnsealed(entries(10, from: 240 + batch * 50).map { AuditEntry(event: "command.failed", facts: ["path": .string($0)]) })
        }
        try anchor.seal(appender)
        #expect(anchor.checkpoint.treeSize == 350)
        let check = try log.verifyWithTiles(against: [("the token's", anchor.checkpoint)]).tiles
        #expect(check.missing == 0 && check.checked == 3 && check.offsetsChecked == 1, "\(check)")
        #expect(try log.inclusionProof(index: 349, anchored: anchor.checkpoint).treeSize == 350)
    }
}
