/// Builds a tree's C2SP tiles as leaves are appended, keeping only its right edge: the hashes
/// of the unfinished tile at each level (at most 255 each, so O(log n) memory). Each append
/// returns the tiles it completed; ``partialTiles`` is the right edge as it stands.
public struct TileBuilder: Sendable, Equatable {
    /// Leaves appended.
    public private(set) var size: Int
    /// The hashes of the unfinished tile at each level, lowest level first (fewer than 256 each).
    public private(set) var edge: [[MerkleTree.Hash]]

    /// The empty tree.
    public init() {
        size = 0
        edge = []
    }

    /// The builder of a tree of `size` leaves from its right edge as stored (each partial
    /// tile's hashes, lowest level first; an empty list for a level without one); nil unless
    /// every level holds exactly the hashes that size gives it, each 32 bytes.
    public init?(size: Int, edge: [[MerkleTree.Hash]]) {
        guard size >= 0 else { return nil }
        var level = 0
        while TileCoordinate.hashCount(level: level, treeSize: size) > 0 {
            let expected = TileCoordinate.hashCount(level: level, treeSize: size) % TileCoordinate.fullWidth
            guard (level < edge.count ? edge[level].count : 0) == expected else { return nil }
            level += 1
        }
        guard edge.dropFirst(level).allSatisfy(\.isEmpty), edge.allSatisfy({ $0.allSatisfy { $0.count == TileCoordinate.hashSize } }) else { return nil }
        self.size = size
        self.edge = Array(edge.prefix(level))
    }

    /// Adds a leaf (its leaf hash) on the right; returns the tiles it completed, lowest level
    /// first, with their hashes (a full level-0 tile's root goes into level 1, and so on).
    public mutating func append(leafHash: MerkleTree.Hash) -> [(tile: TileCoordinate, hashes: [MerkleTree.Hash])] {
        size += 1
        var completed: [(tile: TileCoordinate, hashes: [MerkleTree.Hash])] = []
        var carried = leafHash
        var level = 0
        while true {
            if edge.count == level { edge.append([]) }
            edge[level].append(carried)
            guard edge[level].count == TileCoordinate.fullWidth else { break }
            let hashes = edge[level]
            edge[level].removeAll(keepingCapacity: true)
            let index = TileCoordinate.fullTileCount(level: level, treeSize: size) - 1
            if let tile = TileCoordinate(level: level, index: index) { completed.append((tile, hashes)) }
            carried = MerkleTree.root(hashes[...])
            level += 1
        }
        return completed
    }

    /// The partial tiles of the tree as it stands (its right edge), lowest level first.
    public var partialTiles: [(tile: TileCoordinate, hashes: [MerkleTree.Hash])] {
        TileCoordinate.rightEdge(treeSize: size).map { ($0, edge[$0.level]) }
    }

    /// The tree's right frontier, computed from the edge alone: each level's unfinished hashes
    /// split into perfect subtrees by the bits of their count, highest level (leftmost) first.
    public var compactRange: MerkleTree.CompactRange {
        var hashes: [MerkleTree.Hash] = []
        for row in edge.reversed() {
            var start = 0
            for bit in (0..<TileCoordinate.height).reversed() where row.count & (1 << bit) != 0 {
                hashes.append(MerkleTree.root(row[start..<(start + (1 << bit))]))
                start += 1 << bit
            }
        }
        // One hash per set bit of the size, by construction.
        return MerkleTree.CompactRange(size: size, hashes: hashes) ?? MerkleTree.CompactRange()
    }
}
