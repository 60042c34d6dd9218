import AuditTrail
import Foundation
import Testing
import TransparencyLog

@Suite("Audit appender: incremental appends beside other writers")
struct AuditAppenderTests {
    private func log() -> AuditLog {
        AuditLog(directory: FileManager.default.temporaryDirectory.appendingPathComponent("appender-\(UUID())"),
                 token: .init(serial: "0123456789abcdef", label: "fb"), tool: .init(name: "fireblocks-hsm", version: "test"))
    }

    private func entry(_ name: String) -> AuditEntry {
        AuditEntry(event: "proxy.request", facts: ["path": .string(name)])
    }

    @Test func appendsInterleavedWithAnotherWriterKeepOneNumberingAndTheSameRoot() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        try log.append([entry("before")])
        let appender = try AuditAppender(log: log)
        #expect(appender.size == 1)
        #expect(try appender.append([entry("a"), entry("b")]) == 1)
        try log.append([entry("other process")])  // what a one-shot command does meanwhile
        #expect(try appender.append([entry("c")], sync: false) == 4)
        let sealed = try appender.seal { $0 }
        guard case .intact(let hashes) = try log.verify() else { Issue.record("the log must verify"); return }
        #expect(sealed.size == 5 && hashes.count == 5)
        #expect(sealed.root == MerkleTree.root(hashes[...]))
    }

    @Test func aLogCutShortOrTornUnderneathIsRefusedNotRepaired() throws {
        let log = log()
        defer { try? FileManager.default.removeItem(at: log.directory) }
        let appender = try AuditAppender(log: log)
        try appender.append([entry("a"), entry("b")])
        let text = try String(contentsOfFile: log.logPath, encoding: .utf8)
        let first = text.split(separator: "\n")[0] + "\n"
        try String(first).write(toFile: log.logPath, atomically: false, encoding: .utf8)
        #expect(throws: AuditError(.inconsistent, "")) { try appender.append([entry("c")]) }

        let other = self.log()
        defer { try? FileManager.default.removeItem(at: other.directory) }
        let second = try AuditAppender(log: other)
        try second.append([entry("a")])
        let handle = try #require(FileHandle(forWritingAtPath: other.logPath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"seq\":1,".utf8))
        try handle.close()
        #expect(throws: AuditError(.tornTail, "")) { try second.append([entry("b")]) }
        #expect(throws: AuditError(.tornTail, "")) { try AuditAppender(log: other) }
    }
}
