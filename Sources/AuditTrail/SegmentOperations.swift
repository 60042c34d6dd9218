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

/// What ``AuditLog/splitIntoSegments(anchor:)`` did.
public struct SegmentSplitReport: Sendable, Equatable, Codable {
    /// Records in the log (none changed).
    public let records: Int
    /// Sealed segments written now.
    public let segmentsWritten: Int
    /// Sealed segments there are now.
    public let segments: Int
    /// Records left in the active segment.
    public let activeRecords: Int
}

extension AuditLog {
    /// Cuts a log into sealed segments of ``segmentRecords`` records (at multiples of it),
    /// in place, leaving the records after the last full one in the active segment: for a log
    /// written before segments, one file. No record changes, so no root, proof or offset does.
    ///
    /// Under the lock, once the log is found to extend `anchor` (the checkpoint the caller
    /// verified; nil only for a trail without one): a log that is not in order is never cut.
    /// Each segment is written whole and synced before it gets its name, and the active file is
    /// replaced last: an interrupted split leaves segments that repeat the start of the active
    /// file, which readers refuse and the next split finds equal and completes.
    public func splitIntoSegments(anchor: Checkpoint?) throws -> SegmentSplitReport {
        try withLock("audit segment") {
            let segments = try self.segments()
            let first = try firstRecordOfActive(segments: segments)
            if first == segments.base {
                // Every record is read and checked against the anchor (not only the records
                // after a cached frontier, as an append does): what is cut is what was sealed.
                return try split(segments: segments, first: first, anchor: anchor)
            }
            // An interrupted split: the active file still starts at `first`; the segments from
            // there must be its own bytes.
            guard first < segments.base else {
                throw AuditError(.inconsistent, "\(logPath) starts at record \(first), after the segments' end (\(segments.base)): records are missing; nothing was changed")
            }
            try requireActive(startsWith: segments.sealed.filter { $0.first >= first }, first: first)
            return try split(segments: segments, first: first, anchor: anchor)
        }
    }

