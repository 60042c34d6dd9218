import ErrorShape
import DurableFiles
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import TransparencyLog

/// A log's records in segments: the *sealed* ones in `<serial>.segments/`, each a file that is
/// never written again, and the *active* one, `<serial>.jsonl`, which appends go to. Read one
/// after the other they are the log, byte for byte: line *i* is still Merkle leaf *i*, byte
/// offsets (the tree cache's, the tile index's) count from the first byte of the first
/// segment, and no root or proof changes when a log is cut into segments.
///
///     <serial>.segments/000000000000-1048576.jsonl     records 0–1048575, sealed
///     <serial>.segments/000001048576-1048577.archived  records moved elsewhere by `audit archive`:
///                                                      what is needed to go on without them
///
/// A sealed segment's name gives its first record and its record count; the segments must
/// follow one another from record 0 without a gap, and the active segment starts where the
/// last one ends. An *archived* segment's file is elsewhere: its stub (`.archived`) keeps its
/// length, SHA-256 and the hashes of the perfect subtrees that cover its records, so that the
/// tree over the whole log is computed without it. Nothing in the stub is trusted for being
/// there: a root computed with it must still be the one a signed checkpoint gives, and the
/// `audit.archived` record (itself in the tree) holds the same facts.
///
/// The active segment is sealed (renamed into the directory) by the append that brings it to
/// ``AuditLog/segmentRecords`` records or more, after the append is on disk: a segment holds
/// whole appends, so it may hold a few records more than that.
public struct AuditSegments: Sendable {
    /// Records after which the active segment is sealed: `FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS`
    /// (16 to 2^30), or 2^20 (about 470 MiB of proxy records).
    /// (The command line refuses a value that is not one: ``records(parsing:)``.)
    public static let defaultRecords: Int = {
        ProcessInfo.processInfo.environment[recordsVariable].flatMap(records(parsing:)) ?? 1 << 20
    }()

    /// The environment variable that sets the records per segment.
    public static let recordsVariable = "FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS"

    /// A count of records per segment: a whole number of decimal digits from 16 to 2^30.
    public static func records(parsing text: String) -> Int? {
        guard !text.isEmpty, text.count <= 10, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              let value = Int(text), (16...(1 << 30)).contains(value) else { return nil }
        return value
    }

    /// One sealed segment.
    public struct Sealed: Sendable, Equatable {
        /// Its first record's index.
        public let first: Int
        /// Its records.
        public let count: Int
        /// Its length in bytes.
        public let bytes: Int
        /// The byte offset of its first record in the log (the segments before it, together).
        public let start: Int
        /// The file, when it is here (nil: archived and not put back).
        public let path: String?
        /// The stub, when it was archived.
        public let stub: ArchivedSegment?

        /// One past its last record.
        public var end: Int { first + count }
    }

    /// The most bytes the sealed segments hold together (1 PiB): what a stub claims is bounded,
    /// so that offsets after it never overflow.
    static let maximumBytes = 1 << 50
    /// The largest first record and count a name can give (12 digits).
    static let maximumNumber = 999_999_999_999

    /// The directory, `<serial>.segments`.
    public let directory: String
    /// The sealed segments, in order.
    public let sealed: [Sealed]

    /// Records in the sealed segments: the active segment's first record.
    public var base: Int { sealed.last?.end ?? 0 }
    /// Bytes of the sealed segments: the active segment's first byte in the log.
    public var baseBytes: Int { sealed.last.map { $0.start + $0.bytes } ?? 0 }
    /// The archived segments that are not back in place.
    public var archivedAway: [Sealed] { sealed.filter { $0.path == nil } }

    /// Refuses an archived segment that is not back in place with records after the first
    /// `size` (the records a signed checkpoint vouches for): `audit archive` leaves a stub only
    /// once the `audit.archived` record after the segment is sealed, so such a stub stands for
    /// records nothing checked, and a tree with it must never be signed or called intact.
    func requireArchived(within size: Int, by what: String) throws {
        guard let away = archivedAway.first(where: { $0.end > size }) else { return }
        throw AuditError(.inconsistent, "records \(away.first)–\(away.end - 1) are archived (a stub in \(directory)), but \(what) checkpoint seals only \(size) records: a segment is archived only after its records are sealed, so nothing checked these; nothing was appended or signed",
                         facts: ErrorFacts(path: directory, recordIndex: away.first))
    }

