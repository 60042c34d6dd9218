import Crypto
import Foundation
import HexEncoding
import Testing
import TransparencyLog

/// C2SP tlog-tiles: paths, the tiles a tree has, and proofs computed from tiles, against the
/// specification's own examples and published RFC 6962 vectors.
@Suite("C2SP tlog-tiles")
struct TileTests {
    // MARK: Paths (c2sp.org/tlog-tiles, "Merkle Tree")

    @Test func theSpecificationsPathExamples() throws {
        // "index 1234067 will be encoded as x001/x234/067".
        #expect(TileCoordinate.encode(index: 1_234_067) == "x001/x234/067")
        #expect(TileCoordinate(level: 0, index: 1_234_067)?.path == "tile/0/x001/x234/067")
        #expect(TileCoordinate(level: 1, index: 1, width: 17)?.path == "tile/1/001.p/17")
        #expect(TileCoordinate(level: 0, index: 1000)?.path == "tile/0/x001/000")
        #expect(TileCoordinate(level: 2, index: 0, width: 1)?.path == "tile/2/000.p/1")
        for path in ["tile/0/000", "tile/0/001.p/17", "tile/3/x123/x456/078", "tile/3/x123/x456/078.p/2", "tile/63/x001/x000/000"] {
            #expect(TileCoordinate(path: path)?.path == path, "\(path)")
        }
        let parsed = try #require(TileCoordinate(path: "tile/0/x001/x234/067.p/255"))
        #expect(parsed.level == 0 && parsed.index == 1_234_067 && parsed.width == 255 && !parsed.isFull)
    }

    @Test(arguments: [
        "tile/00/000",            // a leading zero in <L>
        "tile/64/000",            // <L> above 63
        "tile/0/67",              // not 3 digits
        "tile/0/x000/067",        // an empty leading group is not the canonical spelling
        "tile/0/001/067",         // a group before the last without its x
        "tile/0/x067",            // the last group with an x
        "tile/0/000.p/0",         // width 0
        "tile/0/000.p/256",       // a partial as wide as a full tile
        "tile/0/000.p/017",       // a leading zero in <W>
        "tile/0/000.p/",          // no width
        "tile/entries/000",       // an entry bundle, not a hash tile
        "tile/4/0/001",           // golang.org/x/mod/sumdb/tlog's paths carry a height: not C2SP's
        "tile/0/-01",
        "tiles/0/000",
    ])
    func nonCanonicalPathsAreNotTiles(path: String) {
        #expect(TileCoordinate(path: path) == nil)
    }

    @Test func theTilesOfTheSpecificationsExampleTrees() throws {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level
        // 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and
        // one partial level 2 tile of width 1."
        #expect(TileCoordinate.fullTileCount(level: 0, treeSize: 70_000) == 273)
        #expect(TileCoordinate.fullTileCount(level: 1, treeSize: 70_000) == 1)
        #expect(TileCoordinate.fullTileCount(level: 2, treeSize: 70_000) == 0)
        #expect(TileCoordinate.rightEdge(treeSize: 70_000).map(\.path) == ["tile/0/273.p/112", "tile/1/001.p/17", "tile/2/000.p/1"])
        // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
        // tile of width 1."
        #expect(TileCoordinate.fullTileCount(level: 0, treeSize: 256) == 1)
        #expect(TileCoordinate.rightEdge(treeSize: 256).map(\.path) == ["tile/1/000.p/1"])
        #expect(TileCoordinate.rightEdge(treeSize: 0).isEmpty)
        #expect(TileCoordinate.holding(level: 0, hashIndex: 69_999, treeSize: 70_000)?.path == "tile/0/273.p/112")
        #expect(TileCoordinate.holding(level: 1, hashIndex: 5, treeSize: 70_000)?.path == "tile/1/000")
        #expect(TileCoordinate.holding(level: 0, hashIndex: 70_000, treeSize: 70_000) == nil)
    }

    // MARK: Building

    private static func leaves(_ count: Int) -> [MerkleTree.Hash] {
        (0..<count).map { MerkleTree.leafHash(Array("record \($0)".utf8)) }
    }

    /// Every tile a builder completes, kept in memory as a log's tile directory would be.
    private static func build(_ hashes: [MerkleTree.Hash]) -> (tiles: [TileCoordinate: [MerkleTree.Hash]], builder: TileBuilder) {
        var builder = TileBuilder()
        var tiles: [TileCoordinate: [MerkleTree.Hash]] = [:]
        for hash in hashes {
            for (tile, completed) in builder.append(leafHash: hash) { tiles[tile] = completed }
        }
        for (tile, partial) in builder.partialTiles { tiles[tile] = partial }
        return (tiles, builder)
    }

    /// A reader as a log's store is one: the full tile, else the prefix of a wider partial.
    private static func reader(_ tiles: [TileCoordinate: [MerkleTree.Hash]]) -> (TileCoordinate) throws -> [MerkleTree.Hash] {
        { tile in
            if let full = tiles[tile.full] { return Array(full.prefix(tile.width)) }
            guard let wider = tiles.first(where: { $0.key.level == tile.level && $0.key.index == tile.index && $0.key.width >= tile.width }) else {
                throw CancellationError()
            }
            return Array(wider.value.prefix(tile.width))
        }
    }

