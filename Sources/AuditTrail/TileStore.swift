import ErrorShape
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import TransparencyLog

/// `<serial>.tiles/`: the log's Merkle tree as C2SP tlog-tiles (hash tiles only; the records
/// stay in the log), and the offset index:
///
///     tile/<L>/<N>          a full tile: 256 hashes, 8,192 bytes; written once, never rewritten
///     tile/<L>/<N>.p/<W>    the right edge's partial tiles (W = 1…255), rewritten as the log
///                           grows; a narrower one is removed once a wider one (or the full tile) is written
///     offsets               for every full level-0 tile k, the byte offset in the log at which
///                           record 256·(k+1) starts: 8 bytes, big-endian, each
///
/// A derived structure: nothing is trusted for being here. Every directory and file on the way
/// is checked by the trail's trust rule (never a link, this user's or root's, writable by nobody
/// else) before it is read or written; files are 0600, directories 0700.
struct TileStore {
    /// The directory, `<serial>.tiles`.
    let root: String

    /// The path of a tile.
    func path(_ tile: TileCoordinate) -> String { root + "/" + tile.path }
    /// The offset index.
    var offsetsPath: String { root + "/offsets" }

    /// Whether the directory exists.
    var exists: Bool {
        var status = stat()
        return lstat(root, &status) == 0
    }

    // MARK: Directories

