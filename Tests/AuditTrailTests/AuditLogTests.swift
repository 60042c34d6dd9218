import AuditTrail
import DurableFiles
import Foundation
import Synchronization
import Testing
import TransparencyLog

@Suite("Audit log: append, verify, every kind of tampering")
struct AuditLogTests {
    private func log() -> AuditLog { temporaryLog("audit") }
    private func lines(_ log: AuditLog) throws -> [String] { try logLines(log) }
    private func rewrite(_ log: AuditLog, _ lines: [String], newline: Bool = true) throws { try rewriteLog(log, lines, newline: newline) }

    /// A log of five records and the anchor over it.
    private func filled() throws -> (AuditLog, Checkpoint) {
        let (log, anchor) = try anchored()
        return (log, anchor.checkpoint)
    }

    private func anchored() throws -> (AuditLog, Anchor) {
        let log = log()
        let anchor = Anchor()
        try anchor.append(log, (0..<5).map { "k\($0)" }, event: "key.generated")
        return (log, anchor)
    }

    private func verify(_ log: AuditLog, _ checkpoint: Checkpoint) throws -> Int {
        try log.verify(against: [("the token's", checkpoint)]).size
    }

    @Test func recordsAreOneLineEachWithTheirIndexAndThePrivateModes() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let text = try lines(log)
        #expect(text.count == 5)
        for (index, line) in text.enumerated() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["seq"] as? Int == index)
            #expect(object["event"] as? String == "key.generated")
            #expect((object["facts"] as? [String: Any])?["path"] as? String == "k\(index)")
            #expect((object["token"] as? [String: Any])?["serial"] as? String == "0123456789abcdef")
            #expect((object["outcome"] as? [String: Any])?["result"] as? String == "ok")
        }
        // The root is the RFC 6962 root over the exact line bytes.
        let hashes = text.map { MerkleTree.leafHash(Array($0.utf8)) }
        #expect(MerkleTree.root(hashes[...]) == checkpoint.rootHash)
        let fileMode = try FileManager.default.attributesOfItem(atPath: log.logPath)[.posixPermissions] as? Int
        let directoryMode = try FileManager.default.attributesOfItem(atPath: log.directory.path)[.posixPermissions] as? Int
        #expect(fileMode == 0o600 && directoryMode == 0o700)
        #expect(try verify(log, checkpoint) == 5)
    }

    @Test func anEditedFieldIsCaughtByTheCheckpoint() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        text[2] = text[2].replacingOccurrences(of: "\"k2\"", with: "\"kX\"")
        try rewrite(log, text)
        #expect(throws: AuditError(.inconsistent, "")) { try verify(log, checkpoint) }
    }

    @Test(arguments: ["delete", "swap", "insert", "duplicate"])
    func aRemovedMovedOrAddedRecordIsNamed(change: String) throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        switch change {
        case "delete": text.remove(at: 1)
        case "swap": text.swapAt(1, 3)
        case "insert": text.insert(text[0], at: 2)
        default: text.append(text[4])
        }
        try rewrite(log, text)
        guard case .damaged(let index, let reason) = try log.verify() else {
            Issue.record("\(change) was accepted")
            return
        }
        #expect(index < text.count, "\(reason)")
        #expect(throws: AuditError(.inconsistent, "")) { try verify(log, checkpoint) }
    }

    @Test func aCutOffTailAndAnOlderLogPutBackAreCaught() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let text = try lines(log)
        try rewrite(log, Array(text.prefix(3)))
        #expect(try log.verify() == .intact(leafHashes: text.prefix(3).map { MerkleTree.leafHash(Array($0.utf8)) }))
        do {
            _ = try verify(log, checkpoint)
            Issue.record("a cut-off log was accepted")
        } catch let error as AuditError {
            #expect(error.reason.contains("cut off"))
        }
    }

    @Test func aTornLineIsReportedRefusesAppendsAndIsRepairedOnlyOnPurpose() throws {
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        text.append("{\"seq\":5,\"tim")
        try rewrite(log, text, newline: false)
        guard case .damaged(let index, let reason) = try log.verify() else {
            Issue.record("a torn line was accepted")
            return
        }
        #expect(index == 5 && reason.contains("torn"))
        #expect(throws: AuditError(.tornTail, "")) { try anchor.append(log, ["x"]) }
        #expect(try log.repairTornTail(anchor: anchor.checkpoint) > 0)
        if case .intact(let hashes) = try log.verify() { #expect(hashes.count == 5) } else { Issue.record("not repaired") }
        #expect(try anchor.append(log, ["audit.repaired"]).size == 6)
    }

    @Test func aSealedRecordThatLostItsNewlineIsTamperingAndNotRepaired() throws {
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let before = try Data(contentsOf: URL(fileURLWithPath: log.logPath))
        try rewrite(log, try lines(log), newline: false)
        do {
            _ = try log.repairTornTail(anchor: anchor.checkpoint)
            Issue.record("a sealed record was cut")
        } catch let error as AuditError {
            #expect(error.code == .inconsistent && error.reason.contains("sealed"), "\(error)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: log.logPath)).count == before.count - 1)
    }

    @Test func anEditWithTheCacheRemovedIsRefusedAndNeverSigned() throws {
        for change in ["edit", "renumber", "delete"] {
            let (log, anchor) = try anchored()
            defer { try? FileManager.default.removeItem(at: log.directory) }
            var text = try lines(log)
            switch change {
            case "edit": text[1] = text[1].replacingOccurrences(of: "\"k1\"", with: "\"kX\"")
            case "renumber":
                text.remove(at: 1)
                for index in 1..<text.count { text[index] = text[index].replacingOccurrences(of: "\"seq\":\(index + 1)", with: "\"seq\":\(index)") }
            default: text.removeLast()
            }
            try rewrite(log, text)
            try? FileManager.default.removeItem(at: log.directory.appendingPathComponent("0123456789abcdef.tree"))
            let sealedBefore = anchor.checkpoint
            #expect(throws: AuditError(.inconsistent, ""), "\(change)") { try anchor.append(log, ["next"]) }
            #expect(anchor.checkpoint == sealedBefore, "\(change): a checkpoint was signed over the edited log")
            #expect(try lines(log).count == text.count, "\(change): a record was appended")
        }
    }

    @Test func anOlderLogPutBackWithItsOlderCacheIsRefused() throws {
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let cachePath = log.directory.appendingPathComponent("0123456789abcdef.tree").path
        let oldLog = try Data(contentsOf: URL(fileURLWithPath: log.logPath))
        let oldCache = try Data(contentsOf: URL(fileURLWithPath: cachePath))
        try anchor.append(log, ["later"])
        try oldLog.write(to: URL(fileURLWithPath: log.logPath))
        try oldCache.write(to: URL(fileURLWithPath: cachePath))
        #expect(throws: AuditError(.inconsistent, "")) { try anchor.append(log, ["next"]) }
        do {
            try log.requireExtends(anchor.checkpoint)
            Issue.record("a rolled-back log was accepted")
        } catch let error as AuditError {
            #expect(error.reason.contains("cut off") || error.reason.contains("older"), "\(error)")
        }
    }

    @Test func aCacheMadeToFitAForgedLogIsNotTrusted() throws {
        // The attacker rewrites the log and a cache that matches it (and a checkpoint file, which
        // is never read for this): the anchor's root is not the forged tree's, so the cache is
        // not used, the full read finds the forgery, and nothing is signed.
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let forged = temporaryLog("forged")
        defer { try? FileManager.default.removeItem(at: forged.directory) }
        let forger = Anchor()
        try forger.append(forged, (0..<5).map { "f\($0)" }, event: "key.generated")
        for name in ["0123456789abcdef.jsonl", "0123456789abcdef.tree"] {
            let data = try Data(contentsOf: forged.directory.appendingPathComponent(name))
            try data.write(to: log.directory.appendingPathComponent(name))
        }
        let before = anchor.checkpoint
        #expect(throws: AuditError(.inconsistent, "")) { try anchor.append(log, ["next"]) }
        #expect(anchor.checkpoint == before)
    }

    @Test func filesOthersCouldWriteAreRefusedWithTheFix() throws {
        for (what, mode) in [("directory", 0o777), ("log", 0o666), ("log", 0o620)] {
            let (log, anchor) = try anchored()
            defer { try? FileManager.default.removeItem(at: log.directory) }
            chmod(what == "directory" ? log.directory.path : log.logPath, mode_t(mode))
            do {
                try anchor.append(log, ["x"])
                Issue.record("\(what) \(String(mode, radix: 8)) was trusted")
            } catch let error as AuditError {
                #expect(error.code == .untrustedFile, "\(error)")
                #expect(error.reason.contains("chmod go-w"), "\(error)")
            }
        }
    }

    @Test func aFIFOOrALinkAtTheLogsPathIsRefusedWithoutHanging() throws {
        for kind in ["fifo", "symlink"] {
            let log = log()
            defer { try? FileManager.default.removeItem(at: log.directory) }
            try FileManager.default.createDirectory(at: log.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if kind == "fifo" {
                #expect(mkfifo(log.logPath, 0o600) == 0)
            } else {
                try FileManager.default.createSymbolicLink(atPath: log.logPath, withDestinationPath: "/dev/zero")
            }
            #expect(throws: AuditError(.untrustedFile, ""), "\(kind)") { try Anchor().append(log, ["x"]) }
            #expect(throws: AuditError(.untrustedFile, ""), "\(kind)") { try log.hasTornTail() }
            #expect(throws: AuditError(.untrustedFile, ""), "\(kind)") { try log.verify(against: []) }
            #expect(throws: AuditError(.untrustedFile, ""), "\(kind)") { try log.appendUnsealed([AuditEntry(event: "x")]) }
        }
    }

    @Test func concurrentAppendsKeepAValidLog() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for round in 0..<10 {
                _ = try? log.appendUnsealed([AuditEntry(event: "api.call", facts: ["worker": .integer(worker), "round": .integer(round)])])
            }
        }
        guard case .intact(let hashes) = try log.verify() else {
            Issue.record("concurrent appends broke the log")
            return
        }
        #expect(hashes.count == 40)
    }

    @Test func aLogThatCannotBeWrittenFailsClosed() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("audit-blocked-\(UUID())")
        try Data().write(to: base)
        defer { try? FileManager.default.removeItem(at: base) }
        let blocked = AuditLog(directory: base.appendingPathComponent("audit"), token: .init(serial: "s", label: "fb"),
                               tool: .init(name: "t", version: "1"))
        #expect(throws: (any Error).self) { try Anchor().append(blocked, ["x"]) }
    }

    /// A full verification decodes only what no signed checkpoint vouches for: the records a
    /// checkpoint sealed are hashed, and the root decides. Shown with a line no tool writes,
    /// sealed by a checkpoint made over it: accepted inside the sealed range, refused past it.
    @Test func recordsACheckpointSealedAreHashedAndTheRootDecides() throws {
        let log = temporaryLog("audit-vouched")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try anchor.append(log, ["a", "b", "c"])
        var text = try logLines(log)
        text[1] = "not a record"
        try rewriteLog(log, text)
        let leaves = text.map { MerkleTree.leafHash(Array($0.utf8)) }
        let sealedOverIt = try Checkpoint(origin: Anchor.origin, treeSize: 3, rootHash: MerkleTree.root(leaves[...]))
        #expect(try log.verify(against: [("the token's", sealedOverIt)]).size == 3)
        let sealedBefore = try Checkpoint(origin: Anchor.origin, treeSize: 1, rootHash: MerkleTree.root(leaves[..<1]))
        do {
            _ = try log.verify(against: [("the token's", sealedBefore)])
            Issue.record("a line past the checkpoint that is not a record was accepted")
        } catch let error as AuditError {
            #expect(error.code == .inconsistent)
            #expect(error.reason.hasPrefix("record 1: line 1 is not an audit record"), "\(error)")
        }
    }

    /// A verification beside a writer (the proxy appends while an auditor verifies) reads the
    /// log up to where it stood when no append was under way: a record half-written when the
    /// verification starts is neither taken for a torn line nor read half.
    @Test func aVerificationBesideAnAppendReadsOnlyWholeRecords() throws {
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let other = temporaryLog("audit-source")
        defer { try? FileManager.default.removeItem(at: other.directory) }
        try Anchor().append(other, (0..<5).map { "k\($0)" }, event: "key.generated")
        try other.appendUnsealed([AuditEntry(event: "key.generated", facts: ["path": .string("k5")])])
        let record = Array(try #require(logLines(other).last).utf8) + [0x0A]
        // A writer holds the lock and has written half of record 5.
        let lock = try FileLock.acquire(log.lockPath, timeout: 5)
        let handle = try #require(FileHandle(forWritingAtPath: log.logPath))
        handle.seekToEndOfFile()
        handle.write(Data(record[..<(record.count / 2)]))
        let checkpoint = anchor.checkpoint
        let outcome = Mutex<Result<Int, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let result = Result { try log.verify(against: [("the token's", checkpoint)]).size }
            outcome.withLock { $0 = result }
            done.signal()
        }
        usleep(300_000)
        handle.write(Data(record[(record.count / 2)...]))
        try handle.close()
        lock.release()
        done.wait()
        #expect(try outcome.withLock { $0 }?.get() == 6)
    }

    /// A record longer than a reader takes for one is never written: the append fails and the
    /// log stays as it was (else one oversized fact would make every later verify fail).
    @Test func aRecordLongerThanAReaderTakesIsNeverWritten() throws {
        let (log, anchor) = try anchored()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let before = try logLines(log)
        let huge = AuditEntry(event: "test.huge", facts: ["blob": .string(String(repeating: "x", count: 1 << 20))])
        #expect(throws: AuditError(.unwritable, "")) {
            try log.append([huge], anchor: { anchor.checkpoint }) { tree in tree }
        }
        #expect(throws: AuditError(.unwritable, "")) { try log.appendUnsealed([huge]) }
        #expect(try logLines(log) == before)
        #expect(try log.verify(against: [("the token's", anchor.checkpoint)]).size == before.count)
    }

    /// When the sealed prefix's root is not the checkpoint's, the log is read again with every
    /// record checked: the report names the first record out of place, not just "edited".
    @Test func aSealedRecordOutOfPlaceIsStillNamed() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        text.swapAt(2, 3)
        try rewrite(log, text)
        do {
            _ = try verify(log, checkpoint)
            Issue.record("swapped records were accepted")
        } catch let error as AuditError {
            #expect(error.reason.hasPrefix("record 2: line 2 has seq 3"), "\(error)")
        }
    }
}