    /// The `seq` of the active file's first record (the segments' end when it has none).
    private func firstRecordOfActive(segments: AuditSegments) throws -> Int {
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return segments.base }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, logPath)
        guard size > 0 else { return segments.base }
        let window = min(size, LogScan.maximumLineLength + 1)
        guard let bytes = AuditFiles.readFully(descriptor, at: 0, count: window), let newline = bytes.firstIndex(of: 0x0A) else {
            return segments.base
        }
        struct Place: Decodable { let seq: Int }
        guard let place = try? JSONDecoder().decode(Place.self, from: Data(bytes[..<newline])) else {
            throw AuditError(.inconsistent, "the first line of \(logPath) is not an audit record; nothing was changed", facts: ErrorFacts(path: logPath))
        }
        return place.seq
    }

    /// Each of `segments` must hold exactly the bytes the active file holds for its records.
    private func requireActive(startsWith sealed: [AuditSegments.Sealed], first: Int) throws {
        guard let active = try AuditFiles.open(logPath, O_RDONLY) else { return }
        defer { close(active) }
        var offset = 0
        for segment in sealed {
            var lines = 0
            guard let path = segment.path, let file = try AuditFiles.open(path, O_RDONLY) else {
                throw AuditError(.inconsistent, "records \(segment.first)–\(segment.end - 1) are archived but \(logPath) still holds them: nothing was changed")
            }
            defer { close(file) }
            var position = 0
            while position < segment.bytes {
                let count = min(1 << 20, segment.bytes - position)
                guard let mine = AuditFiles.readFully(file, at: position, count: count),
                      let theirs = AuditFiles.readFully(active, at: offset + position, count: count), mine == theirs else {
                    throw AuditError(.inconsistent, "segment \(path) is not the start of \(logPath) (an interrupted split leaves only copies): nothing was changed", facts: ErrorFacts(path: path))
                }
                lines += mine.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                if position + count == segment.bytes, mine.last != 0x0A { lines = -1 }
                position += count
            }
            // Its records are the ones its name says, whole: the split goes on after them.
            guard lines == segment.count else {
                throw AuditError(.inconsistent, "segment \(path) does not hold the \(segment.count) whole records its name says: it is not what a split writes; nothing was changed", facts: ErrorFacts(path: path))
            }
            offset += segment.bytes
        }
    }

    /// Checks the whole log (as it will read once split: the segments before record `first`,
    /// then the active file) against `anchor`, then writes the full segments the active file
    /// holds from record `first` on, then the rest as the new active file.
    private func split(segments: AuditSegments, first: Int, anchor: Checkpoint?) throws -> SegmentSplitReport {
        do {
            if let anchor { try segments.requireArchived(within: anchor.treeSize, by: "the token's") }
            // The log as it will be: the segments before `first`, then the active file.
            let parts = LogScan.parts(of: self, segments: AuditSegments(directory: segments.directory, sealed: segments.sealed.filter { $0.first < first }))
            let scan = try LogScan.scan(parts: parts, serial: token.serial, prefixSizes: anchor.map { [$0.treeSize] } ?? [],
                                        canonicalFrom: anchor?.treeSize ?? 0)
            if let anchor { try Self.requireExtends(scan, anchor, name: "the token's", knownFrontier: nil) }
            if let damage = scan.damage { throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason); nothing was changed", facts: ErrorFacts(path: logPath, recordIndex: damage.index)) }
            if scan.tornBytes > 0 { throw AuditError(.tornTail, "\(logPath) ends in a torn record; repair it first (audit repair); nothing was changed") }
        }
        try AtomicFile.makePrivateDirectory(segmentsPath)
        try AuditFiles.requireTrusted(directory: segmentsPath, files: [])
        var written = 0
        var index = first
        var consumed = 0
        // Segments an interrupted split wrote (found equal to the file's start): kept as they are,
        // and the next segment starts where each ends, whatever the count this run uses.
        let existing = Dictionary(segments.sealed.filter { $0.first >= first }.map { ($0.first, $0.count) }, uniquingKeysWith: { a, _ in a })
        // Segments end at multiples of segmentRecords (the first may be shorter, for a log whose
        // earlier segments were sealed by appends).
        func boundary(after start: Int) -> Int { (start / segmentRecords + 1) * segmentRecords }
        var nextBoundary = existing[first].map { first + $0 } ?? boundary(after: first)
        var writer: SegmentWriter?
        defer { writer?.abandon() }
        var chunkFirst = first
        _ = try LogLines.forEach(logPath, from: 0) { line, end in
            // A segment an interrupted split wrote is there already (and was found equal).
            if index == chunkFirst, existing[index] == nil {
                writer = try SegmentWriter(directory: segmentsPath, first: index, count: nextBoundary - index)
            }
            try writer?.add(line)
            index += 1
            if index == nextBoundary {
                if let finished = writer {
                    try finished.finish()
                    writer = nil
                    written += 1
                }
                consumed = end
                chunkFirst = index
                nextBoundary = existing[index].map { index + $0 } ?? boundary(after: index)
            }
            return true
        }
        writer?.abandon()
        writer = nil
        // The rest, the new active file: written aside, synced, then put in place.
        try AuditFiles.putInPlace(try restOfActive(from: consumed), at: logPath, through: logPath + ".new")
        try AuditFiles.syncDirectory(directory.path)
        let after = try self.segments()
        return SegmentSplitReport(records: index, segmentsWritten: written, segments: after.sealed.count, activeRecords: index - after.base)
    }

    /// The active file's bytes from `offset` to its end.
    private func restOfActive(from offset: Int) throws -> [UInt8] {
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return [] }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, logPath)
        guard size >= offset else { throw AuditError(.inconsistent, "\(logPath) became shorter while it was split") }
        guard let bytes = AuditFiles.readFully(descriptor, at: offset, count: size - offset) else {
            throw AuditError(.unreadable, "cannot read \(logPath) (\(String(cString: strerror(errno))))")
        }
        return bytes
    }
}

/// Writes one sealed segment during a split: to `<name>.tmp` in 1 MiB writes, then synced,
/// made read-only and renamed; abandoned, the temporary file is removed.
private final class SegmentWriter {
    let temporary: String
    let target: String
    let directory: String
    private var descriptor: Int32
    private var buffer: [UInt8] = []

    init(directory: String, first: Int, count: Int) throws {
        self.directory = directory
        target = directory + "/" + AuditSegments.name(first: first, count: count, kind: "jsonl")
        temporary = target + ".tmp"
        _ = unlink(temporary)
        guard let descriptor = try AuditFiles.open(temporary, O_WRONLY | O_EXCL, create: true) else {
            throw AuditError(.unwritable, "cannot create \(temporary)")
        }
        self.descriptor = descriptor
    }

    func add(_ line: ArraySlice<UInt8>) throws {
        buffer += line
        buffer.append(0x0A)
        if buffer.count >= 1 << 20 { try write() }
    }