    /// The directory holding `relative` (a path under the root), each directory from the root
    /// down checked by the trust rule; missing ones made (0700) when `create`, else nil.
    func directory(holding relative: String, create: Bool) throws -> String? {
        var current = root
        var components = relative.split(separator: "/").map(String.init)
        components.removeLast()
        for next in [nil] + components.map(Optional.some) {
            if let next { current += "/" + next }
            if create, mkdir(current, 0o700) != 0, errno != EEXIST {
                throw AuditError(.unwritable, "cannot make the directory \(current) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: current))
            }
            try AuditFiles.requireTrusted(directory: current, files: [])
            var status = stat()
            guard lstat(current, &status) == 0 else {
                if errno == ENOENT, !create { return nil }
                throw AuditError(.unreadable, "cannot examine \(current) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: current))
            }
        }
        return current
    }

    // MARK: Reading

    /// The hashes of exactly this tile file; nil when it is not there. A file of another
    /// length is ``AuditError/Code/tilesUnusable``.
    func read(_ tile: TileCoordinate) throws -> [MerkleTree.Hash]? {
        guard let directory = try directory(holding: tile.path, create: false) else { return nil }
        let path = path(tile)
        try AuditFiles.requireTrusted(directory: directory, files: [path])
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, path)
        guard size == tile.byteCount else {
            throw AuditError(.tilesUnusable, "\(path) is \(size) bytes, not the \(tile.byteCount) of \(tile.width) hashes", facts: ErrorFacts(path: path))
        }
        guard let bytes = AuditFiles.readFully(descriptor, at: 0, count: size) else {
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        return Self.hashes(bytes)
    }

    /// The first `tile.width` hashes of the tile at (level, index): from the full tile, else
    /// from a partial at least that wide (narrower ones are removed as the log grows, so a
    /// proof for an older size reads the prefix of a newer one). Nil when neither is there.
    func readPrefix(_ tile: TileCoordinate) throws -> [MerkleTree.Hash]? {
        // A writer replaces a partial with a wider one, or with the full tile, without the
        // lock readers do not take: what was listed may be gone; look again.
        for _ in 0..<3 {
            if let full = try read(tile.full) { return Array(full.prefix(tile.width)) }
            if tile.isFull { return nil }
            for width in try partialWidths(of: tile).filter({ $0 >= tile.width }).sorted() {
                if let wider = TileCoordinate(level: tile.level, index: tile.index, width: width), let hashes = try read(wider) {
                    return Array(hashes.prefix(tile.width))
                }
            }
        }
        return nil
    }

    /// The widths of the partial files of the tile at (level, index) (its `.p` directory).
    func partialWidths(of tile: TileCoordinate) throws -> [Int] {
        let relative = tile.full.path + ".p/1"
        guard let directory = try directory(holding: relative, create: false) else { return [] }
        return Self.entries(directory).compactMap { name in
            guard let width = Int(name), String(width) == name, (1..<TileCoordinate.fullWidth).contains(width) else { return nil }
            return width
        }
    }

    // MARK: Writing

    /// Writes a full tile unless it is there. Returns true when this call made it. A full tile
    /// is never rewritten: one already there that differs is ``AuditError/Code/tilesUnusable``.
    /// - Parameter durable: its bytes are synced before it is linked into place, so that a crash
    ///   leaves the whole tile or none (the name may be lost: a missing tile is written again;
    ///   the directory is not synced, which would cost a second sync per tile); otherwise the
    ///   caller syncs the file system later (a rebuild, which writes thousands of them).
    @discardableResult
    func writeFull(_ tile: TileCoordinate, _ hashes: [MerkleTree.Hash], durable: Bool) throws -> Bool {
        guard let directory = try directory(holding: tile.path, create: true) else { return false }
        let path = path(tile)
        try AuditFiles.requireTrusted(directory: directory, files: [path])
        let bytes = hashes.flatMap { $0 }
        do {
            try Self.writeQuickly(bytes, to: path, replacing: false, synced: durable)
            return true
        } catch where error.code == .exists {
            guard let existing = try read(tile) else { throw AuditError(.unwritable, "cannot write \(path): \(error.reason)", facts: ErrorFacts(path: path)) }
            guard existing == hashes else {
                throw AuditError(.tilesUnusable, "\(path) differs from the tile the log's records give (a full tile is written once and never changes): it was edited, or left behind by another log", facts: ErrorFacts(path: path))
            }
            return false
        } catch {
            throw AuditError(.unwritable, "cannot write \(path): \(error.reason)", facts: ErrorFacts(path: path))
        }
    }

    /// Writes a partial tile in place of the tile's other partials. Not synced: a partial is
    /// never used before it is checked against the log's frontier, and one lost in a crash is
    /// rebuilt.
    func writePartial(_ tile: TileCoordinate, _ hashes: [MerkleTree.Hash]) throws {
        guard let directory = try directory(holding: tile.path, create: true) else { return }
        let path = path(tile)
        try AuditFiles.requireTrusted(directory: directory, files: [path])
        do {
            try Self.writeQuickly(hashes.flatMap { $0 }, to: path, replacing: true)
        } catch {
            throw AuditError(.unwritable, "cannot write \(path): \(error.reason)", facts: ErrorFacts(path: path))
        }
        for width in try partialWidths(of: tile) where width != tile.width {
            _ = unlink(directory + "/\(width)")
        }
    }

    /// Removes the partial files of the tile at (level, index) and their directory, once its
    /// full tile is written (best effort: what is left is a superseded partial, never used).
    func removePartials(of tile: TileCoordinate) {
        guard let directory = try? directory(holding: tile.full.path + ".p/1", create: false) else { return }
        for name in Self.entries(directory) { _ = unlink(directory + "/" + name) }
        _ = rmdir(directory)
    }

    // MARK: The offset index

    /// Entries in the offset index (its bytes / 8).
    func offsetCount() throws -> Int {
        try AuditFiles.requireTrusted(directory: root, files: [offsetsPath])
        guard let descriptor = try AuditFiles.open(offsetsPath, O_RDONLY) else { return 0 }
        defer { close(descriptor) }
        return try AuditFiles.size(descriptor, offsetsPath) / 8
    }

    /// Entry `k`: where record 256·(k+1) starts in the log; nil past the end of the index.
    func offset(_ k: Int) throws -> Int? {
        guard k >= 0 else { return nil }
        try AuditFiles.requireTrusted(directory: root, files: [offsetsPath])
        guard let descriptor = try AuditFiles.open(offsetsPath, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        guard try AuditFiles.size(descriptor, offsetsPath) >= (k + 1) * 8,
              let bytes = AuditFiles.readFully(descriptor, at: k * 8, count: 8) else { return nil }
        let value = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return value <= UInt64(Int.max) ? Int(value) : nil
    }

    /// Appends entry `k` (the index holds `k` entries; one already there must be equal, and a
    /// gap before `k` is ``AuditError/Code/tilesUnusable``), synced.
    func appendOffset(_ k: Int, _ value: Int) throws {
        _ = try directory(holding: "offsets", create: true)
        try AuditFiles.requireTrusted(directory: root, files: [offsetsPath])
        guard let descriptor = try AuditFiles.open(offsetsPath, O_RDWR, create: true) else {
            throw AuditError(.unwritable, "cannot open \(offsetsPath)", facts: ErrorFacts(path: offsetsPath))
        }
        defer { close(descriptor) }
        let count = try AuditFiles.size(descriptor, offsetsPath) / 8
        if k < count {
            guard try offset(k) == value else {
                throw AuditError(.tilesUnusable, "entry \(k) of \(offsetsPath) is not where record \((k + 1) * TileCoordinate.fullWidth) starts in the log", facts: ErrorFacts(path: offsetsPath))
            }
            return
        }
        guard k == count else {
            throw AuditError(.tilesUnusable, "\(offsetsPath) has \(count) entries, so entry \(k) cannot follow them", facts: ErrorFacts(path: offsetsPath))
        }
        let bytes = Self.bigEndian(value)
        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, 8, off_t(k * 8)) }
        guard written == 8, fdatasync(descriptor) == 0 else {
            let reason = String(cString: strerror(errno))
            _ = ftruncate(descriptor, off_t(k * 8))
            throw AuditError(.unwritable, "cannot write \(offsetsPath) (\(reason))", facts: ErrorFacts(path: offsetsPath))
        }
    }

    /// Cuts the offset index back to `count` entries (undoing an append that failed).
    func truncateOffsets(to count: Int) {
        guard let descriptor = try? AuditFiles.open(offsetsPath, O_RDWR) else { return }
        defer { close(descriptor) }
        if let size = try? AuditFiles.size(descriptor, offsetsPath), size > count * 8 {
            _ = ftruncate(descriptor, off_t(count * 8))
            _ = fdatasync(descriptor)
        }
    }

    /// Appends entries as they come, for a rebuild (not synced: the rebuild syncs the file
    /// system), a few thousand at a time.
    final class OffsetsWriter {
        private let path: String
        private let descriptor: Int32
        private var buffer: [UInt8] = []

        init(_ store: TileStore) throws {
            path = store.offsetsPath
            guard let descriptor = try AuditFiles.open(path, O_WRONLY | O_APPEND, create: true) else {
                throw AuditError(.unwritable, "cannot open \(path)", facts: ErrorFacts(path: path))
            }
            self.descriptor = descriptor
        }

        deinit { close(descriptor) }

        func append(_ value: Int) throws {
            buffer += TileStore.bigEndian(value)
            if buffer.count >= 1 << 15 { try flush() }
        }

        func flush() throws {
            try AuditFiles.appendWhole(buffer, descriptor: descriptor, path: path, sync: false)
            buffer.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Helpers

    static func bigEndian(_ value: Int) -> [UInt8] {
        let bits = UInt64(value)
        return (0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * $0)) }
    }

    static func hashes(_ bytes: [UInt8]) -> [MerkleTree.Hash] {
        stride(from: 0, to: bytes.count, by: TileCoordinate.hashSize).map { Array(bytes[$0..<min($0 + TileCoordinate.hashSize, bytes.count)]) }
    }

    /// The names in a directory but `.` and `..` (none when it cannot be read).
    static func entries(_ directory: String) -> [String] {
        guard let stream = opendir(directory) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// A file written whole under a temporary name in its directory (0600), then renamed over
    /// `path` (`replacing`) or linked to it (never replacing; `.exists` if it is there). Its
    /// bytes are synced first when `synced`; the directory never is: for files whose loss
    /// costs a rebuild or a second write, never a wrong answer.
    static func writeQuickly(_ bytes: [UInt8], to path: String, replacing: Bool, synced: Bool = false) throws(FileOutputError) {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        var template = Array("\(path[..<slash]).\(path[slash...]).tmp-XXXXXX".utf8CString)
        let descriptor = mkstemp(&template)
        guard descriptor >= 0 else { throw FileOutputError(path: path, reason: "cannot create a file beside it (\(String(cString: strerror(errno))))") }
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { _ = unlink(temporary) }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(descriptor, base + written, bytes.count - written)
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                let reason = count == 0 ? "no space" : String(cString: strerror(errno))
                close(descriptor)
                throw FileOutputError(path: path, reason: "write failed (\(reason))")
            }
            written += count
        }
        guard fchmod(descriptor, 0o600) == 0, !synced || fsync(descriptor) == 0, close(descriptor) == 0 else {
            throw FileOutputError(path: path, reason: "sync or close failed (\(String(cString: strerror(errno))))")
        }
        if replacing {
            guard rename(temporary, path) == 0 else { throw FileOutputError(path: path, reason: "rename failed (\(String(cString: strerror(errno))))") }
        } else if link(temporary, path) != 0 {
            if errno == EEXIST { throw FileOutputError(path: path, reason: "the file exists", code: .exists) }
            throw FileOutputError(path: path, reason: "link failed (\(String(cString: strerror(errno))))")
        }
    }
}
