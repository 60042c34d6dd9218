import AuditTrail
import Foundation
import Synchronization
import TransparencyLog

/// What the token holds in production: the last anchored checkpoint (here in memory), which every
/// sealed append must extend and then moves forward.
final class Anchor: Sendable {
    static let origin = "fireblocks-hsm/0123456789abcdef/audit"
    private let anchored: Mutex<Checkpoint>
    /// The anchored checkpoint; tests also set it, as an attacker who rolls the token back would.
    var checkpoint: Checkpoint {
        get { anchored.withLock { $0 } }
        set { anchored.withLock { $0 = newValue } }
    }

    init() {
        anchored = Mutex(try! Checkpoint(origin: Self.origin, treeSize: 0, rootHash: MerkleTree.root([])))
    }

    /// A sealed append of one record per name, as AuditService makes it.
    @discardableResult
    func append(_ log: AuditLog, _ names: [String], event: String = "proxy.request") throws -> (size: Int, root: [UInt8]) {
        try log.append(names.map { AuditEntry(event: event, facts: ["path": .string($0)]) }, anchor: { checkpoint }) { tree in
            checkpoint = try Checkpoint(origin: Self.origin, treeSize: tree.size, rootHash: tree.root)
            return tree
        }
    }

    /// Seals what an appender holds.
    @discardableResult
    func seal(_ appender: AuditAppender) throws -> (size: Int, root: [UInt8]) {
        try appender.seal { tree in
            checkpoint = try Checkpoint(origin: Self.origin, treeSize: tree.size, rootHash: tree.root)
            return tree
        }
    }
}

func temporaryLog(_ prefix: String) -> AuditLog {
    AuditLog(directory: FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID())"),
             token: .init(serial: "0123456789abcdef", label: "fb"), tool: .init(name: "fireblocks-hsm", version: "test"))
}

func logLines(_ log: AuditLog) throws -> [String] {
    try String(contentsOfFile: log.logPath, encoding: .utf8).split(separator: "\n").map(String.init)
}

func rewriteLog(_ log: AuditLog, _ lines: [String], newline: Bool = true) throws {
    let bytes = Data((lines.joined(separator: "\n") + (newline ? "\n" : "")).utf8)
    // In place, as an attacker with write access to the file would (keeps mode and inode).
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log.logPath))
    try handle.truncate(atOffset: 0)
    try handle.write(contentsOf: bytes)
    try handle.close()
}

/// What `audit archive` does, for a log of these tests: the segments copied to `directory`,
/// the `audit.archived` record (listing every segment archived so far) appended and sealed,
/// then their stubs, naming that record, in place of their files.
@discardableResult
func archiveSegments(_ log: AuditLog, _ anchor: Anchor, _ segments: [AuditSegments.Sealed], to directory: String) throws -> [ArchivedSegment] {
    let stubs = try segments.map { try log.copySegment($0, to: directory) }
    let soFar = try log.segments().sealed.compactMap(\.stub).filter { old in !stubs.contains { $0.first == old.first } } + stubs
    let facts: [String: AuditValue] = ["archivedSoFar": .object(["segments": .integer(soFar.count), "sha256": .string(ArchivedSegment.digest(soFar))])]
    let tree = try log.append([AuditEntry(event: "audit.archived", facts: facts)], anchor: { anchor.checkpoint }) { tree in
        anchor.checkpoint = try Checkpoint(origin: Anchor.origin, treeSize: tree.size, rootHash: tree.root)
        return tree
    }
    let named = stubs.map { $0.named(by: tree.size - 1) }
    try log.leaveStubs(named)
    return named
}