    private func write() throws {
        try AuditFiles.appendWhole(buffer, descriptor: descriptor, path: temporary, sync: false)
        buffer.removeAll(keepingCapacity: true)
    }

    func finish() throws {
        try write()
        guard fsync(descriptor) == 0 else { throw AuditError(.unwritable, "cannot sync \(temporary) (\(String(cString: strerror(errno))))") }
        fchmod(descriptor, 0o400)
        close(descriptor)
        descriptor = -1
        guard rename(temporary, target) == 0 else {
            throw AuditError(.unwritable, "cannot name the segment \(target) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: target))
        }
        try AuditFiles.syncDirectory(directory)
    }

    func abandon() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
        _ = unlink(temporary)
    }
}

// MARK: Archival

extension AuditLog {
    /// The sealed segments here whose every record is older than `date` (the last record's
    /// `time` before it), oldest first.
    public func segmentsToArchive(before date: Date) throws -> [AuditSegments.Sealed] {
        let segments = try self.segments()
        var chosen: [AuditSegments.Sealed] = []
        for segment in segments.sealed {
            guard let path = segment.path else { continue }
            guard let last = try lastRecordTime(path, bytes: segment.bytes), last < date else { break }
            chosen.append(segment)
        }
        return chosen
    }

    private func lastRecordTime(_ path: String, bytes: Int) throws -> Date? {
        guard bytes > 0, let descriptor = try AuditFiles.open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        let window = min(bytes, LogScan.maximumLineLength + 1)
        guard let tail = AuditFiles.readFully(descriptor, at: bytes - window, count: window), tail.last == 0x0A else { return nil }
        let body = tail.dropLast()
        let start = body.lastIndex(of: 0x0A).map { $0 + 1 } ?? body.startIndex
        struct Time: Decodable { let time: String }
        guard let time = try? JSONDecoder().decode(Time.self, from: Data(body[start...])) else { return nil }
        return try? Date(time.time, strategy: .iso8601)
    }

    /// Copies a sealed segment to `directory` (written whole as `<name>.tmp`, synced, renamed;
    /// an equal file already there is kept), reads the copy back, and returns its stub: length,
    /// SHA-256 and the subtree hashes of its records, each record checked in its place. Nothing
    /// here is changed yet.
    public func copySegment(_ segment: AuditSegments.Sealed, to directory: String) throws -> ArchivedSegment {
        guard let source = segment.path else { throw AuditSegments.archivedError(segment, log: self) }
        let name = "\(Self.safeName(token.serial))-" + AuditSegments.name(first: segment.first, count: segment.count, kind: "jsonl")
        let target = directory + "/" + name
        // The records, hashed and checked, and the file's digest, in one read.
        var digest = SHA256()
        var pieces = AuditSegments.subtrees(first: segment.first, count: segment.count)[...]
        var subtrees: [String] = []
        var current = MerkleTree.CompactRange()
        var index = segment.first
        var problem: String?
        let decoder = JSONDecoder()
        _ = try LogLines.forEach(source, from: 0) { line, _ in
            if let wrong = LogScan.problem(line, at: index, serial: token.serial, decoder: decoder) {
                problem = wrong
                return false
            }
            digest.update(data: line)
            digest.update(data: [0x0A])
            current.append(leafHash: MerkleTree.leafHash(line))
            index += 1
            if let piece = pieces.first, current.size == 1 << piece.level {
                subtrees.append(hex(current.root))
                current = MerkleTree.CompactRange()
                pieces.removeFirst()
            }
            return true
        }
        if let problem { throw AuditError(.inconsistent, "record \(index) of \(source): \(problem); nothing was archived", facts: ErrorFacts(path: source, recordIndex: index)) }
        guard index == segment.end, pieces.isEmpty else {
            throw AuditError(.inconsistent, "\(source) holds \(index - segment.first) records, not \(segment.count); nothing was archived", facts: ErrorFacts(path: source))
        }
        let sha = hex(Array(digest.finalize()))
        let stub = ArchivedSegment(first: segment.first, count: segment.count, bytes: segment.bytes, sha256: sha, subtrees: subtrees,
                                   to: directory, file: name)
        if try Self.sha256(of: target) != sha {
            try copyFile(source, to: target)
            guard try Self.sha256(of: target) == sha else {
                throw AuditError(.unwritable, "the copy \(target) does not read back as \(source) did; nothing was archived", facts: ErrorFacts(path: target))
            }
        }
        return stub
    }

