import AuditTrail
import Foundation
import Testing
import TransparencyLog

@Suite("Audit log: append, verify, every kind of tampering")
struct AuditLogTests {
    private func log() -> AuditLog {
        AuditLog(directory: FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID())"),
                 token: .init(serial: "0123456789abcdef", label: "fb"), tool: .init(name: "fireblocks-hsm", version: "test"))
    }

    private func lines(_ log: AuditLog) throws -> [String] {
        try String(contentsOfFile: log.logPath, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    private func rewrite(_ log: AuditLog, _ lines: [String], newline: Bool = true) throws {
        try (lines.joined(separator: "\n") + (newline ? "\n" : "")).write(toFile: log.logPath, atomically: true, encoding: .utf8)
    }

    /// A log of five records and the checkpoint over it.
    private func filled() throws -> (AuditLog, Checkpoint) {
        let log = log()
        let entries = (0..<5).map { AuditEntry(event: "key.generated", facts: ["label": .string("k\($0)"), "bits": .integer(2048)]) }
        let (size, root) = try log.append(entries)
        return (log, try Checkpoint(origin: "fireblocks-hsm/0123456789abcdef/audit", treeSize: size, rootHash: root))
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
            #expect((object["token"] as? [String: Any])?["serial"] as? String == "0123456789abcdef")
            #expect((object["outcome"] as? [String: Any])?["result"] as? String == "ok")
        }
        // The root is the RFC 6962 root over the exact line bytes.
        let hashes = text.map { MerkleTree.leafHash(Array($0.utf8)) }
        #expect(MerkleTree.root(hashes[...]) == checkpoint.rootHash)
        let fileMode = try FileManager.default.attributesOfItem(atPath: log.logPath)[.posixPermissions] as? Int
        let directoryMode = try FileManager.default.attributesOfItem(atPath: log.directory.path)[.posixPermissions] as? Int
        #expect(fileMode == 0o600 && directoryMode == 0o700)
        #expect(try log.verify(against: checkpoint).size == 5)
    }

    @Test func anEditedFieldIsCaughtByTheCheckpoint() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        text[2] = text[2].replacingOccurrences(of: "\"k2\"", with: "\"kX\"")
        try rewrite(log, text)
        #expect(throws: AuditError.self) { try log.verify(against: checkpoint) }
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
        #expect(throws: AuditError.self) { try log.verify(against: checkpoint) }
    }

    @Test func aCutOffTailAndAnOlderLogPutBackAreCaught() throws {
        let (log, checkpoint) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let text = try lines(log)
        try rewrite(log, Array(text.prefix(3)))
        #expect(try log.verify() == .intact(leafHashes: text.prefix(3).map { MerkleTree.leafHash(Array($0.utf8)) }))
        do {
            _ = try log.verify(against: checkpoint)
            Issue.record("a cut-off log was accepted")
        } catch let error as AuditError {
            #expect(error.reason.contains("cut off"))
        }
    }

    @Test func aTornLineIsReportedRefusesAppendsAndIsRepairedOnlyOnPurpose() throws {
        let (log, _) = try filled()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        var text = try lines(log)
        text.append("{\"seq\":5,\"tim")
        try rewrite(log, text, newline: false)
        guard case .damaged(let index, let reason) = try log.verify() else {
            Issue.record("a torn line was accepted")
            return
        }
        #expect(index == 5 && reason.contains("torn"))
        #expect(throws: AuditError(.tornTail, "")) { try log.append([AuditEntry(event: "x")]) }
        #expect(try log.repairTornTail() > 0)
        if case .intact(let hashes) = try log.verify() { #expect(hashes.count == 5) } else { Issue.record("not repaired") }
        #expect(try log.append([AuditEntry(event: "audit.repaired")]).size == 6)
    }

    @Test func concurrentAppendsKeepAValidLog() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for round in 0..<10 {
                _ = try? log.append([AuditEntry(event: "api.call", facts: ["worker": .integer(worker), "round": .integer(round)])])
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
        #expect(throws: (any Error).self) { try blocked.append([AuditEntry(event: "key.generated")]) }
    }
}
