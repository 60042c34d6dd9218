#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
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
        var scan = LogScan()
        if prefixSizes.contains(0) { scan.prefixes[0] = scan.range }
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return scan }
        defer { close(descriptor) }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var carry: [UInt8] = []
        let decoder = JSONDecoder()
        var remaining = limit
        let rules = Rules(serial: serial, decoder: decoder, prefixSizes: prefixSizes, canonicalFrom: canonicalFrom,
                          hashOnlyBelow: hashOnlyBelow, visit: visit, leaves: leaves)
        while remaining > 0 {
            let got = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(descriptor, base, min(chunk, remaining))
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))") }
            if got == 0 { break }
            remaining -= got
            let stopped = try buffer.withUnsafeBytes { raw -> Bool in
                let filled = UnsafeRawBufferPointer(rebasing: raw[0..<got])
                guard let base = filled.baseAddress else { return false }
                var start = 0
                while start < got, let found = memchr(base + start, 0x0A, got - start) {
                    let newline = base.distance(to: UnsafeRawPointer(found))
                    if carry.count + (newline - start) > maximumLineLength { return true }
                    if carry.isEmpty {
                        try scan.take(UnsafeRawBufferPointer(rebasing: filled[start..<newline]), rules)
                    } else {
                        carry += filled[start..<newline]
                        try carry.withUnsafeBytes { try scan.take($0, rules) }
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = newline + 1
                }
                if carry.count + (got - start) > maximumLineLength { return true }
                carry += filled[start..<got]
                return false
            }
            if stopped { return scan.tooLong() }
        }
        scan.tornBytes = carry.count
        return scan
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
