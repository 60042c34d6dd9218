import ErrorShape
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import TransparencyLog

/// An inclusion proof computed from the tiles and checked: the record's own bytes (read from
/// the log through the offset index) lead to the anchored root.
public struct AuditInclusionProof: Sendable, Equatable {
    /// The record's index.
    public let index: Int
    /// The tree it is proven in (the anchored checkpoint's size).
    public let treeSize: Int
    /// The RFC 6962 audit path, the leaf's sibling first.
    public let path: [MerkleTree.Hash]
    /// The record's line, exactly as the log holds it (the leaf).
    public let record: [UInt8]
    /// Distinct tiles read.
    public let tilesRead: Int
}

/// A consistency proof computed from the tiles and checked: both roots are prefixes of the
/// anchored tree (each by a proof to its root), and the proof leads from one to the other.
public struct AuditConsistencyProof: Sendable, Equatable {
    /// The older tree's size and root.
    public let oldSize: Int
    public let oldRoot: MerkleTree.Hash
    /// The newer tree's size and root.
    public let newSize: Int
    public let newRoot: MerkleTree.Hash
    /// PROOF(oldSize, D[newSize]) of RFC 6962 §2.1.2.
    public let proof: [MerkleTree.Hash]
    /// Distinct tiles read.
    public let tilesRead: Int
}

/// What ``AuditLog/rebuildTiles(anchor:)`` did.
public struct TileRebuildReport: Sendable, Equatable, Codable {
    /// Records the tiles were built over.
    public let records: Int
    /// Full tiles written.
    public let fullTiles: Int
    /// Partial tiles written (the right edge).
    public let partialTiles: Int
    /// Full tiles of the directory it replaced that were compared with the rebuilt ones.
    public let compared: Int
    /// How many of them differed (replaced), and the paths of the first 100.
    public let replacedCount: Int
    public let replaced: [String]
}

extension AuditLog {
    /// The tree of `size` records as this log's tiles hold it (full tiles, or the prefix of a
    /// partial at least as wide); a tile that is not there is ``AuditError/Code/tilesUnusable``.
    func tiledTree(size: Int) -> TiledTree {
        let store = TileStore(root: tilesPath)
        return TiledTree(size: size) { tile in
            guard let hashes = try store.readPrefix(tile) else {
                throw AuditError(.tilesUnusable, "\(store.path(tile)) is not there: the tiles do not cover the tree of \(size) records", facts: ErrorFacts(path: store.path(tile)))
            }
            return hashes
        }
    }

    /// Runs `body`, a ``TileError`` (a tile of the wrong shape) becoming ``AuditError/Code/tilesUnusable``.
    func readingTiles<R>(_ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as TileError {
            throw AuditError(.tilesUnusable, "the tiles at \(tilesPath) cannot be used: \(error.reason)", facts: ErrorFacts(path: tilesPath))
        }
    }

    /// The inclusion proof of record `index` in the tree of `anchored` (the checkpoint the
    /// caller verified), from O(log n) tiles, checked before it is returned: the record's line,
    /// found through the offset index, hashes along the path to the anchored root.
    public func inclusionProof(index: Int, anchored: Checkpoint) throws -> AuditInclusionProof {
        try requireTrustedFiles()
        return try readingTiles {
            let tree = tiledTree(size: anchored.treeSize)
            let path = try tree.inclusionProof(index: index)
            guard let located = try locate(record: index), let line = located.line else {
                throw AuditError(.tilesUnusable, "the offset index \(tilesPath)/offsets does not reach record \(index): the tiles do not cover the log yet", facts: ErrorFacts(path: tilesPath))
            }
            let leafHash = MerkleTree.leafHash(line)
            guard MerkleTree.verifyInclusion(leafHash: leafHash, index: index, treeSize: anchored.treeSize, proof: path, rootHash: anchored.rootHash) else {
                if try tree.leafHash(index) == leafHash {
                    throw AuditError(.tilesUnusable, "the inclusion proof of record \(index) computed from the tiles does not lead to the root of the token's checkpoint: a tile differs from the records", facts: ErrorFacts(path: tilesPath, recordIndex: index))
                }
                throw AuditError(.inconsistent, "record \(index) does not verify against the token's checkpoint with the proof the tiles give: the record or its level-0 tile was changed (a full verification says which)", facts: ErrorFacts(path: logPath, recordIndex: index))
            }
            return AuditInclusionProof(index: index, treeSize: anchored.treeSize, path: path, record: line, tilesRead: tree.tilesRead)
        }
    }