    /// Throws unless the log with `stubs` in place of their segments still has, over its first
    /// `verified.size` records, the root a verification just found: the hashes taken from the
    /// copies are those of the records verified (a segment swapped between the verification
    /// and the copy gives others), before they are recorded and the segments' files removed.
    public func requireStubs(_ stubs: [ArchivedSegment], keep verified: (size: Int, root: [UInt8])) throws {
        let segments = try self.segments()
        let byFirst = Dictionary(stubs.map { ($0.first, $0) }, uniquingKeysWith: { first, _ in first })
        let parts: [LogScan.Part] = segments.sealed.map { segment in
            if let stub = byFirst[segment.first], stub.count == segment.count {
                return .archived(AuditSegments.Sealed(first: segment.first, count: segment.count, bytes: stub.bytes, start: segment.start, path: nil, stub: stub),
                                 leafHashes: nil)
            }
            if let path = segment.path { return .sealed(path: path, first: segment.first, count: segment.count, sha256: segment.stub?.sha256) }
            return .archived(segment, leafHashes: nil)
        } + [.active(logPath)]
        let scan = try LogScan.scan(parts: parts, serial: token.serial, prefixSizes: [verified.size], hashOnlyBelow: verified.size)
        guard scan.prefixes[verified.size]?.root == verified.root else {
            throw AuditError(.inconsistent, "the hashes taken from the copies do not give the root the log was just verified to have: a segment changed after it was verified; nothing was archived (the copies may stay)")
        }
    }

    /// Writes the stubs (each whole, synced, renamed) and then removes the segments' files here:
    /// after the `audit.archived` record that names them is sealed. A file that changed since
    /// it was copied (its length) is left.
    public func leaveStubs(_ stubs: [ArchivedSegment]) throws {
        for stub in stubs {
            let stubPath = segmentsPath + "/" + AuditSegments.name(first: stub.first, count: stub.count, kind: "archived")
            try AuditFiles.putInPlace(try stub.encoded(), at: stubPath, through: stubPath + ".tmp")
        }
        try AuditFiles.syncDirectory(segmentsPath)
        for stub in stubs {
            let file = segmentsPath + "/" + AuditSegments.name(first: stub.first, count: stub.count, kind: "jsonl")
            var status = stat()
            guard lstat(file, &status) == 0, Int(status.st_size) == stub.bytes else { continue }
            guard unlink(file) == 0 else {
                throw AuditError(.unwritable, "cannot remove \(file) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: file))
            }
        }
        try AuditFiles.syncDirectory(segmentsPath)
    }

    /// The SHA-256 (hex) of a file; nil when there is none.
    static func sha256(of path: String) throws -> String? {
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        var digest = SHA256()
        let size = try AuditFiles.size(descriptor, path)
        var position = 0
        while position < size {
            let count = min(1 << 20, size - position)
            guard let bytes = AuditFiles.readFully(descriptor, at: position, count: count) else {
                throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
            }
            digest.update(data: bytes)
            position += count
        }
        return hex(Array(digest.finalize()))
    }

    private func copyFile(_ source: String, to target: String) throws {
        guard let input = try AuditFiles.open(source, O_RDONLY) else { throw AuditError(.unreadable, "\(source) vanished") }
        defer { close(input) }
        let temporary = target + ".tmp"
        _ = unlink(temporary)
        let output = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o400)
        guard output >= 0 else {
            throw AuditError(.unwritable, "cannot create \(temporary) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: temporary))
        }
        do {
            let size = try AuditFiles.size(input, source)
            var position = 0
            while position < size {
                let count = min(1 << 20, size - position)
                guard let bytes = AuditFiles.readFully(input, at: position, count: count) else {
                    throw AuditError(.unreadable, "cannot read \(source) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: source))
                }
                try AuditFiles.appendWhole(bytes, descriptor: output, path: temporary, sync: false)
                position += count
            }
            guard fsync(output) == 0 else { throw AuditError(.unwritable, "cannot sync \(temporary) (\(String(cString: strerror(errno))))") }
            close(output)
        } catch {
            close(output)
            _ = unlink(temporary)
            throw error
        }
        guard rename(temporary, target) == 0 else {
            throw AuditError(.unwritable, "cannot name \(target) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: target))
        }
        try AuditFiles.syncDirectory(URL(fileURLWithPath: target).deletingLastPathComponent().path)
    }
}