@Suite("Audit log: lines others could read differently")
struct AuditLogFormTests {
    @Test func anUnsealedRecordWithADuplicateKeyOrOtherSpacingIsNeverSealed() throws {
        for change in ["duplicate", "spacing"] {
            let log = temporaryLog("audit-form")
            let anchor = Anchor()
            defer { try? FileManager.default.removeItem(at: log.directory) }
            try anchor.append(log, ["a"])
            try log.appendUnsealed([AuditEntry(event: "login.failed")])
            var lines = try logLines(log)
            lines[1] = change == "duplicate"
                ? String(lines[1].dropLast()) + #","seq":0,"event":"key.deleted"}"#
                : lines[1].replacingOccurrences(of: #""event":"#, with: #""event": "#)
            try rewriteLog(log, lines)
            let before = anchor.checkpoint
            #expect(throws: AuditError(.inconsistent, ""), "\(change)") { try anchor.append(log, ["b"]) }
            #expect(anchor.checkpoint == before)
            #expect(throws: AuditError(.inconsistent, ""), "\(change)") { try log.verify(against: [("the token's", before)]) }
        }
    }

    @Test func aLineOfMoreThanAMebibyteIsDamageAndNotHeldWhole() throws {
        let log = temporaryLog("audit-long")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try anchor.append(log, ["a"])
        let handle = try #require(FileHandle(forWritingAtPath: log.logPath))
        handle.seekToEndOfFile()
        handle.write(Data(repeating: UInt8(ascii: "x"), count: 3 << 20) + Data("\n".utf8))
        try handle.close()
        try? FileManager.default.removeItem(at: log.directory.appendingPathComponent("0123456789abcdef.tree"))
        do {
            _ = try log.verify(against: [("the token's", anchor.checkpoint)])
            Issue.record("a 3 MiB line was accepted")
        } catch let error as AuditError {
            #expect(error.reason.contains("longer than 1 MiB"), "\(error)")
        }
        #expect(throws: AuditError(.inconsistent, "")) { try anchor.append(log, ["b"]) }
    }
}