    /// The segments of the log in `directory` (none when it does not exist). Refuses a
    /// directory that could have been written by others, a name out of the scheme, and
    /// segments that do not follow one another from record 0.
    static func load(_ directory: String) throws -> AuditSegments {
        guard let handle = opendir(directory) else {
            if errno == ENOENT { return AuditSegments(directory: directory, sealed: []) }
            throw AuditError(.unreadable, "cannot read the directory \(directory) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: directory))
        }
        defer { closedir(handle) }
        try AuditFiles.requireTrusted(directory: directory, files: [])
        var files: [Int: (count: Int, name: String)] = [:]
        var stubs: [Int: (count: Int, name: String)] = [:]
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." || name.hasSuffix(".tmp") { continue }
            guard let (first, count, kind) = parse(name) else {
                throw AuditError(.inconsistent, "\(directory)/\(name) is not a segment of the log (names are <first record, 12 digits>-<records>.jsonl or .archived); nothing in the segment directory is skipped", facts: ErrorFacts(path: directory))
            }
            // The trail's rule for each file: nobody else could have written it (a sealed
            // segment may hold records no checkpoint covers yet). Links are allowed: a segment is
            // never written again, and backups link unchanged files.
            var status = stat()
            if lstat(directory + "/" + name, &status) == 0, (status.st_uid != 0 && status.st_uid != getuid()) || status.st_mode & 0o022 != 0 {
                throw AuditError(.untrustedFile, "\(directory)/\(name) could have been written by others (owner \(status.st_uid), mode \(String(status.st_mode & 0o7777, radix: 8))): the audit trail cannot be trusted when others could have written it; once you know nobody else changed it, fix it with: chmod go-w '\(directory)/\(name)'",
                                 facts: ErrorFacts(path: directory + "/" + name))
            }
            // Two names for one first record (other counts): one of them would go unread.
            if let other = kind == "jsonl" ? files[first] : stubs[first] {
                throw AuditError(.inconsistent, "\(directory): \(other.name) and \(name) both start at record \(first); nothing in the segment directory is skipped", facts: ErrorFacts(path: directory, recordIndex: first))
            }
            if kind == "jsonl" { files[first] = (count, name) } else { stubs[first] = (count, name) }
        }
        var sealed: [Sealed] = []
        var next = 0
        var offset = 0
        for first in Set(files.keys).union(stubs.keys).sorted() {
            let file = files[first]
            let stubEntry = stubs[first]
            let count = file?.count ?? stubEntry?.count ?? 0
            guard first == next else {
                let what = first > next ? "records \(next)–\(first - 1) are in no segment" : "segments overlap at record \(first)"
                throw AuditError(.inconsistent, "\(directory): \(what): segments were removed or added (one moved elsewhere is archived by `audit archive`, which leaves a stub)", facts: ErrorFacts(path: directory, recordIndex: next))
            }
            if let file, let stubEntry, file.count != stubEntry.count {
                throw AuditError(.inconsistent, "\(directory): \(file.name) and \(stubEntry.name) disagree on the segment's records", facts: ErrorFacts(path: directory, recordIndex: first))
            }
            var stub: ArchivedSegment?
            if let stubEntry {
                stub = try ArchivedSegment.read(directory + "/" + stubEntry.name)
                guard stub?.first == first, stub?.count == count else {
                    throw AuditError(.inconsistent, "\(directory)/\(stubEntry.name) describes other records than its name says", facts: ErrorFacts(path: directory, recordIndex: first))
                }
            }
            var bytes = stub?.bytes ?? 0
            var path: String?
            if let file {
                path = directory + "/" + file.name
                guard let descriptor = try AuditFiles.open(directory + "/" + file.name, O_RDONLY) else {
                    throw AuditError(.unreadable, "\(directory)/\(file.name) vanished while the segments were read", facts: ErrorFacts(path: directory))
                }
                defer { close(descriptor) }
                bytes = try AuditFiles.size(descriptor, directory + "/" + file.name)
            }
            sealed.append(Sealed(first: first, count: count, bytes: bytes, start: offset, path: path, stub: stub))
            next = first + count
            // A stub's length is what it says: bounded, so that no offset after it overflows.
            let (sum, overflow) = offset.addingReportingOverflow(bytes)
            guard !overflow, sum <= maximumBytes else {
                throw AuditError(.inconsistent, "\(directory): the segments up to record \(next - 1) claim more than \(maximumBytes >> 50) PiB: not a log's segments", facts: ErrorFacts(path: directory, recordIndex: first))
            }
            offset = sum
        }
        return AuditSegments(directory: directory, sealed: sealed)
    }

