import ErrorShape
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import TransparencyLog

/// Keeps a log's tiles (``TileStore``) in step with its records: opened at the log's size (its
/// right edge checked against the log's frontier, or rebuilt from the records when it is not
/// there or does not match), extended with each record appended, and written before the append
/// counts: a tile that cannot be written fails the append, whose records are then cut back.
struct TileWriter {
    let store: TileStore
    private(set) var builder: TileBuilder
    private var pendingFull: [(tile: TileCoordinate, hashes: [MerkleTree.Hash])] = []
    private var pendingOffsets: [(index: Int, offset: Int)] = []
    /// The highest level whose unfinished tile changed since the last flush (-1: none).
    private var changedLevels = -1

    private init(store: TileStore, builder: TileBuilder) {
        self.store = store
        self.builder = builder
    }

    /// The tiles of `log` at `frontier` (the caller holds the log's lock and has checked the
    /// log up to there): those on disk when their right edge gives exactly that frontier and the
    /// offset index has one entry per full level-0 tile; otherwise rebuilt in one pass over the
    /// records (a log written before tiles existed, or tiles left behind by a crash or an older
    /// version), where a full tile already there that differs is refused, unless `replacing`
    /// (the log as it is was accepted by a person, or is sealed for the first time: tiles of
    /// what it held before are not its).
    static func open(log: AuditLog, at frontier: AuditLog.Frontier, replacing: Bool = false) throws -> TileWriter {
        let store = TileStore(root: log.tilesPath)
        let size = frontier.range.size
        if let builder = try loadEdge(store, size: size), builder.compactRange == frontier.range,
           try store.offsetCount() == TileCoordinate.fullTileCount(level: 0, treeSize: size) {
            return TileWriter(store: store, builder: builder)
        }
        let rebuilt = try TileRebuild.run(log: log, upTo: frontier, replacing: replacing)
        return TileWriter(store: store, builder: rebuilt.builder)
    }

    /// The right edge stored for `size`; nil when a partial tile is missing or malformed.
    private static func loadEdge(_ store: TileStore, size: Int) throws -> TileBuilder? {
        if size == 0 { return TileBuilder() }
        guard store.exists else { return nil }
        var edge: [[MerkleTree.Hash]] = []
        for tile in TileCoordinate.rightEdge(treeSize: size) {
            do {
                guard let hashes = try store.read(tile) else { return nil }
                while edge.count < tile.level { edge.append([]) }
                edge.append(hashes)
            } catch let error as AuditError where error.code == .tilesUnusable {
                return nil
            }
        }
        return TileBuilder(size: size, edge: edge)
    }

    /// Adds a record: its leaf hash and the byte offset after its newline.
    mutating func append(leafHash: MerkleTree.Hash, endOffset: Int) {
        let completed = builder.append(leafHash: leafHash)
        for tile in completed {
            pendingFull.append(tile)
            if tile.tile.level == 0 { pendingOffsets.append((tile.tile.index, endOffset)) }
        }
        // Each completed tile's root went into the level above it.
        changedLevels = max(changedLevels, completed.count)
    }

    /// Whether the next ``flush()`` writes a full tile (durably): the records it covers must be
    /// on disk first, or a crash could keep the tile and lose them.
    var completesTiles: Bool { !pendingFull.isEmpty || !pendingOffsets.isEmpty }

    /// Writes what the appends since the last flush completed (full tiles and offsets synced,
    /// then the right edge's partial tiles). On failure the full tiles and offsets this call
    /// made are taken back, and the error is thrown: the caller cuts the records back.
    mutating func flush() throws {
        guard completesTiles || changedLevels >= 0 else { return }
        let offsetsBefore = pendingOffsets.isEmpty ? 0 : try store.offsetCount()
        var created: [String] = []
        do {
            for (tile, hashes) in pendingFull where try store.writeFull(tile, hashes, durable: true) {
                created.append(store.path(tile))
            }
            for (index, offset) in pendingOffsets { try store.appendOffset(index, offset) }
            for (tile, hashes) in builder.partialTiles where tile.level <= changedLevels { try store.writePartial(tile, hashes) }
        } catch {
            for path in created { _ = unlink(path) }
            if !pendingOffsets.isEmpty { store.truncateOffsets(to: offsetsBefore) }
            throw error
        }
        for (tile, _) in pendingFull { store.removePartials(of: tile) }
        pendingFull = []
        pendingOffsets = []
        changedLevels = -1
    }

