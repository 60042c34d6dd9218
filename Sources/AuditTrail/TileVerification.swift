import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import Dispatch
import Synchronization
import TransparencyLog

/// What a full verification found of the tiles: each one there compared with the tile the
/// records give.
public struct TileCheck: Sendable, Equatable, Codable {
    /// Whether the log has a tiles directory at all.
    public let present: Bool
    /// Tiles (full, and partial ones as prefixes) equal to what the records give.
    public let checked: Int
    /// Full tiles and right-edge partial tiles the records give that are not there (a log
    /// written before tiles existed: built by its next append, or a rebuild).
    public let missing: Int
    /// Entries of the offset index equal to where the records start.
    public let offsetsChecked: Int
    /// False when the check stopped early: an archived segment whose level-0 tiles are not
    /// there either (nothing gives its records' hashes, so the tiles after it are not compared).
    public let complete: Bool

    /// A check's findings.
    public init(present: Bool, checked: Int, missing: Int, offsetsChecked: Int, complete: Bool = true) {
        self.present = present
        self.checked = checked
        self.missing = missing
        self.offsetsChecked = offsetsChecked
        self.complete = complete
    }
}

/// Compares the tiles on disk with those the records give, fed each leaf hash by the one pass
/// of a full verification (O(log n) memory: the tiles' right edge). The first difference is
/// kept, and thrown once the pass has found the log itself in order.
final class TileChecker {
    private let store: TileStore
    private var builder = TileBuilder()
    private var end = 0
    private var checked = 0
    private var missing = 0
    private var offsetsChecked = 0
    private var failure: (any Error)?
    private var abandoned = false

    init(store: TileStore) {
        self.store = store
    }

    /// One record: its line's length (newline included) and leaf hash. A record of an archived
    /// segment comes with a negative length, `-1 - bytes` (the segment's bytes given with its
    /// last record): its hash is the level-0 tile's own, so that tile is not compared, nor the
    /// offsets inside. `Int.min`: an archived segment without even that; nothing after it is
    /// compared.
    func take(length: Int, leafHash: MerkleTree.Hash) {
        if length == Int.min { abandoned = true }
        guard !abandoned else { return }
        let archived = length < 0
        end += archived ? -1 - length : length
        let completed = builder.append(leafHash: leafHash)
        guard failure == nil else { return }
        for (tile, hashes) in completed {
            if archived, tile.level == 0 { continue }
            compare(tile, hashes)
            comparePartials(of: tile, with: hashes)
            if tile.level == 0 { compareOffset(tile.index) }
        }
    }

    /// The right edge's partial tiles, then the verdict: the first difference found, thrown.
    func finish() throws -> TileCheck {
        if abandoned {
            if let failure { throw failure }
            return TileCheck(present: true, checked: checked, missing: missing, offsetsChecked: offsetsChecked, complete: false)
        }
        if failure == nil {
            for (tile, hashes) in builder.partialTiles {
                let widths = (try? store.partialWidths(of: tile)) ?? []
                if !widths.contains(tile.width) { missing += 1 }
                comparePartials(of: tile, with: hashes)
            }
        }
        if let failure { throw failure }
        return TileCheck(present: true, checked: checked, missing: missing, offsetsChecked: offsetsChecked)
    }

    private func compare(_ tile: TileCoordinate, _ hashes: [MerkleTree.Hash]) {
        do {
            guard let found = try store.read(tile) else {
                missing += 1
                return
            }
            guard found == hashes else {
                failure = AuditError(.tilesUnusable, "\(store.path(tile)) differs from the tile the log's records give", facts: ErrorFacts(path: store.path(tile)))
                return
            }
            checked += 1
        } catch {
            failure = error
        }
    }

    /// Every partial file of the tile at (level, index) must be a prefix of `hashes`; one wider
    /// than the records read (appended meanwhile) is compared as far as they go.
    private func comparePartials(of tile: TileCoordinate, with hashes: [MerkleTree.Hash]) {
        do {
            for width in try store.partialWidths(of: tile) {
                guard let partial = TileCoordinate(level: tile.level, index: tile.index, width: width),
                      let found = try store.read(partial) else { continue }
                let known = min(width, hashes.count)
                guard found.prefix(known).elementsEqual(hashes.prefix(known)) else {
                    failure = AuditError(.tilesUnusable, "\(store.path(partial)) differs from the tile the log's records give", facts: ErrorFacts(path: store.path(partial)))
                    return
                }
                checked += 1
            }
        } catch {
            failure = error
        }
    }

    private func compareOffset(_ k: Int) {
        do {
            guard let found = try store.offset(k) else { return }
            guard found == end else {
                failure = AuditError(.tilesUnusable, "entry \(k) of \(store.offsetsPath) says record \((k + 1) * TileCoordinate.fullWidth) starts at byte \(found) of the log, not \(end)", facts: ErrorFacts(path: store.offsetsPath))
                return
            }
            offsetsChecked += 1
        } catch {
            failure = error
        }
    }
}

