import ErrorShape

/// A tree of ``size`` leaves read from its C2SP tiles: the hash of any subtree, the root and
/// right frontier of any prefix, RFC 6962 inclusion and consistency proofs (§2.1.1, §2.1.2),
/// each from O(log n) tiles (a perfect subtree of 2^k leaves is one hash of the level-⌊k/8⌋
/// tiles, or up to 128 of them folded).
///
/// Tiles come from `readTile`, which returns the hashes of the tile asked for at the width this
/// tree gives it. Nothing here trusts them: the caller checks what is computed (a proof against
/// a signed root) before using it.
public struct TiledTree {
    /// Leaves in the tree.
    public let size: Int
    private let tiles: TileReads

    /// The tree of `size` leaves whose tiles `readTile` returns.
    public init(size: Int, readTile: @escaping (TileCoordinate) throws -> [MerkleTree.Hash]) {
        self.size = max(0, size)
        tiles = TileReads(readTile)
    }

    /// Distinct tiles read so far.
    public var tilesRead: Int { tiles.cache.count }

    /// MTH(D[range]) of RFC 6962 over leaves `range` of this tree (not empty).
    public func hash(_ range: Range<Int>) throws -> MerkleTree.Hash {
        guard range.lowerBound >= 0, range.upperBound <= size, !range.isEmpty else {
            throw TileError(.outOfRange, "leaves \(range.lowerBound)..<\(range.upperBound) are not in a tree of \(size)")
        }
        let count = range.count
        if count & (count - 1) == 0, range.lowerBound % count == 0 { return try perfect(start: range.lowerBound, count: count) }
        let k = MerkleTree.largestPowerOfTwo(below: count)
        let split = range.lowerBound + k
        return MerkleTree.nodeHash(try hash(range.lowerBound..<split), try hash(split..<range.upperBound))
    }

    /// The leaf hash of leaf `index`.
    public func leafHash(_ index: Int) throws -> MerkleTree.Hash {
        try hash(index..<(index + 1))
    }

    /// MTH(D[0:m]): the root of the prefix of `m` leaves (m ≤ size).
    public func root(size m: Int) throws -> MerkleTree.Hash {
        try compactRange(size: m).root
    }

    /// The right frontier of the prefix of `m` leaves: one perfect subtree per set bit of m.
    public func compactRange(size m: Int) throws -> MerkleTree.CompactRange {
        guard m >= 0, m <= size else { throw TileError(.outOfRange, "a prefix of \(m) leaves is not in a tree of \(size)") }
        var hashes: [MerkleTree.Hash] = []
        var start = 0
        var bit = 1 << (Int.bitWidth - 2)
        while bit > 0 {
            if m & bit != 0 {
                hashes.append(try perfect(start: start, count: bit))
                start += bit
            }
            bit >>= 1
        }
        guard let range = MerkleTree.CompactRange(size: m, hashes: hashes) else {
            throw TileError(.malformed, "the tiles give a frontier of the wrong shape for \(m) leaves")
        }
        return range
    }

    /// PATH(index, D[m]): the inclusion proof of leaf `index` in the prefix of `m` leaves
    /// (default: the whole tree), leaf's sibling first.
    public func inclusionProof(index: Int, treeSize m: Int? = nil) throws -> [MerkleTree.Hash] {
        let m = m ?? size
        guard m <= size, index >= 0, index < m else { throw TileError(.outOfRange, "leaf \(index) is not in a tree of \(m)") }
        return try path(index, 0, m)
    }

    /// PROOF(oldSize, D[newSize]): that the prefix of `oldSize` leaves is a prefix of the one
    /// of `newSize` (default: the whole tree); empty when `oldSize` is 0 or `newSize`.
    public func consistencyProof(oldSize: Int, newSize: Int? = nil) throws -> [MerkleTree.Hash] {
        let newSize = newSize ?? size
        guard oldSize >= 0, oldSize <= newSize, newSize <= size else {
            throw TileError(.outOfRange, "no consistency proof from \(oldSize) to \(newSize) leaves in a tree of \(size)")
        }
        guard oldSize > 0, oldSize < newSize else { return [] }
        return try subproof(oldSize, 0, newSize, true)
    }

    private func path(_ m: Int, _ start: Int, _ end: Int) throws -> [MerkleTree.Hash] {
        let n = end - start
        guard n > 1 else { return [] }
        let k = MerkleTree.largestPowerOfTwo(below: n)
        if m < k { return try path(m, start, start + k) + [hash((start + k)..<end)] }
        return try path(m - k, start + k, end) + [hash(start..<(start + k))]
    }

    private func subproof(_ m: Int, _ start: Int, _ end: Int, _ complete: Bool) throws -> [MerkleTree.Hash] {
        let n = end - start
        if m == n { return complete ? [] : [try hash(start..<end)] }
        let k = MerkleTree.largestPowerOfTwo(below: n)
        if m <= k { return try subproof(m, start, start + k, complete) + [hash((start + k)..<end)] }
        return try subproof(m - k, start + k, end, false) + [hash(start..<(start + k))]
    }

    /// The root of the perfect subtree of `count` (a power of two) leaves from `start` (a
    /// multiple of it): hashes of one tile, folded.
    private func perfect(start: Int, count: Int) throws -> MerkleTree.Hash {
        let k = count.trailingZeroBitCount
        let level = k / TileCoordinate.height
        let width = 1 << (k % TileCoordinate.height)
        guard let span = TileCoordinate.span(level: level) else { throw TileError(.outOfRange, "a subtree of \(count) leaves") }
        let hashIndex = start / span
        guard let tile = TileCoordinate.holding(level: level, hashIndex: hashIndex, treeSize: size) else {
            throw TileError(.outOfRange, "leaves \(start)..<\(start + count) are not in a tree of \(size)")
        }
        let hashes = try tiles.read(tile)
        let offset = hashIndex % TileCoordinate.fullWidth
        guard offset + width <= hashes.count else {
            throw TileError(.malformed, "\(tile.path) holds \(hashes.count) hashes, fewer than the tree of \(size) gives it")
        }
        return MerkleTree.root(hashes[offset..<(offset + width)])
    }
}

/// The tiles one ``TiledTree`` has read, each read once.
private final class TileReads {
    let source: (TileCoordinate) throws -> [MerkleTree.Hash]
    var cache: [TileCoordinate: [MerkleTree.Hash]] = [:]

    init(_ source: @escaping (TileCoordinate) throws -> [MerkleTree.Hash]) {
        self.source = source
    }

    func read(_ tile: TileCoordinate) throws -> [MerkleTree.Hash] {
        if let hashes = cache[tile] { return hashes }
        let hashes = try source(tile)
        guard hashes.count == tile.width, hashes.allSatisfy({ $0.count == TileCoordinate.hashSize }) else {
            throw TileError(.malformed, "\(tile.path) holds \(hashes.count) hashes, not \(tile.width)")
        }
        cache[tile] = hashes
        return hashes
    }
}

/// A tile could not be used: a request outside the tree, or a tile of the wrong shape.
public struct TileError: LibraryError, Equatable {
    /// What went wrong.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// The leaves or sizes asked for are not in the tree.
        public static let outOfRange = Code("outOfRange")
        /// A tile does not hold what its coordinate says.
        public static let malformed = Code("malformed")
    }

    /// What went wrong.
    public let code: Code
    /// The facts.
    public let reason: String
    public let location: ErrorLocation

    init(_ code: Code, _ reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The facts.
    public var description: String { reason }

    /// Equal when the codes are equal.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
