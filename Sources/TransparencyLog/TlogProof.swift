#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): an offline proof that one entry is in a log,
/// checkable without the log: the entry's index, its RFC 6962 inclusion path (leaf's sibling
/// first, up to the root's child), and the signed checkpoint the path leads to.
///
///     c2sp.org/tlog-proof@v1
///     [extra <base64>]
///     index <decimal>
///     <base64 hash>        (one line per hash, zero or more)
///     <empty line>
///     <the signed checkpoint, verbatim>
public struct TlogProof: Sendable, Equatable {
    /// The first line.
    public static let header = "c2sp.org/tlog-proof@v1"

    /// Opaque, unauthenticated extra data (never trusted).
    public let extra: [UInt8]?
    /// The entry's zero-based index in the log.
    public let index: Int
    /// The inclusion path, 32-byte SHA-256 hashes.
    public let path: [MerkleTree.Hash]
    /// The signed checkpoint the path leads to.
    public let checkpoint: SignedNote

    /// A proof from its parts.
    public init(index: Int, path: [MerkleTree.Hash], checkpoint: SignedNote, extra: [UInt8]? = nil) throws(CheckpointError) {
        guard index >= 0, path.allSatisfy({ $0.count == 32 }) else { throw CheckpointError("a tlog-proof has an index and 32-byte hashes") }
        self.index = index
        self.path = path
        self.checkpoint = checkpoint
        self.extra = extra
    }

    /// The file's text.
    public var formatted: String {
        var text = Self.header + "\n"
        if let extra { text += "extra \(Data(extra).base64EncodedString())\n" }
        text += "index \(index)\n"
        text += path.map { Data($0).base64EncodedString() + "\n" }.joined()
        return text + "\n" + checkpoint.formatted
    }

    /// Parses a proof file strictly: the header, an optional `extra` line, `index N` (no
    /// leading zeros), 32-byte base64 hashes, an empty line, a signed checkpoint.
    public init(parsing text: String) throws(CheckpointError) {
        guard let separator = text.utf8.firstRange(of: "\n\n".utf8) else { throw CheckpointError("a tlog-proof has an empty line before its checkpoint") }
        var lines = text[..<separator.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.first == Self.header else { throw CheckpointError("a tlog-proof starts with '\(Self.header)'") }
        lines.removeFirst()
        var extra: [UInt8]?
        if let first = lines.first, first.hasPrefix("extra ") {
            guard let bytes = Data(base64Encoded: String(first.dropFirst(6))) else { throw CheckpointError("a tlog-proof's extra line is base64") }
            extra = Array(bytes)
            lines.removeFirst()
        }
        guard let line = lines.first, line.hasPrefix("index "), let index = Int(line.dropFirst(6)), index >= 0,
              String(index) == line.dropFirst(6) else {
            throw CheckpointError("a tlog-proof names its entry as 'index N'")
        }
        lines.removeFirst()
        var path: [MerkleTree.Hash] = []
        for line in lines {
            guard let hash = Data(base64Encoded: line), hash.count == 32 else { throw CheckpointError("a tlog-proof's path is 32-byte base64 hashes, one per line") }
            path.append(Array(hash))
        }
        let note = try SignedNote(parsing: String(text[separator.upperBound...]))
        try self.init(index: index, path: path, checkpoint: note, extra: extra)
    }

    /// True when the path leads from `leaf` (the entry's bytes; hashed as an RFC 6962 leaf) at
    /// ``index`` to the checkpoint's root. The checkpoint's signature is checked separately
    /// (``SignedNote/verify(name:publicKey:)``): without it the proof proves nothing.
    public func includes(leaf: some Collection<UInt8>) throws(CheckpointError) -> Bool {
        let tree = try Checkpoint(noteText: checkpoint.text)
        return MerkleTree.verifyInclusion(leafHash: MerkleTree.leafHash(leaf), index: index, treeSize: tree.treeSize,
                                          proof: path, rootHash: tree.rootHash)
    }
}
