import Crypto
import Testing
import TransparencyLog

@Suite("Merkle tree: compact range")
struct CompactRangeTests {
    @Test func itsRootIsTheTreeRootAtEverySize() {
        var range = MerkleTree.CompactRange()
        var leaves: [MerkleTree.Hash] = []
        #expect(range.root == MerkleTree.root([][...]))
        for index in 0..<130 {
            let leaf = MerkleTree.leafHash(Array("record \(index)".utf8))
            leaves.append(leaf)
            range.append(leafHash: leaf)
            #expect(range.size == leaves.count)
            #expect(range.hashes.count == leaves.count.nonzeroBitCount)
            #expect(range.root == MerkleTree.root(leaves[...]), "size \(leaves.count)")
        }
        #expect(MerkleTree.CompactRange(leafHashes: leaves) == range)
    }

    @Test func aStoredFrontierIsCheckedForShape() {
        let hash = [UInt8](repeating: 7, count: 32)
        #expect(MerkleTree.CompactRange(size: 3, hashes: [hash, hash]) != nil)
        #expect(MerkleTree.CompactRange(size: 3, hashes: [hash]) == nil)
        #expect(MerkleTree.CompactRange(size: 4, hashes: [hash, hash]) == nil)
        #expect(MerkleTree.CompactRange(size: 1, hashes: [[1, 2]]) == nil)
        #expect(MerkleTree.CompactRange(size: -1, hashes: []) == nil)
    }
}