    /// Appends `leaves` (leaf hash and line length, newline included) after `offset`, then
    /// flushes; if that fails, the log (`descriptor`) is cut back to `offset` and the error
    /// thrown, so the records count only with their tiles.
    /// - Parameter syncLog: called before full tiles are written, when the records may not be
    ///   on disk yet.
    mutating func record(_ leaves: [(hash: MerkleTree.Hash, length: Int)], after offset: Int, activeStart: Int, log descriptor: Int32, path: String,
                         syncLog: (() throws -> Void)? = nil) throws {
        let before = self
        var end = offset
        for leaf in leaves {
            end += leaf.length
            append(leafHash: leaf.hash, endOffset: end)
        }
        do {
            if completesTiles { try syncLog?() }
            try flush()
        } catch {
            self = before
            let cut = offset >= activeStart && ftruncate(descriptor, off_t(offset - activeStart)) == 0 && fdatasync(descriptor) == 0
            let outcome = cut ? "the records were cut back, nothing of them was kept" : "and the records could not be cut back (\(String(cString: strerror(errno)))): verify the log before anything else"
            throw AuditError((error as? AuditError)?.code ?? .unwritable, "\(error); \(outcome)", facts: ErrorFacts(path: path))
        }
    }
}

/// Builds a log's tiles afresh from its records in one pass (O(log n) memory): into
/// `<serial>.tiles.new`, synced as a whole, then put in place of the old directory.
enum TileRebuild {
    /// What a rebuild did.
    struct Outcome {
        let builder: TileBuilder
        /// Full tiles written.
        let fullTiles: Int
        /// Full tiles of the old directory compared with the rebuilt ones.
        let compared: Int
        /// Old full tiles that differed (only when `replacing`): how many, and the first 100.
        let differingCount: Int
        let differing: [String]
    }

    /// Rebuilds the tiles of `log` up to `frontier` (the caller holds the lock and has checked
    /// the log up to there). The records hashed must give exactly that frontier. An old full
    /// tile that differs from the rebuilt one is ``AuditError/Code/tilesUnusable`` unless
    /// `replacing` (a person's rebuild, which reports it).
    static func run(log: AuditLog, upTo frontier: AuditLog.Frontier, replacing: Bool) throws -> Outcome {
        let old = TileStore(root: log.tilesPath)
        let fresh = TileStore(root: log.tilesPath + ".new")
        try AuditFiles.requireTrusted(directory: log.directory.path, files: [])
        try removeTree(fresh.root)
        _ = try fresh.directory(holding: "offsets", create: true)
        var builder = TileBuilder()
        let offsets = try TileStore.OffsetsWriter(fresh)
        var fullTiles = 0
        var compared = 0
        var differing: [String] = []
        var differingCount = 0
        let hadOld = old.exists
        do {
            let end = try LogLines.forEach(log, segments: try log.segments(), from: 0, to: frontier.offset) { line, end in
                for (tile, hashes) in builder.append(leafHash: MerkleTree.leafHash(line)) {
                    try fresh.writeFull(tile, hashes, durable: false)
                    fullTiles += 1
                    if tile.level == 0 { try offsets.append(end) }
                    guard hadOld, let existing = try? old.read(tile) else { continue }
                    compared += 1
                    if existing != hashes {
                        guard replacing else {
                            throw AuditError(.tilesUnusable, "\(old.path(tile)) differs from the tile the log's records give (a full tile is written once and never changes): it was edited, or left behind by another log", facts: ErrorFacts(path: old.path(tile)))
                        }
                        differingCount += 1
                        if differing.count < 100 { differing.append(old.path(tile)) }
                    }
                }
                return true
            }
            guard end.offset == frontier.offset, builder.size == frontier.range.size, builder.compactRange == frontier.range else {
                throw AuditError(.inconsistent, "the tiles built from \(log.logPath) (\(builder.size) records) do not give the tree just checked (\(frontier.range.size) records): the log changed while they were built; nothing was written")
            }
            for (tile, hashes) in builder.partialTiles { try fresh.writePartial(tile, hashes) }
            try offsets.flush()
            try syncFileSystem(of: fresh.root)
            try swap(fresh.root, into: old.root, parent: log.directory.path)
        } catch {
            try? removeTree(fresh.root)
            throw error
        }
        return Outcome(builder: builder, fullTiles: fullTiles, compared: compared, differingCount: differingCount, differing: differing)
    }

