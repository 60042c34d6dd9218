import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TransparencyLog

extension AuditService {
    /// The checkpoint anchored on the token, verified: what a proof is made against.
    private func anchoredForProofs() throws -> (checkpoint: Checkpoint, note: SignedNote) {
        guard let key = try auditKey(create: false) else {
            throw OperationError(.auditAnchorMissing, "the token has no audit key: there is no anchored checkpoint to prove against")
        }
        let anchored = try verifiedAnchor(key: key)
        return (anchored.checkpoint, anchored.note)
    }

    /// The c2sp.org/tlog-proof of record `index` in the tree of the token's anchored checkpoint,
    /// computed from the tiles and verified (the record's own bytes lead to the anchored root)
    /// before it is returned, with the record's line.
    public func inclusionProof(index: Int) throws -> (proof: TlogProof, record: [UInt8], tilesRead: Int) {
        let anchored = try anchoredForProofs()
        guard index >= 0, index < anchored.checkpoint.treeSize else {
            throw OperationError(.invalidInput, "record \(index) is not in the token's checkpoint, which seals \(anchored.checkpoint.treeSize) records (0–\(anchored.checkpoint.treeSize - 1))")
        }
        let proven = try log.inclusionProof(index: index, anchored: anchored.checkpoint)
        return (try TlogProof(index: index, path: proven.path, checkpoint: anchored.note), proven.record, proven.tilesRead)
    }

    /// The RFC 6962 consistency proof from the tree of `oldSize` records to that of `newSize`
    /// (default: the token's anchored checkpoint's), computed from the tiles and verified
    /// against the anchored root before it is returned, with the anchored checkpoint.
    public func consistencyProof(oldSize: Int, newSize: Int?) throws -> (proof: AuditConsistencyProof, anchored: SignedNote) {
        let anchored = try anchoredForProofs()
        let size = anchored.checkpoint.treeSize
        let newSize = newSize ?? size
        guard oldSize >= 0, oldSize <= newSize, newSize <= size else {
            throw OperationError(.invalidInput, "a consistency proof goes from an older tree to a newer one, at most the token's checkpoint's \(size) records: \(oldSize) to \(newSize) is not one")
        }
        return (try log.consistencyProof(oldSize: oldSize, newSize: newSize, anchored: anchored.checkpoint), anchored.note)
    }

    /// Builds the tiles afresh from the records, once the log is found to extend the token's
    /// anchored checkpoint (see ``AuditLog/rebuildTiles(anchor:)``). Changes nothing the tree
    /// commits to, so nothing is recorded or signed.
    public func rebuildTiles() throws -> TileRebuildReport {
        try log.requireTrustedFiles()
        return try log.rebuildTiles(anchor: anchoredForProofs().checkpoint)
    }
}