    @Test func builtTilesHoldTheSubtreeRootsAndTheirEdgeGivesTheFrontier() throws {
        let hashes = Self.leaves(70_000)
        let (tiles, builder) = Self.build(hashes)
        #expect(builder.size == 70_000)
        #expect(builder.compactRange == MerkleTree.CompactRange(leafHashes: hashes))
        #expect(tiles.keys.filter(\.isFull).count == 273 + 1)
        let level1Tile = try #require(TileCoordinate(level: 1, index: 0))
        let level1 = try #require(tiles[level1Tile])
        #expect(level1[7] == MerkleTree.root(hashes[(7 * 256)..<(8 * 256)]))
        let level2Tile = try #require(TileCoordinate(level: 2, index: 0, width: 1))
        let level2 = try #require(tiles[level2Tile])
        #expect(level2 == [MerkleTree.root(hashes[..<65_536])])
        // The stored edge gives the builder back; an edge of the wrong shape is refused.
        #expect(TileBuilder(size: 70_000, edge: builder.edge) == builder)
        #expect(TileBuilder(size: 70_001, edge: builder.edge) == nil)
        #expect(TileBuilder(size: 256, edge: [[], [hashes[0]]]) != nil)
        #expect(TileBuilder(size: 256, edge: [[hashes[0]]]) == nil)
    }

    // MARK: Proofs from tiles

    /// The published vectors' leaves (certificate-transparency-go merkle/testonly, as
    /// transparency-dev/merkle's proof/verify_test.go uses them).
    static let vectorLeaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"].map { HexEncoding.bytes(fromHex: $0) ?? [] }
    /// Their roots for sizes 1…8.
    static let vectorRoots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d", "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77", "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4", "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c", "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]

    @Test func proofsFromTilesAreThePublishedOnes() throws {
        let (tiles, _) = Self.build(Self.vectorLeaves.map { MerkleTree.leafHash($0) })
        let tree = TiledTree(size: 8, readTile: Self.reader(tiles))
        for size in 1...8 { #expect(hex(try tree.root(size: size)) == Self.vectorRoots[size - 1], "size \(size)") }
        // Inclusion (leaf index, tree size, path), 0-based.
        let inclusion: [(Int, Int, [String])] = [
            (0, 1, []),
            (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
            (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
            (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
        ]
        for (index, size, path) in inclusion {
            #expect(try tree.inclusionProof(index: index, treeSize: size).map { hex($0) } == path, "\(index) in \(size)")
        }
        // Consistency (old, new, proof).
        let consistency: [(Int, Int, [String])] = [
            (1, 1, []),
            (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
            (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
            (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
            (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        ]
        for (old, new, proof) in consistency {
            let computed = try tree.consistencyProof(oldSize: old, newSize: new)
            #expect(computed.map { hex($0) } == proof, "\(old) → \(new)")
            #expect(MerkleTree.verifyConsistency(oldSize: old, newSize: new, oldRoot: try tree.root(size: old),
                                                 newRoot: try tree.root(size: new), proof: computed))
        }
    }

    @Test func proofsFromTilesEqualTheOnesFromTheLeavesAcrossTileBoundaries() throws {
        for size in [255, 256, 257, 511, 513, 1000] {
            let hashes = Self.leaves(size)
            let tree = TiledTree(size: size, readTile: Self.reader(Self.build(hashes).tiles))
            #expect(try tree.root(size: size) == MerkleTree.root(hashes[...]))
            for index in Set([0, 1, 255, 256, size / 2, size - 1]) where index < size {
                #expect(try tree.inclusionProof(index: index) == MerkleTree.inclusionProof(index: index, hashes[...]), "\(index) in \(size)")
            }
            for old in Set([1, 2, 255, 256, 257, size / 3, size - 1]) where old <= size {
                #expect(try tree.consistencyProof(oldSize: old) == MerkleTree.consistencyProof(oldSize: old, hashes[...]), "\(old) → \(size)")
            }
        }
    }

    @Test func aThreeLevelTreeIsProvenFromAFewTiles() throws {
        let size = 65_537 + 300
        let hashes = Self.leaves(size)
        let (tiles, builder) = Self.build(hashes)
        let root = builder.compactRange.root
        for index in [0, 65_535, 65_536, size - 1] {
            let tree = TiledTree(size: size, readTile: Self.reader(tiles))
            let path = try tree.inclusionProof(index: index)
            #expect(MerkleTree.verifyInclusion(leafHash: hashes[index], index: index, treeSize: size, proof: path, rootHash: root))
            // Two tiles per level at most, not the tree's 260 tiles.
            #expect((1...6).contains(tree.tilesRead), "\(tree.tilesRead) tiles for leaf \(index)")
        }
        for old in [1, 256, 65_536, 65_537, size - 1] {
            let tree = TiledTree(size: size, readTile: Self.reader(tiles))
            let proof = try tree.consistencyProof(oldSize: old)
            #expect(MerkleTree.verifyConsistency(oldSize: old, newSize: size, oldRoot: MerkleTree.CompactRange(leafHashes: hashes[..<old]).root,
                                                 newRoot: root, proof: proof), "\(old)")
            #expect((1...8).contains(tree.tilesRead), "\(tree.tilesRead) tiles for \(old) → \(size)")
        }
    }

    @Test func aChangedTileGivesAProofThatDoesNotVerify() throws {
        let hashes = Self.leaves(600)
        let built = Self.build(hashes)
        var tiles = built.tiles
        let first = try #require(TileCoordinate(level: 0, index: 0))
        tiles[first]?[3][0] ^= 1
        let tree = TiledTree(size: 600, readTile: Self.reader(tiles))
        let path = try tree.inclusionProof(index: 2)
        #expect(!MerkleTree.verifyInclusion(leafHash: hashes[2], index: 2, treeSize: 600, proof: path, rootHash: built.builder.compactRange.root))
        // A tile of the wrong width is refused, not used.
        let short = TiledTree(size: 600) { _ in [hashes[0]] }
        #expect(throws: TileError.self) { try short.root(size: 600) }
    }
}