    /// Puts `fresh` where `target` was (the old one renamed aside, then removed), durably.
    private static func swap(_ fresh: String, into target: String, parent: String) throws {
        let aside = target + ".old"
        try removeTree(aside)
        var status = stat()
        if lstat(target, &status) == 0, rename(target, aside) != 0 {
            throw AuditError(.unwritable, "cannot move \(target) aside (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: target))
        }
        guard rename(fresh, target) == 0 else {
            throw AuditError(.unwritable, "cannot put the rebuilt tiles in place at \(target) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: target))
        }
        try syncFileSystem(of: parent, everything: false)
        try? removeTree(aside)
    }

    /// Removes a directory tree of the trail's (links inside are removed, never followed).
    static func removeTree(_ path: String) throws {
        var status = stat()
        guard lstat(path, &status) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw AuditError(.unwritable, "cannot remove \(path) (\(error))", facts: ErrorFacts(path: path))
        }
    }

    /// Everything written so far reaches the disk: one `sync` for the thousands of tiles a
    /// rebuild writes instead of an `fsync` each (a rebuild is rare; a tile lost in a crash after
    /// the swap would otherwise be a full tile that differs), then the directory itself.
    private static func syncFileSystem(of path: String, everything: Bool = true) throws {
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw AuditError(.unwritable, "cannot open \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        defer { close(descriptor) }
        if everything { sync() }
        guard fsync(descriptor) == 0 || errno == EINVAL else {
            throw AuditError(.unwritable, "cannot sync \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
    }
}

/// Reads a log's complete lines from a byte offset, in fixed-size chunks (a line over
/// ``LogScan/maximumLineLength`` is damage, never held whole).
enum LogLines {
    /// Calls `body` with each complete line (without its newline) and the byte offset after its
    /// newline, from byte `start` up to byte `limit` (nil: the end of the file), until `body`
    /// returns false. Returns the offset after the last complete line read and the bytes after
    /// it up to the limit (a torn line).
    @discardableResult
    static func forEach(_ path: String, from start: Int, to limit: Int? = nil,
                        _ body: (ArraySlice<UInt8>, Int) throws -> Bool) throws -> (offset: Int, tornBytes: Int) {
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return (start, 0) }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, path)
        let end = min(size, limit ?? size)
        let chunk = 1 << 20
        var position = start
        var lineStart = start
        var carry: [UInt8] = []
        while position < end {
            let count = min(chunk, end - position)
            guard let bytes = AuditFiles.readFully(descriptor, at: position, count: count) else {
                throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
            }
            var from = 0
            while let newline = bytes[from...].firstIndex(of: 0x0A) {
                let lineEnd = position + newline + 1
                let keepGoing: Bool
                if carry.isEmpty {
                    keepGoing = try body(bytes[from..<newline], lineEnd)
                } else {
                    carry += bytes[from..<newline]
                    keepGoing = try body(carry[...], lineEnd)
                    carry.removeAll(keepingCapacity: true)
                }
                lineStart = lineEnd
                if !keepGoing { return (lineStart, 0) }
                from = newline + 1
            }
            carry += bytes[from...]
            guard carry.count <= LogScan.maximumLineLength else {
                throw AuditError(.inconsistent, "\(path) has a line longer than \(LogScan.maximumLineLength >> 20) MiB at byte \(lineStart): not an audit record", facts: ErrorFacts(path: path))
            }
            position += count
        }
        return (lineStart, end - lineStart)
    }
}