    /// The consistency proof from the tree of `oldSize` records to that of `newSize` (both at
    /// most the size of `anchored`, the checkpoint the caller verified), from O(log n) tiles,
    /// checked before it is returned: each of the two roots is proven a prefix of the anchored
    /// tree, and the proof leads from the old root to the new.
    public func consistencyProof(oldSize: Int, newSize: Int, anchored: Checkpoint) throws -> AuditConsistencyProof {
        try requireTrustedFiles()
        return try readingTiles {
            let tree = tiledTree(size: anchored.treeSize)
            let oldRoot = try tree.root(size: oldSize)
            let newRoot = try tree.root(size: newSize)
            for (size, root) in [(oldSize, oldRoot), (newSize, newRoot)] {
                let toAnchor = try tree.consistencyProof(oldSize: size)
                guard MerkleTree.verifyConsistency(oldSize: size, newSize: anchored.treeSize, oldRoot: root, newRoot: anchored.rootHash, proof: toAnchor) else {
                    throw AuditError(.tilesUnusable, "the tiles' tree of \(size) records is not proven a prefix of the token's checkpoint (\(anchored.treeSize) records): a tile differs from the records", facts: ErrorFacts(path: tilesPath))
                }
            }
            let proof = try tree.consistencyProof(oldSize: oldSize, newSize: newSize)
            guard MerkleTree.verifyConsistency(oldSize: oldSize, newSize: newSize, oldRoot: oldRoot, newRoot: newRoot, proof: proof) else {
                throw AuditError(.tilesUnusable, "the consistency proof from \(oldSize) to \(newSize) records computed from the tiles does not verify: a tile differs from the records", facts: ErrorFacts(path: tilesPath))
            }
            return AuditConsistencyProof(oldSize: oldSize, oldRoot: oldRoot, newSize: newSize, newRoot: newRoot, proof: proof, tilesRead: tree.tilesRead)
        }
    }

    /// Where record `index` starts in the log, and its line (nil when the log ends there),
    /// found through the offset index and checked: the line the index points at is record
    /// 256·⌊index/256⌋ (its `seq` and token) and starts a line; so is the one returned. Nil when
    /// the index does not reach that far (tiles not built yet).
    func locate(record index: Int) throws -> (offset: Int, line: [UInt8]?)? {
        let store = TileStore(root: tilesPath)
        let segments = try self.segments()
        if let away = segments.archivedAway.first(where: { $0.first <= index && index < $0.end }) {
            throw AuditSegments.archivedError(away, log: self)
        }
        let tile = index / TileCoordinate.fullWidth
        var base = tile * TileCoordinate.fullWidth
        var offset = 0
        // Where a segment starts is known too (its first record, its first byte): from there
        // when that is nearer (and never from inside an archived segment).
        let segmentStart: (first: Int, start: Int) = segments.sealed.first(where: { $0.first <= index && index < $0.end }).map { ($0.first, $0.start) }
            ?? (segments.base, segments.baseBytes)
        if segmentStart.first > base || (segmentStart.first == base && tile > 0) {
            base = segmentStart.first
            offset = segmentStart.start
        } else if tile > 0 {
            guard let entry = try store.offset(tile - 1) else { return nil }
            offset = entry
            guard try byte(at: offset - 1, segments: segments) == 0x0A else {
                throw AuditError(.tilesUnusable, "entry \(tile - 1) of \(store.offsetsPath) (byte \(offset)) is not the start of a line of \(logPath)", facts: ErrorFacts(path: store.offsetsPath))
            }
        }
        var current = base
        var start = offset
        var found: [UInt8]?
        var problem: String?
        let decoder = JSONDecoder()
        try LogLines.forEach(self, segments: segments, from: offset) { line, end in
            if current == base || current == index, let wrong = LogScan.problem(line, at: current, serial: token.serial, decoder: decoder) {
                problem = wrong
                return false
            }
            if current == index {
                found = Array(line)
                return false
            }
            current += 1
            start = end
            return true
        }
        if let problem {
            throw AuditError(.tilesUnusable, "the offset index \(store.offsetsPath) puts record \(base) at byte \(offset) of \(logPath), but there \(problem)", facts: ErrorFacts(path: store.offsetsPath))
        }
        guard found != nil || current == index else {
            throw AuditError(.inconsistent, "\(logPath) ends at record \(current), before record \(index)", facts: ErrorFacts(path: logPath, recordIndex: current))
        }
        return (start, found)
    }

    /// The byte at `offset` of the whole log (nil past its end).
    private func byte(at offset: Int, segments: AuditSegments) throws -> UInt8? {
        guard offset >= 0 else { return nil }
        let path: String
        var local = offset - segments.baseBytes
        if let segment = segments.sealed.first(where: { $0.start <= offset && offset < $0.start + $0.bytes }) {
            guard let file = segment.path else { throw AuditSegments.archivedError(segment, log: self) }
            path = file
            local = offset - segment.start
        } else {
            path = logPath
        }
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        return AuditFiles.readFully(descriptor, at: local, count: 1)?.first
    }

    /// Rebuilds the tiles from the records, replacing the directory (a person's decision, after
    /// a tile was found to differ): under the lock, once the log is found to extend `anchor`
    /// (the checkpoint the caller verified; nil only for a trail without one). Reports the old
    /// full tiles that differed.
    public func rebuildTiles(anchor: Checkpoint?) throws -> TileRebuildReport {
        try withLock("audit tiles rebuild") {
            let state = try frontier(anchor: anchor, segments: try segments())
            let outcome = try TileRebuild.run(log: self, upTo: state, replacing: true)
            return TileRebuildReport(records: state.range.size, fullTiles: outcome.fullTiles,
                                     partialTiles: TileCoordinate.rightEdge(treeSize: state.range.size).count,
                                     compared: outcome.compared, replacedCount: outcome.differingCount, replaced: outcome.differing)
        }
    }
}
