@testable import AuditTrail
import DurableFiles
import Foundation
import Synchronization
import Testing
import TransparencyLog

/// Appends read only what is new, thanks to the cached frontier, and the cache is never
/// trusted beyond the last signed checkpoint.
@Suite("Audit log: the cached frontier")
struct TreeCacheTests {
    private let origin = "fireblocks-hsm/0123456789abcdef/audit"

    private func log() -> AuditLog { temporaryLog("tree") }
    /// The anchor of each log (what its token would hold).
    private let anchors = AnchorsByLog()

    private func appendSealed(_ log: AuditLog, _ names: [String]) throws -> (size: Int, root: [UInt8]) {
        try anchors[log].append(log, names)
    }

    private func fullRoot(_ log: AuditLog) throws -> (size: Int, root: [UInt8]) {
        guard case .intact(let hashes) = try log.verify() else { throw AuditError(.inconsistent, "damaged") }
        return (hashes.count, MerkleTree.root(hashes[...]))
    }

    @Test func appendsAfterTheCacheAndBesideAnotherWriterGiveTheFullRoot() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a", "b", "c"])
        #expect(FileManager.default.fileExists(atPath: log.directory.appendingPathComponent("0123456789abcdef.tree").path))
        let second = try appendSealed(log, ["d"])
        #expect(second.size == 4)
        #expect(second.root == (try fullRoot(log)).root)
        // The proxy appends without touching the cache; the next one-shot append reads just that.
        try AuditAppender(log: log, anchor: anchors[log].checkpoint).append([AuditEntry(event: "proxy.response", facts: [:])])
        let third = try appendSealed(log, ["e", "f"])
        #expect(third.size == 7)
        #expect(third.root == (try fullRoot(log)).root)
    }

    @Test func theCacheFileHoldsTheTreeAndAnythingElseReadsAsNone() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let tree = try appendSealed(log, ["a", "b", "c", "d", "e"])
        let path = log.directory.appendingPathComponent("0123456789abcdef.tree").path
        let cache = try #require(TreeCache.load(from: path))
        #expect(cache.size == tree.size)
        #expect(cache.range?.root == tree.root)
        #expect(cache.offset == (try Data(contentsOf: URL(fileURLWithPath: log.logPath))).count)
        #expect(TreeCache(text: cache.text) == cache)
        // A shorter rewrite leaves nothing of the longer one behind.
        TreeCache(size: 1, offset: 10, lastLeafHash: nil, frontier: [String(repeating: "ab", count: 32)]).save(to: path)
        #expect(TreeCache.load(from: path) == TreeCache(size: 1, offset: 10, lastLeafHash: nil, frontier: [String(repeating: "ab", count: 32)]))
        // The earlier JSON form, a cut-off file, a wrong header: none is a cache.
        for text in [#"{"size":5,"offset":10,"frontier":[]}"#, String(cache.text.dropLast(3)), "tree cache 2\n5\n10\n-\n\n"] {
            #expect(TreeCache(text: text) == nil)
        }
    }

    @Test func aDamagedCacheIsNotTrustedAndNeverBecomesASignedRoot() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a", "b", "c"])
        let cache = log.directory.appendingPathComponent("0123456789abcdef.tree").path
        var lines = try String(contentsOfFile: cache, encoding: .utf8).split(separator: "\n").map(String.init)
        // One frontier hash changed (the lines after header, size, offset and last leaf): it
        // no longer matches the last checkpoint's root.
        try #require(lines.count > 4)
        var hash = Array(lines[4])
        hash[3] = hash[3] == "0" ? "1" : "0"
        lines[4] = String(hash)
        try (lines.joined(separator: "\n") + "\n").write(toFile: cache, atomically: true, encoding: .utf8)
        let next = try appendSealed(log, ["d"])
        #expect(next.root == (try fullRoot(log)).root)
    }

    @Test func anEditBeforeTheCachedEndIsCaughtByTheNextCheckpoint() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a", "b", "c"])
        // An edit of an earlier record (same length, so the offsets still fit).
        var lines = try String(contentsOfFile: log.logPath, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[0] = lines[0].replacingOccurrences(of: "\"a\"", with: "\"x\"")
        try (lines.joined(separator: "\n") + "\n").write(toFile: log.logPath, atomically: true, encoding: .utf8)
        let next = try appendSealed(log, ["d"])
        // The checkpoint is over the history as it was, so the edited file no longer matches it.
        #expect(next.root != (try fullRoot(log)).root)
        #expect(throws: AuditError(.inconsistent, "")) {
            try log.verify(against: [("the token's", try Checkpoint(origin: origin, treeSize: next.size, rootHash: next.root))])
        }
    }

    @Test func theCacheIsNeverWrittenIntoAFileHardLinkedAtItsPath() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a"])
        let path = log.directory.appendingPathComponent("0123456789abcdef.tree").path
        let precious = log.directory.appendingPathComponent("precious").path
        try Data("keep me\n".utf8).write(to: URL(fileURLWithPath: precious))
        try FileManager.default.removeItem(atPath: path)
        #expect(link(precious, path) == 0)
        TreeCache(size: 1, offset: 10, lastLeafHash: nil, frontier: [String(repeating: "ab", count: 32)]).save(to: path)
        #expect(try String(contentsOfFile: precious, encoding: .utf8) == "keep me\n")
    }

    @Test func aTornTailIsStillRefusedWithACache() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a"])
        let handle = try #require(FileHandle(forWritingAtPath: log.logPath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":1,".utf8))
        try handle.close()
        #expect(throws: AuditError(.tornTail, "")) { try appendSealed(log, ["b"]) }
    }

    @Test func aLongRunningAppendersCheckpointLeavesACacheTheNextCommandUses() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        _ = try appendSealed(log, ["a"])
        let appender = try AuditAppender(log: log, anchor: anchors[log].checkpoint)
        try appender.append([AuditEntry(event: "proxy.request", facts: [:])], sync: false)
        let sealed = try anchors[log].seal(appender)
        let afterSeal = try fullRoot(log)
        #expect(sealed.size == 2 && sealed.root == afterSeal.root)
        let next = try appendSealed(log, ["b"])
        let afterNext = try fullRoot(log)
        #expect(next.size == 3 && next.root == afterNext.root)
    }
}

/// One in-memory anchor per log directory.
final class AnchorsByLog: Sendable {
    private let anchors = Mutex<[URL: Anchor]>([:])
    subscript(log: AuditLog) -> Anchor {
        anchors.withLock { anchors in
            if let anchor = anchors[log.directory] { return anchor }
            let anchor = Anchor()
            anchors[log.directory] = anchor
            return anchor
        }
    }
}
