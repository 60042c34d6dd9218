import AuditTrail
import Foundation
import Testing
import TransparencyLog

@Suite("Audit appender: incremental appends beside other writers")
struct AuditAppenderTests {
    private func entry(_ name: String) -> AuditEntry {
        AuditEntry(event: "proxy.request", facts: ["path": .string(name)])
    }

    @Test func appendsInterleavedWithAnotherWriterKeepOneNumberingAndTheSameRoot() throws {
        let log = temporaryLog("appender")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try anchor.append(log, ["before"])
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        #expect(appender.size == 1)
        #expect(try appender.append([entry("a"), entry("b")]) == 1)
        try log.appendUnsealed([entry("other process")])  // what a failed one-shot command does meanwhile
        #expect(try appender.append([entry("c")], sync: false) == 4)
        let sealed = try anchor.seal(appender)
        guard case .intact(let hashes) = try log.verify() else { Issue.record("the log must verify"); return }
        #expect(sealed.size == 5 && hashes.count == 5)
        #expect(sealed.root == MerkleTree.root(hashes[...]))
    }

    @Test func aLogCutShortTornOrReplacedUnderneathIsRefusedNotRepaired() throws {
        let log = temporaryLog("appender")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let appender = try AuditAppender(log: log, anchor: anchor.checkpoint)
        try appender.append([entry("a"), entry("b")])
        try rewriteLog(log, [try logLines(log)[0]])
        #expect(throws: AuditError(.inconsistent, "")) { try appender.append([entry("c")]) }

        let other = temporaryLog("appender")
        defer { try? FileManager.default.removeItem(at: other.directory) }
        let second = try AuditAppender(log: other, anchor: Anchor().checkpoint)
        try second.append([entry("a")])
        let handle = try #require(FileHandle(forWritingAtPath: other.logPath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":1,".utf8))
        try handle.close()
        #expect(throws: AuditError(.tornTail, "")) { try second.append([entry("b")]) }
        #expect(throws: AuditError(.tornTail, "")) { try AuditAppender(log: other, anchor: Anchor().checkpoint) }

        // Another file put in the log's place while the appender runs.
        let third = temporaryLog("appender")
        defer { try? FileManager.default.removeItem(at: third.directory) }
        let running = try AuditAppender(log: third, anchor: Anchor().checkpoint)
        try running.append([entry("a")])
        let copy = try Data(contentsOf: URL(fileURLWithPath: third.logPath))
        try FileManager.default.removeItem(atPath: third.logPath)
        try copy.write(to: URL(fileURLWithPath: third.logPath))
        chmod(third.logPath, 0o600)
        #expect(throws: AuditError(.inconsistent, "")) { try running.append([entry("b")]) }
    }

    @Test func anAppenderStartsOnlyOnALogThatExtendsTheAnchor() throws {
        let log = temporaryLog("appender")
        let anchor = Anchor()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try anchor.append(log, ["a", "b", "c"])
        // An edit of a sealed record, the cache removed: the appender must read it all and refuse.
        var lines = try logLines(log)
        lines[1] = lines[1].replacingOccurrences(of: "\"b\"", with: "\"x\"")
        try rewriteLog(log, lines)
        try FileManager.default.removeItem(at: log.directory.appendingPathComponent("0123456789abcdef.tree"))
        #expect(throws: AuditError(.inconsistent, "")) { try AuditAppender(log: log, anchor: anchor.checkpoint) }
        // The same edit with the cache in place: the appender starts from the anchored tree
        // (the cache), and what it seals is that tree, not the edited file's.
        let clean = temporaryLog("appender")
        let cleanAnchor = Anchor()
        defer { try? FileManager.default.removeItem(at: clean.directory) }
        try cleanAnchor.append(clean, ["a", "b", "c"])
        let anchored = cleanAnchor.checkpoint
        let original = try logLines(clean)
        var edited = original
        edited[1] = edited[1].replacingOccurrences(of: "\"b\"", with: "\"x\"")
        try rewriteLog(clean, edited)
        let appender = try AuditAppender(log: clean, anchor: anchored)
        try appender.append([entry("d")])
        let sealed = try cleanAnchor.seal(appender)
        let signedOver = (original + [try logLines(clean)[3]]).map { MerkleTree.leafHash(Array($0.utf8)) }
        #expect(anchored.treeSize == 3 && sealed.root == MerkleTree.root(signedOver[...]))
        #expect(throws: AuditError(.inconsistent, "")) { try clean.verify(against: [("the token's", cleanAnchor.checkpoint)]) }
    }
}