/// What ``AuditLog/verifyIncrementally(from:anchored:others:)`` did.
public enum IncrementalVerification: Sendable, Equatable {
    /// The log verified from the saved checkpoint on.
    case verified(Outcome)
    /// The tiles or the offset index do not allow it (not built yet, or a difference the
    /// caller's full verification will name); nothing was found wrong with the log itself.
    case unavailable(reason: String)

    /// What was checked.
    public struct Outcome: Sendable, Equatable {
        /// Records in the log, and the root over them.
        public let size: Int
        public let root: MerkleTree.Hash
        /// The first record hashed: the saved checkpoint's size.
        public let hashedFrom: Int
        /// Records hashed (the log's size minus the saved checkpoint's).
        public let recordsHashed: Int
        /// The RFC 6962 consistency proof from the saved tree to the anchored one (verified).
        public let consistencyProof: [MerkleTree.Hash]
        /// Distinct tiles read.
        public let tilesRead: Int
    }
}

extension AuditLog {
    /// ``verify(against:leaves:)``, also comparing every tile there with the tile the records
    /// give (in the same pass). A tile that differs is ``AuditError/Code/tilesUnusable`` naming
    /// it, thrown only once the log itself was found in order.
    public func verifyWithTiles(against checkpoints: [(name: String, checkpoint: Checkpoint)]) throws -> (size: Int, root: [UInt8], tiles: TileCheck) {
        let store = TileStore(root: tilesPath)
        guard store.exists else {
            let tree = try verify(against: checkpoints)
            return (tree.size, tree.root, TileCheck(present: false, checked: 0, missing: 0, offsetsChecked: 0))
        }
        let pipeline = TileCheckPipeline(store: store)
        let tree: (size: Int, root: [UInt8])
        do {
            tree = try verify(against: checkpoints) { index, length, leafHash in
                pipeline.take(length: index < 0 ? Int.min : length, leafHash: leafHash)
            }
        } catch {
            _ = try? pipeline.finish()
            throw error
        }
        return (tree.size, tree.root, try pipeline.finish())
    }

    /// Verifies the log from `saved` (a checkpoint the caller verified, by the audit key, for
    /// this log, at most `anchored`'s size) on, hashing only the records after it:
    /// - the tiles' frontier of the saved tree has the saved root;
    /// - an RFC 6962 consistency proof from the tiles shows the saved tree a prefix of the
    ///   anchored one (and so for each of `others` no larger than the saved one);
    /// - record `saved.treeSize` is found through the offset index, and the records from it on,
    ///   each in its place, extend the saved frontier to the anchored root (and to the root of
    ///   each of `others` larger than the saved one); no torn line.
    ///
    /// O(records after the saved checkpoint + log n). A record out of place, a torn line, or a
    /// log shorter than the anchor is thrown as a full verification throws it; when the tiles or
    /// the offset index do not allow the check, ``IncrementalVerification/unavailable(reason:)``.
    public func verifyIncrementally(from saved: Checkpoint, anchored: Checkpoint,
                                    others: [(name: String, checkpoint: Checkpoint)] = []) throws -> IncrementalVerification {
        try requireTrustedFiles()
        // The records after the saved checkpoint are read: none of them may be away.
        if let away = try segments().archivedAway.first(where: { $0.end > saved.treeSize }) {
            return .unavailable(reason: "records \(away.first)–\(away.end - 1), after the saved checkpoint's \(saved.treeSize), are archived: they are not here to be read")
        }
        let tree = tiledTree(size: anchored.treeSize)
        var range: MerkleTree.CompactRange
        let consistency: [MerkleTree.Hash]
        let start: Int
        do {
            range = try readingTiles { try tree.compactRange(size: saved.treeSize) }
            guard range.root == saved.rootHash else {
                return .unavailable(reason: "the tiles do not give the saved checkpoint's root for its \(saved.treeSize) records")
            }
            consistency = try readingTiles { try tree.consistencyProof(oldSize: saved.treeSize) }
            guard MerkleTree.verifyConsistency(oldSize: saved.treeSize, newSize: anchored.treeSize, oldRoot: saved.rootHash,
                                               newRoot: anchored.rootHash, proof: consistency) else {
                return .unavailable(reason: "the consistency proof from the saved checkpoint to the token's, computed from the tiles, does not verify")
            }
            for (name, other) in others where other.treeSize <= saved.treeSize {
                let proof = try readingTiles { try tree.consistencyProof(oldSize: other.treeSize) }
                guard MerkleTree.verifyConsistency(oldSize: other.treeSize, newSize: anchored.treeSize, oldRoot: other.rootHash,
                                                   newRoot: anchored.rootHash, proof: proof) else {
                    return .unavailable(reason: "the consistency proof from \(name) checkpoint to the token's, computed from the tiles, does not verify")
                }
            }
            guard let located = try locate(record: saved.treeSize) else {
                return .unavailable(reason: "the offset index does not reach record \(saved.treeSize)")
            }
            start = located.offset
        } catch let error as AuditError where error.code == .tilesUnusable {
            return .unavailable(reason: error.reason)
        }

        var index = saved.treeSize
        var mismatch: String?
        let later = others.filter { $0.checkpoint.treeSize > saved.treeSize }
        let decoder = JSONDecoder()
        var damage: AuditError?
        let tail = try LogLines.forEach(self, segments: try segments(), from: start) { line, _ in
            if let problem = LogScan.problem(line, at: index, serial: token.serial, decoder: decoder, canonical: index >= anchored.treeSize) {
                damage = AuditError(.inconsistent, "record \(index): \(problem)", facts: ErrorFacts(path: logPath, recordIndex: index))
                return false
            }
            range.append(leafHash: MerkleTree.leafHash(line))
            index += 1
            if index == anchored.treeSize, range.root != anchored.rootHash {
                mismatch = "the records after the saved checkpoint do not extend it to the root of the token's"
                return false
            }
            for (name, other) in later where other.treeSize == index && range.root != other.rootHash {
                mismatch = "the records after the saved checkpoint do not extend it to the root of \(name) checkpoint"
                return false
            }
            return true
        }
        if let damage { throw damage }
        if let mismatch { return .unavailable(reason: mismatch) }
        if tail.tornBytes > 0 {
            throw AuditError(.tornTail, "record \(index): the last line is torn (\(tail.tornBytes) bytes after the last whole record: an append was interrupted, or a record's end was cut)")
        }
        guard index >= anchored.treeSize else {
            throw AuditError(.inconsistent, "the token's checkpoint seals \(anchored.treeSize) records but the log holds \(index) whole ones: records \(index)–\(anchored.treeSize - 1) were cut off or the log was replaced by an older one")
        }
        return .verified(.init(size: index, root: range.root, hashedFrom: saved.treeSize, recordsHashed: index - saved.treeSize,
                               consistencyProof: consistency, tilesRead: tree.tilesRead))
    }
}

