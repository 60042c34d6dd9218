import Crypto

/// RFC 6962 §2.1 Merkle tree hashing (SHA-256), with inclusion and consistency proofs, and
/// their verification as RFC 9162 §2.1.3.2 and §2.1.4.2 give it.
///
/// Leaves are hashed `SHA-256(0x00 ‖ leaf)` and nodes `SHA-256(0x01 ‖ left ‖ right)`, so a leaf
/// can never pass for a node. The tree over `n` leaves splits at the largest power of two below
/// `n`. Proofs are lists of 32-byte hashes, deepest first.
public enum MerkleTree {
    /// A 32-byte SHA-256 hash.
    public typealias Hash = [UInt8]

    /// `SHA-256(0x00 ‖ leaf)`.
    public static func leafHash(_ leaf: some Collection<UInt8>) -> Hash {
        if let hash = leaf.withContiguousStorageIfAvailable({ leafHash(UnsafeRawBufferPointer($0)) }) { return hash }
        return Array(leaf).withUnsafeBytes { leafHash($0) }
    }

    /// `SHA-256(0x00 ‖ leaf)` of bytes in memory, without copying them (a log's verification
    /// hashes every record).
    public static func leafHash(_ leaf: UnsafeRawBufferPointer) -> Hash {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0x00)) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: leaf)
        return Array(hasher.finalize())
    }

    /// `SHA-256(0x01 ‖ left ‖ right)`.
    public static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0x01)) { hasher.update(bufferPointer: $0) }
        left.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        right.withUnsafeBytes { hasher.update(bufferPointer: $0) }
        return Array(hasher.finalize())
    }

    /// MTH(D[n]) over the given leaf hashes; the hash of the empty string for none.
    public static func root(_ leafHashes: ArraySlice<Hash>) -> Hash {
        switch leafHashes.count {
        case 0: return Array(SHA256.hash(data: [UInt8]()))
        case 1: return leafHashes[leafHashes.startIndex]
        default:
            let k = largestPowerOfTwo(below: leafHashes.count)
            let split = leafHashes.startIndex + k
            return nodeHash(root(leafHashes[..<split]), root(leafHashes[split...]))
        }
    }

    /// PATH(m, D[n]): the audit path of leaf `index` (RFC 6962 §2.1.1); empty for a tree of one.
    public static func inclusionProof(index: Int, _ leafHashes: ArraySlice<Hash>) -> [Hash]? {
        guard index >= 0, index < leafHashes.count else { return nil }
        return path(index, leafHashes)
    }

    private static func path(_ m: Int, _ d: ArraySlice<Hash>) -> [Hash] {
        guard d.count > 1 else { return [] }
        let k = largestPowerOfTwo(below: d.count)
        let split = d.startIndex + k
        if m < k { return path(m, d[..<split]) + [root(d[split...])] }
        return path(m - k, d[split...]) + [root(d[..<split])]
    }

    /// PROOF(m, D[n]): that the tree of the first `oldSize` leaves is a prefix of this one
    /// (RFC 6962 §2.1.2); empty when `oldSize` is 0 or the whole tree.
    public static func consistencyProof(oldSize: Int, _ leafHashes: ArraySlice<Hash>) -> [Hash]? {
        guard oldSize >= 0, oldSize <= leafHashes.count else { return nil }
        guard oldSize > 0, oldSize < leafHashes.count else { return [] }
        return subproof(oldSize, leafHashes, true)
    }

    private static func subproof(_ m: Int, _ d: ArraySlice<Hash>, _ complete: Bool) -> [Hash] {
        if m == d.count { return complete ? [] : [root(d)] }
        let k = largestPowerOfTwo(below: d.count)
        let split = d.startIndex + k
        if m <= k { return subproof(m, d[..<split], complete) + [root(d[split...])] }
        return subproof(m - k, d[split...], false) + [root(d[..<split])]
    }

    /// RFC 9162 §2.1.3.2: true when `proof` shows `leafHash` at `index` in the tree of
    /// `treeSize` leaves with root `rootHash`.
    public static func verifyInclusion(leafHash: Hash, index: Int, treeSize: Int, proof: [Hash], rootHash: Hash) -> Bool {
        guard index >= 0, index < treeSize, proof.allSatisfy({ $0.count == 32 }) else { return false }
        var fn = index
        var sn = treeSize - 1
        var r = leafHash
        for p in proof {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    repeat {
                        fn >>= 1
                        sn >>= 1
                    } while fn & 1 == 0 && fn != 0
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == rootHash
    }

    /// RFC 9162 §2.1.4.2: true when `proof` shows the tree of `oldSize` leaves with root
    /// `oldRoot` to be a prefix of the tree of `newSize` leaves with root `newRoot`.
    public static func verifyConsistency(oldSize: Int, newSize: Int, oldRoot: Hash, newRoot: Hash, proof: [Hash]) -> Bool {
        guard oldSize >= 0, oldSize <= newSize, proof.allSatisfy({ $0.count == 32 }) else { return false }
        if oldSize == newSize { return proof.isEmpty && oldRoot == newRoot }
        if oldSize == 0 { return proof.isEmpty }
        guard !proof.isEmpty else { return false }
        var path = proof
        if oldSize & (oldSize - 1) == 0 { path.insert(oldRoot, at: 0) }
        var fn = oldSize - 1
        var sn = newSize - 1
        while fn & 1 == 1 {
            fn >>= 1
            sn >>= 1
        }
        var fr = path[0]
        var sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    repeat {
                        fn >>= 1
                        sn >>= 1
                    } while fn & 1 == 0 && fn != 0
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && fr == oldRoot && sr == newRoot
    }

    /// The largest power of two strictly below `n` (n > 1).
    static func largestPowerOfTwo(below n: Int) -> Int {
        var k = 1
        while k << 1 < n { k <<= 1 }
        return k
    }
}