    /// `<first>-<count>.jsonl` or `.archived`: the first record (12 digits) and the count.
    static func parse(_ name: String) -> (first: Int, count: Int, kind: String)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1] == "jsonl" || parts[1] == "archived" else { return nil }
        let numbers = parts[0].split(separator: "-", omittingEmptySubsequences: false)
        guard numbers.count == 2, numbers[0].count == 12, numbers.allSatisfy({ !$0.isEmpty && $0.count <= 12 && $0.allSatisfy { ("0"..."9").contains($0) } }),
              let first = Int(numbers[0]), let count = Int(numbers[1]), count > 0, String(count) == numbers[1] else { return nil }
        return (first, count, String(parts[1]))
    }

    /// The file name of the segment of `count` records from `first`.
    static func name(first: Int, count: Int, kind: String) -> String {
        let digits = String(first)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits + "-\(count).\(kind)"
    }

    /// The aligned perfect subtrees that cover leaves `[first, first + count)` of a tree: each
    /// one's first leaf and level (its leaves: 2^level), left to right. Appended to the tree of
    /// the leaves before `first` in this order, they give the tree of the leaves up to the end.
    public static func subtrees(first: Int, count: Int) -> [(first: Int, level: Int)] {
        var pieces: [(Int, Int)] = []
        var start = first
        let end = first + count
        while start < end {
            var level = 0
            while level < 62, start % (1 << (level + 1)) == 0, start + (1 << (level + 1)) <= end { level += 1 }
            pieces.append((start, level))
            start += 1 << level
        }
        return pieces
    }
}

/// What `audit archive` leaves in place of a segment it moved elsewhere (`<first>-<count>.archived`,
/// JSON): where the segment went, its length and SHA-256, the `audit.archived` record that says
/// so, and the hashes of the subtrees that cover its records (``AuditSegments/subtrees(first:count:)``).
public struct ArchivedSegment: Codable, Sendable, Equatable {
    /// The first record.
    public let first: Int
    /// The records.
    public let count: Int
    /// The segment file's length.
    public let bytes: Int
    /// The segment file's SHA-256 (hex).
    public let sha256: String
    /// The subtree hashes (hex), left to right.
    public let subtrees: [String]
    /// Where it was moved.
    public let to: String
    /// The file name it has there.
    public let file: String
    /// The `audit.archived` record that names it (and, in its `archivedSoFar`, every segment
    /// archived until then): nil until that record is sealed.
    public let record: Int?

    public init(first: Int, count: Int, bytes: Int, sha256: String, subtrees: [String], to: String, file: String, record: Int? = nil) {
        self.first = first
        self.count = count
        self.bytes = bytes
        self.sha256 = sha256
        self.subtrees = subtrees
        self.to = to
        self.file = file
        self.record = record
    }

    /// The same stub, naming the record that archived it.
    public func named(by record: Int) -> ArchivedSegment {
        ArchivedSegment(first: first, count: count, bytes: bytes, sha256: sha256, subtrees: subtrees, to: to, file: file, record: record)
    }

    /// What `archivedSoFar.sha256` of an `audit.archived` record covers: one line per archived
    /// segment, in record order, `<first> <count> <bytes> <sha256> <subtree>,<subtree>…\n`,
    /// hashed with SHA-256 (hex). Where a segment went is not in it (the archive may move).
    public static func digest(_ stubs: [ArchivedSegment]) -> String {
        var hash = SHA256()
        for stub in stubs.sorted(by: { $0.first < $1.first }) {
            hash.update(data: Array("\(stub.first) \(stub.count) \(stub.bytes) \(stub.sha256) \(stub.subtrees.joined(separator: ","))\n".utf8))
        }
        return hex(Array(hash.finalize()))
    }

    static func read(_ path: String) throws -> ArchivedSegment {
        guard let data = try AuditFiles.readSmall(path) else {
            throw AuditError(.unreadable, "\(path) vanished while the segments were read", facts: ErrorFacts(path: path))
        }
        // The numbers are bounded before anything is computed from them (first + count).
        guard let stub = try? JSONDecoder().decode(ArchivedSegment.self, from: Data(data)),
              (0...AuditSegments.maximumBytes).contains(stub.bytes), (0...AuditSegments.maximumNumber).contains(stub.first),
              (1...AuditSegments.maximumNumber).contains(stub.count),
              stub.record.map({ (0...(2 * AuditSegments.maximumNumber)).contains($0) }) ?? true,
              stub.subtrees.count == AuditSegments.subtrees(first: stub.first, count: stub.count).count,
              stub.subtrees.allSatisfy({ HexEncoding.bytes(fromHex: $0)?.count == 32 }), HexEncoding.bytes(fromHex: stub.sha256)?.count == 32 else {
            throw AuditError(.inconsistent, "\(path) is not the stub of an archived segment", facts: ErrorFacts(path: path))
        }
        return stub
    }

