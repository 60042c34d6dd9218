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
    ///   - visit: called with each complete line's index and bytes (for readers that keep some).
    ///   - leaves: called with each complete line's index, length (newline included) and leaf hash.
    /// The longest line read as a record (records are a few KiB; a longer line is damage, and
    /// is not held in memory).
    static let maximumLineLength = 1 << 20

    static func scan(_ path: String, serial: String, prefixSizes: Set<Int> = [], canonicalFrom: Int = .max,
                     visit: ((Int, ArraySlice<UInt8>) throws -> Void)? = nil,
                     leaves: ((Int, Int, MerkleTree.Hash) -> Void)? = nil) throws -> LogScan {
        var scan = LogScan()
        if prefixSizes.contains(0) { scan.prefixes[0] = scan.range }
        guard let descriptor = try AuditFiles.open(path, O_RDONLY) else { return scan }
        defer { close(descriptor) }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        var carry: [UInt8] = []
        let decoder = JSONDecoder()
        while true {
            let got = buffer.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return read(descriptor, base, chunk)
            }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))") }
            if got == 0 { break }
            var start = 0
            let filled = buffer[0..<got]
            while let newline = filled[start...].firstIndex(of: 0x0A) {
                if carry.count + (newline - start) > maximumLineLength { return scan.tooLong() }
                if carry.isEmpty {
                    try scan.take(filled[start..<newline], serial: serial, decoder: decoder, prefixSizes: prefixSizes,
                                  canonicalFrom: canonicalFrom, leaves: leaves, visit: visit)
                } else {
                    carry += filled[start..<newline]
                    try scan.take(carry[...], serial: serial, decoder: decoder, prefixSizes: prefixSizes,
                                  canonicalFrom: canonicalFrom, leaves: leaves, visit: visit)
                    carry.removeAll(keepingCapacity: true)
                }
                start = newline + 1
            }
            if carry.count + (got - start) > maximumLineLength { return scan.tooLong() }
            carry += filled[start...]
        }
        scan.tornBytes = carry.count
        return scan
    }

    /// The scan stops at a line over ``maximumLineLength``: damage, whatever else follows.
    private func tooLong() -> LogScan {
        var stopped = self
        if stopped.damage == nil {
            stopped.damage = (range.size, "line \(range.size) is longer than \(Self.maximumLineLength >> 20) MiB: not an audit record")
        }
        return stopped
    }

    private mutating func take(_ line: ArraySlice<UInt8>, serial: String, decoder: JSONDecoder, prefixSizes: Set<Int>,
                               canonicalFrom: Int, leaves: ((Int, Int, MerkleTree.Hash) -> Void)?,
                               visit: ((Int, ArraySlice<UInt8>) throws -> Void)?) throws {
        let index = range.size
        if damage == nil, let problem = Self.problem(line, at: index, serial: serial, decoder: decoder, canonical: index >= canonicalFrom) {
            damage = (index, problem)
        }
        try visit?(index, line)
        lastLeafHash = MerkleTree.leafHash(line)
        leaves?(index, line.count + 1, lastLeafHash)
        range.append(leafHash: lastLeafHash)
        offset += line.count + 1
        if prefixSizes.contains(range.size) { prefixes[range.size] = range }
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