extension MerkleTree {
    /// The right frontier of a tree: the roots of its perfect subtrees, one per set bit of its
    /// size, largest (leftmost) first. Enough to append leaves and to compute MTH of the whole
    /// tree without the leaves themselves (what an append-only log needs to stay O(1) per record).
    public struct CompactRange: Sendable, Equatable {
        /// Leaves in the tree.
        public private(set) var size: Int
        /// The perfect subtrees' roots, leftmost first.
        public private(set) var hashes: [Hash]

        /// The empty tree.
        public init() {
            size = 0
            hashes = []
        }

        /// A frontier as stored; nil unless there is one hash per set bit of `size`, each 32 bytes.
        public init?(size: Int, hashes: [Hash]) {
            guard size >= 0, hashes.count == size.nonzeroBitCount, hashes.allSatisfy({ $0.count == 32 }) else { return nil }
            self.size = size
            self.hashes = hashes
        }

        /// The frontier of the tree over these leaf hashes.
        public init(leafHashes: some Sequence<Hash>) {
            self.init()
            for hash in leafHashes { append(leafHash: hash) }
        }

        /// Adds a leaf (its leaf hash) on the right.
        public mutating func append(leafHash: Hash) {
            var hash = leafHash
            var carried = size
            // Each trailing one bit of the size is a perfect subtree of the new one's size: merge.
            while carried & 1 == 1, let left = hashes.popLast() {
                hash = MerkleTree.nodeHash(left, hash)
                carried >>= 1
            }
            hashes.append(hash)
            size += 1
        }

        /// MTH over every leaf appended: the subtrees folded from the right, as RFC 6962's split
        /// at the largest power of two gives.
        public var root: Hash {
            guard var hash = hashes.last else { return Array(SHA256.hash(data: [UInt8]())) }
            for left in hashes.dropLast().reversed() { hash = MerkleTree.nodeHash(left, hash) }
            return hash
        }
    }
}