    /// The stub as written (sorted keys).
    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(self)) + [0x0A]
    }
}

extension MerkleTree.CompactRange {
    /// Adds a perfect subtree of 2^`level` leaves (its root hash) on the right; the tree's size
    /// must be a multiple of 2^`level` (an aligned subtree). False (nothing added) otherwise.
    mutating func append(subtreeHash: MerkleTree.Hash, level: Int) -> Bool {
        guard level >= 0, level < 62, size % (1 << level) == 0 else { return false }
        var hashes = self.hashes
        var hash = subtreeHash
        var carried = size >> level
        while carried & 1 == 1, let left = hashes.popLast() {
            hash = MerkleTree.nodeHash(left, hash)
            carried >>= 1
        }
        hashes.append(hash)
        guard let next = MerkleTree.CompactRange(size: size + (1 << level), hashes: hashes) else { return false }
        self = next
        return true
    }
}

extension LogLines {
    /// ``forEach(_:from:to:_:)`` over a whole segmented log: byte offsets count from the first
    /// segment's start; the sealed segments are read in order, then the active one. A record in
    /// an archived segment that is not back in place cannot be read
    /// (``AuditError/Code/unreadable``, naming the segment and where it went); a sealed segment
    /// that does not end in a newline is ``AuditError/Code/inconsistent``.
    @discardableResult
    static func forEach(_ log: AuditLog, segments: AuditSegments, from start: Int, to limit: Int? = nil,
                        _ body: (ArraySlice<UInt8>, Int) throws -> Bool) throws -> (offset: Int, tornBytes: Int) {
        var stopped = false
        var position = start
        var current = segments
        while true {
            for segment in current.sealed where segment.start + segment.bytes > position {
                if let limit, segment.start >= limit { return (position, 0) }
                guard let path = segment.path else { throw AuditSegments.archivedError(segment, log: log) }
                let local = try forEach(path, from: position - segment.start, to: limit.map { $0 - segment.start }) { line, end in
                    let more = try body(line, end + segment.start)
                    if !more { stopped = true }
                    return more
                }
                position = local.offset + segment.start
                if stopped { return (position, 0) }
                if local.tornBytes > 0 {
                    if let limit, limit < segment.start + segment.bytes { return (position, local.tornBytes) }
                    throw AuditError(.inconsistent, "segment \(path) ends inside a record: a sealed segment is never written again", facts: ErrorFacts(path: path))
                }
            }
            // The active segment may have been sealed since the segments were listed (a reader
            // does not hold the writers' lock): then it is read as the segment it became.
            let now = try log.segments()
            guard now.baseBytes <= current.baseBytes else {
                current = now
                continue
            }
            break
        }
        let active = current.baseBytes
        guard position >= active else { return (position, 0) }
        let local = try forEach(log.logPath, from: position - active, to: limit.map { $0 - active }) { line, end in
            try body(line, end + active)
        }
        return (local.offset + active, local.tornBytes)
    }
}

extension AuditSegments {
    /// The error of a reader that needs the records of an archived segment.
    static func archivedError(_ segment: Sealed, log: AuditLog) -> AuditError {
        let whereTo = segment.stub.map { " (moved to \($0.to)/\($0.file))" } ?? ""
        return AuditError(.unreadable, "records \(segment.first)–\(segment.end - 1) are archived\(whereTo): put the segment back at \(log.segmentsPath)/\(name(first: segment.first, count: segment.count, kind: "jsonl")) to read them",
                          facts: ErrorFacts(path: log.segmentsPath, recordIndex: segment.first))
    }
}

extension TileStore {
    /// Calls `body` with the leaf hashes of records `[first, first + count)`, read from the
    /// level-0 tiles one tile at a time (256 hashes in memory, whatever the count). False when a
    /// tile they need is not there or not usable: `body` may then have seen some of them.
    func forEachLeafHash(first: Int, count: Int, _ body: (MerkleTree.Hash) -> Void) -> Bool {
        guard count > 0, exists else { return false }
        let width = TileCoordinate.fullWidth
        var tile = first / width
        while tile * width < first + count {
            let needed = min(width, first + count - tile * width)
            guard let coordinate = TileCoordinate(level: 0, index: tile, width: needed) else { return false }
            let found: [MerkleTree.Hash]?
            do { found = try readPrefix(coordinate) } catch { return false }
            guard let found, found.count == needed else { return false }
            for hash in found[max(first - tile * width, 0)..<needed] { body(hash) }
            tile += 1
        }
        return true
    }
}
