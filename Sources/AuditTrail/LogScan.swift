#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import TransparencyLog

/// One pass over a log, front to back, in fixed-size chunks: every complete line checked as the
/// record that belongs at its place (`seq` its index, this token's serial), its leaf hash folded
/// into the tree's right frontier. Memory stays O(log n) whatever the log's size; the roots of
/// the prefixes asked for are kept on the way.
struct LogScan {
    /// The frontier over every complete line.
    var range = MerkleTree.CompactRange()
    /// Bytes of complete lines (where the next record goes).
    var offset = 0
    /// The last complete line's leaf hash.
    var lastLeafHash: [UInt8] = []
    /// Bytes after the last newline (a torn record), if any.
    var tornBytes = 0
    /// The first line that is not the record belonging at its place, and why.
    var damage: (index: Int, reason: String)?
    /// The frontier at each asked-for size the log reached (for the root, and to narrow down
    /// which records differ from a checkpoint's).
    var prefixes: [Int: MerkleTree.CompactRange] = [:]

    /// Reads `path` (a missing file is the empty log).
    /// - Parameters:
    ///   - serial: the token every record must be about.
    ///   - prefixSizes: the sizes whose frontiers to keep.
    ///   - upTo: the bytes to read at most (what the file held when an append was not under way).
    ///   - visit: called with each complete line's index and bytes (for readers that keep some).
    ///   - leaves: called with each complete line's index, length (newline included) and leaf hash.
    /// The longest line read as a record (records are a few KiB; a longer line is damage, and
    /// is not held in memory).
    static let maximumLineLength = 1 << 20

    ///   - canonicalFrom: the first index whose line must also be written as this tool writes it.
    ///   - hashOnlyBelow: lines before this index are hashed and not decoded: for a caller that
    ///     then checks the prefix's root against a signed checkpoint (which vouches for those
    ///     records: they were checked before they were sealed), and scans again with every check
    ///     when it does not match. Decoding is most of a scan's cost.
    static func scan(_ path: String, serial: String, prefixSizes: Set<Int> = [], canonicalFrom: Int = .max,
                     hashOnlyBelow: Int = 0, upTo limit: Int = .max,
                     visit: ((Int, UnsafeRawBufferPointer) throws -> Void)? = nil,
                     leaves: ((Int, Int, MerkleTree.Hash) -> Void)? = nil) throws -> LogScan {
        try scan(parts: [.active(path)], serial: serial, prefixSizes: prefixSizes, canonicalFrom: canonicalFrom,
                 hashOnlyBelow: hashOnlyBelow, upTo: limit, visit: visit, leaves: leaves)
    }

    /// One part of a log as a scan reads it.
    enum Part {
        /// A sealed segment's file: whole lines only, exactly `count` of them from record `first`;
        /// with `sha256`, an archived segment put back, which must be the file archived.
        case sealed(path: String, first: Int, count: Int, sha256: String?)
        /// A segment that is elsewhere: its records stand in as the subtree hashes that cover
        /// them (or their leaf hashes, when the tiles have them), and its length.
        case archived(AuditSegments.Sealed, leafHashes: ((_ body: (MerkleTree.Hash) -> Void) -> Bool)?)
        /// The active segment (a missing file is empty); a torn tail is allowed here only. With
        /// `descriptor`, read from that open file (from its start; the caller closes it).
        case active(String, descriptor: Int32? = nil)
    }

    /// The parts of `log`: its sealed segments, then its active one.
    static func parts(of log: AuditLog, segments: AuditSegments, active: Int32? = nil) -> [Part] {
        let store = TileStore(root: log.tilesPath)
        return segments.sealed.map { segment in
            if let path = segment.path { return .sealed(path: path, first: segment.first, count: segment.count, sha256: segment.stub?.sha256) }
            return .archived(segment, leafHashes: { store.forEachLeafHash(first: segment.first, count: segment.count, $0) })
        } + [.active(log.logPath, descriptor: active)]
    }