/// A ``TileChecker`` on a thread of its own, fed the pass's leaves in batches: comparing the
/// tiles (rebuilding their hashes, reading the files) overlaps the hashing of the records, so a
/// full verification with tiles costs little more than one without. At most four batches wait
/// (bounded memory); the checker lives on its thread alone.
final class TileCheckPipeline: Sendable {
    typealias Batch = [(length: Int, leafHash: MerkleTree.Hash)]
    private static let batchSize = 4096

    private let waiting = Mutex<[Batch?]>([])
    private let available = DispatchSemaphore(value: 0)
    private let slots = DispatchSemaphore(value: 4)
    private let done = DispatchSemaphore(value: 0)
    private let outcome = Mutex<Result<TileCheck, any Error>?>(nil)
    /// Filled by the pass's thread only (the one that calls ``take(length:leafHash:)``).
    private let filling = Mutex<Batch>([])

    init(store: TileStore) {
        DispatchQueue.global(qos: .userInitiated).async { [self] in
            let checker = TileChecker(store: store)
            while true {
                available.wait()
                let next = waiting.withLock { $0.removeFirst() }
                // Every slot taken is given back (the end marker's too): libdispatch refuses to
                // free a semaphore below the value it was made with.
                slots.signal()
                guard let next else { break }
                for leaf in next { checker.take(length: leaf.length, leafHash: leaf.leafHash) }
            }
            let result = Result { try checker.finish() }
            outcome.withLock { $0 = result }
            done.signal()
        }
    }

    /// One record, in order.
    func take(length: Int, leafHash: MerkleTree.Hash) {
        let full = filling.withLock { batch -> Batch? in
            batch.append((length, leafHash))
            guard batch.count >= Self.batchSize else { return nil }
            defer { batch.removeAll(keepingCapacity: true) }
            return batch
        }
        if let full { hand(full) }
    }

    /// The verdict, once every leaf handed over is compared (call once).
    func finish() throws -> TileCheck {
        let rest = filling.withLock { batch -> Batch in
            defer { batch = [] }
            return batch
        }
        if !rest.isEmpty { hand(rest) }
        slots.wait()
        waiting.withLock { $0.append(nil) }
        available.signal()
        done.wait()
        guard let result = outcome.withLock({ $0 }) else { return TileCheck(present: true, checked: 0, missing: 0, offsetsChecked: 0) }
        return try result.get()
    }

    private func hand(_ batch: Batch) {
        slots.wait()
        waiting.withLock { $0.append(batch) }
        available.signal()
    }
}