    /// Reads the parts one after the other, as one log. `upTo` counts bytes from the first
    /// part's start. `leaves` sees an archived segment's records with a negative length
    /// (`-1 - bytes`, the segment's bytes given with its last record): their lines are not here.
    /// Without the leaf hashes (no tiles for them) an archived segment is not seen by `leaves`
    /// at all but as one call with index -1.
    static func scan(parts: [Part], serial: String, prefixSizes: Set<Int> = [], canonicalFrom: Int = .max,
                     hashOnlyBelow: Int = 0, upTo limit: Int = .max,
                     visit: ((Int, UnsafeRawBufferPointer) throws -> Void)? = nil,
                     leaves: ((Int, Int, MerkleTree.Hash) -> Void)? = nil) throws -> LogScan {
        var scan = LogScan()
        if prefixSizes.contains(0) { scan.prefixes[0] = scan.range }
        let rules = Rules(serial: serial, decoder: JSONDecoder(), prefixSizes: prefixSizes, canonicalFrom: canonicalFrom,
                          hashOnlyBelow: hashOnlyBelow, visit: visit, leaves: leaves)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var remaining = limit
        for part in parts {
            switch part {
            case .sealed(let path, let first, let count, let sha256):
                guard scan.range.size == first else {
                    return scan.damaged("segment \(path) starts at record \(first), but the segments before it end at record \(scan.range.size)")
                }
                guard let descriptor = try AuditFiles.open(path, O_RDONLY) else {
                    return scan.damaged("segment \(path) vanished while the log was read")
                }
                defer { close(descriptor) }
                var carry: [UInt8] = []
                let read = try scan.feed(descriptor, path: path, limit: remaining, buffer: &buffer, carry: &carry, rules: rules)
                if read.stopped { return scan.tooLong() }
                remaining -= read.bytes
                if remaining <= 0 { return scan }
                guard carry.isEmpty else {
                    return scan.damaged("segment \(path) ends inside a record (\(carry.count) bytes after its last newline): a sealed segment is never written again")
                }
                guard scan.range.size == first + count else {
                    return scan.damaged("segment \(path) holds \(scan.range.size - first) records, not the \(count) its name says")
                }
                if let sha256, try AuditLog.sha256(of: path) != sha256 {
                    var stopped = scan
                    stopped.damage = (first, "segment \(path), put back after it was archived, is not the file archived (its SHA-256 is not the one recorded)")
                    return stopped
                }
            case .archived(let segment, let leafHashes):
                guard scan.range.size == segment.first, remaining >= segment.bytes else {
                    return scan.damaged("the archived segment of records \(segment.first)–\(segment.end - 1) does not follow record \(scan.range.size - 1)")
                }
                remaining -= segment.bytes
                let before = scan
                var fromTiles = false
                if let leafHashes {
                    // The tiles' hashes only when they give the stub's subtrees: a tile edited for
                    // records that are not here would otherwise condemn the records (another root),
                    // and nothing could rebuild it without them. Either way the root decides.
                    var pieces = AuditSegments.subtrees(first: segment.first, count: segment.count)[...]
                    var piece = MerkleTree.CompactRange()
                    var roots: [String] = []
                    fromTiles = leafHashes { hash in
                        let index = scan.range.size
                        rules.leaves?(index, -1 - (index == segment.end - 1 ? segment.bytes : 0), hash)
                        scan.range.append(leafHash: hash)
                        scan.lastLeafHash = hash
                        if !rules.prefixSizes.isEmpty, rules.prefixSizes.contains(scan.range.size) { scan.prefixes[scan.range.size] = scan.range }
                        piece.append(leafHash: hash)
                        if let next = pieces.first, piece.size == 1 << next.level {
                            roots.append(hex(piece.root))
                            piece = MerkleTree.CompactRange()
                            pieces.removeFirst()
                        }
                    }
                    if fromTiles, let stub = segment.stub, roots != stub.subtrees { fromTiles = false }
                    // A tile missing part-way, or tiles the stub disagrees with: the stub's hashes
                    // instead (the tile check, fed some of them, stops there).
                    if !fromTiles { scan = before }
                }
                if !fromTiles {
                    guard let stub = segment.stub else { return scan.damaged("records \(segment.first)–\(segment.end - 1) are in no file") }
                    rules.leaves?(-1, 0, [])
                    for (piece, hex) in zip(AuditSegments.subtrees(first: segment.first, count: segment.count), stub.subtrees) {
                        guard let hash = bytes(fromHex: hex), scan.range.append(subtreeHash: hash, level: piece.level) else {
                            return scan.damaged("the stub of the archived records \(segment.first)–\(segment.end - 1) does not fit the tree")
                        }
                        if !rules.prefixSizes.isEmpty, rules.prefixSizes.contains(scan.range.size) { scan.prefixes[scan.range.size] = scan.range }
                    }
                    scan.lastLeafHash = []
                }
                scan.offset += segment.bytes
                scan.archived.append(segment)
            case .active(let path, let given):
                let opened = try given == nil ? AuditFiles.open(path, O_RDONLY) : nil
                guard let descriptor = given ?? opened else { return scan }
                defer { if let opened { close(opened) } }
                if given != nil, lseek(descriptor, 0, SEEK_SET) != 0 {
                    throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))")
                }
                var carry: [UInt8] = []
                let read = try scan.feed(descriptor, path: path, limit: remaining, buffer: &buffer, carry: &carry, rules: rules)
                if read.stopped { return scan.tooLong() }
                scan.tornBytes = carry.count
            }
        }
        return scan
    }

    /// The archived segments the scan went past without their records.
    var archived: [AuditSegments.Sealed] = []

    private func damaged(_ reason: String) -> LogScan {
        var stopped = self
        if stopped.damage == nil { stopped.damage = (range.size, reason) }
        return stopped
    }

    /// Reads one file to its end (or `limit` bytes), taking each complete line.
    private mutating func feed(_ descriptor: Int32, path: String, limit: Int, buffer: inout [UInt8], carry: inout [UInt8],
                               rules: Rules) throws -> (bytes: Int, stopped: Bool) {
        let chunk = buffer.count
        var remaining = limit
        var total = 0
        while remaining > 0 {
            let got = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(descriptor, base, min(chunk, remaining))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))") }
            if got == 0 { break }
            remaining -= got
            total += got
            let stopped = try buffer.withUnsafeBytes { raw -> Bool in
                let filled = UnsafeRawBufferPointer(rebasing: raw[0..<got])
                guard let base = filled.baseAddress else { return false }
                var start = 0
                while start < got, let found = memchr(base + start, 0x0A, got - start) {
                    let newline = base.distance(to: UnsafeRawPointer(found))
                    if carry.count + (newline - start) > Self.maximumLineLength { return true }
                    if carry.isEmpty {
                        try take(UnsafeRawBufferPointer(rebasing: filled[start..<newline]), rules)
                    } else {
                        carry += filled[start..<newline]
                        try carry.withUnsafeBytes { try take($0, rules) }
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = newline + 1
                }
                if carry.count + (got - start) > Self.maximumLineLength { return true }
                carry += filled[start..<got]
                return false
            }
            if stopped { return (total, true) }
        }
        return (total, false)
    }

    /// What a scan checks of each line, and what it keeps.
    private struct Rules {
        let serial: String
        let decoder: JSONDecoder
        let prefixSizes: Set<Int>
        let canonicalFrom: Int
        let hashOnlyBelow: Int
        let visit: ((Int, UnsafeRawBufferPointer) throws -> Void)?
        let leaves: ((Int, Int, MerkleTree.Hash) -> Void)?
    }

    /// The scan stops at a line over ``maximumLineLength``: damage, whatever else follows.
    private func tooLong() -> LogScan {
        var stopped = self
        if stopped.damage == nil {
            stopped.damage = (range.size, "line \(range.size) is longer than \(Self.maximumLineLength >> 20) MiB: not an audit record")
        }
        return stopped
    }

    private mutating func take(_ line: UnsafeRawBufferPointer, _ rules: Rules) throws {
        let index = range.size
        if damage == nil, index >= rules.hashOnlyBelow,
           let problem = Self.problem(line, at: index, serial: rules.serial, decoder: rules.decoder, canonical: index >= rules.canonicalFrom) {
            damage = (index, problem)
        }
        try rules.visit?(index, line)
        lastLeafHash = MerkleTree.leafHash(line)
        rules.leaves?(index, line.count + 1, lastLeafHash)
        range.append(leafHash: lastLeafHash)
        offset += line.count + 1
        if !rules.prefixSizes.isEmpty, rules.prefixSizes.contains(range.size) { prefixes[range.size] = range }
    }

    /// What is wrong with `line` as record `index` of the log of `serial`; nil when nothing.
    ///
    /// - Parameter canonical: also require the line to be exactly what this tool writes for the
    ///   record it decodes to (sorted keys, no duplicate or extra keys, no other spacing): a line
    ///   that other JSON readers could read differently is never sealed. Checked for records
    ///   after the last checkpoint, which nothing else vouches for.
    static func problem(_ line: some Collection<UInt8>, at index: Int, serial: String, decoder: JSONDecoder = JSONDecoder(),
                        canonical: Bool = false) -> String? {
        guard let place = try? decoder.decode(RecordPlace.self, from: Data(line)) else {
            return "line \(index) is not an audit record"
        }
        if canonical {
            guard let record = try? decoder.decode(AuditRecord.self, from: Data(line)), let written = try? record.line(),
                  written.elementsEqual(line) else {
                return "line \(index) is not written as this tool writes its records (other JSON readers could read it differently)"
            }
        }
        guard place.seq == index else {
            return "line \(index) has seq \(place.seq): records were removed, inserted or reordered"
        }
        guard place.token.serial == serial else {
            return "line \(index) is about token \(place.token.serial), not \(serial)"
        }
        return nil
    }

    /// What placing a record needs of it (decoding the whole record costs several times more).
    private struct RecordPlace: Decodable {
        struct Token: Decodable { let serial: String }
        let seq: Int
        let token: Token
        let event: String
    }
}

extension MerkleTree.CompactRange {
    /// The leaves `[start, end)` of the first perfect subtree in which two frontiers of the same
    /// size differ; nil when they are equal. Where a log and a checkpoint's tree part ways.
    func firstDifference(from other: MerkleTree.CompactRange) -> Range<Int>? {
        guard size == other.size else { return 0..<Swift.max(size, other.size) }
        var start = 0
        var bit = 1 << (Int.bitWidth - 2)
        var index = 0
        while bit > 0 {
            if size & bit != 0 {
                if hashes[index] != other.hashes[index] { return start..<(start + bit) }
                start += bit
                index += 1
            }
            bit >>= 1
        }
        return nil
    }
}
