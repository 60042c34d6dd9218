import ErrorShape
import AuditTrail
import Crypto
import DurableFiles
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import PKCS11
import TokenKeys
import TransparencyLog
import X509

/// The audit trail of one token, kept by the use cases: the token's JSONL log, a checkpoint
/// signed with the audit key (EC P-256 on the same token) after every append, written to
/// `<serial>.checkpoint` and anchored in a private data object on the token.
public final class AuditService {
    /// The audit key's default label.
    public static let auditKeyLabel = "fireblocks-hsm-audit"
    /// The label of the token data object holding the latest signed checkpoint.
    public static let checkpointObjectLabel = "fireblocks-hsm-audit-checkpoint"

    /// The log.
    public let log: AuditLog
    private let opened: OpenedToken
    private let observer: any OperationObserver
    /// The audit key once found or made (one search per command, not one per record).
    private var cachedKey: ECKeyPair?
    /// The free space an operation needs on the audit directory's filesystem before it starts
    /// (``requireFreeSpace()``); the process's threshold unless set otherwise.
    public var minimumFreeSpace: AuditDiskThreshold = .processWide

    /// The audit of the token `opened` names, kept in `directory`.
    public init(opened: OpenedToken, directory: URL, observer: any OperationObserver) {
        let info = opened.token.info
        log = AuditLog(directory: directory, token: .init(serial: info.serialNumber, label: info.label),
                       tool: .init(name: "fireblocks-hsm", version: FireblocksHSMVersion.current))
        self.opened = opened
        self.observer = observer
    }

    /// The checkpoints' origin and key name: `fireblocks-hsm/<serial>/audit`.
    public var origin: String { "fireblocks-hsm/\(log.token.serial)/audit" }

    /// Fails unless a record could be appended now (the trail's files are this user's and
    /// private, the directory can be made, no torn tail): checked before an operation, so that
    /// one whose record cannot be written is not performed.
    public func requireWritable() throws {
        try log.requireTrustedFiles()
        try AtomicFile.makePrivateDirectory(log.directory.path)
        guard access(log.directory.path, W_OK) == 0 else {
            throw OperationError(.unwritable, "the audit directory \(log.directory.path) is not writable", facts: ErrorFacts(path: log.directory.path))
        }
        // The last byte only: parsing the whole log before every command would cost more as
        // it grows (`audit verify` checks every record).
        if try log.hasTornTail() {
            throw OperationError(.auditTornTail, "the audit log \(log.logPath) ends in a torn record")
        }
    }

    /// Fails (``OperationError/Code/auditDiskLow``) while the audit directory's filesystem has
    /// less free than ``minimumFreeSpace``: checked before an operation starts, so that its
    /// records are never cut short half-way by a full disk (the free space, the threshold and
    /// the directory are in the error). A filesystem that cannot be measured is refused too.
    public func requireFreeSpace() throws {
        let space = try AuditDiskSpace.measure(log.directory.path)
        let minimum = space.minimumFreeBytes(minimumFreeSpace)
        guard space.availableBytes < minimum else { return }
        let threshold = minimumFreeSpace == .bytes(minimum) ? "" : " (\(minimumFreeSpace))"
        throw OperationError(.auditDiskLow, "the audit directory \(log.directory.path) is on a filesystem with \(AuditDiskSpace.format(space.availableBytes)) free (\(space.availableBytes) bytes), less than the \(AuditDiskSpace.format(minimum)) kept free for the audit trail\(threshold): nothing was done, so that no record is cut short by a full disk; free space on that filesystem (move or archive other files: this trail's own files must stay whole), or move the whole audit directory to a larger filesystem",
                             facts: ErrorFacts(path: log.directory.path, tokenLabel: log.token.label, tokenSerial: log.token.serial))
    }

    /// The audit key, made (and recorded) when there is none and `create` allows it. A key
    /// under the audit label that fails the audit key policy is refused
    /// (``AuditError/Code/untrustedKey``), and so is making one for a trail that was sealed
    /// before (a checkpoint on the token or beside the log, but no key to check it with).
    public func auditKey(create: Bool) throws -> ECKeyPair? {
        if let cachedKey { return cachedKey }
        if let key = try findPolicyKey() { return key }
        guard create else { return nil }
        // One creator at a time across processes (two first commands at once would otherwise
        // both make a key); whoever waited finds the other's.
        try log.requireTrustedFiles()
        try AtomicFile.makePrivateDirectory(log.directory.path)
        let lock = try FileLock.acquire(log.keyLockPath, timeout: 60, note: "pid \(getpid()): audit key creation")
        defer { lock.release() }
        if let key = try findPolicyKey() { return key }
        if let reason = try sealedBeforeWithoutKey() {
            throw OperationError(.auditAnchorMissing, "the token has no audit key, but \(reason): the key that sealed this trail is gone, so nothing is appended or signed until a person re-anchors the trail")
        }
        return try makeKey(recording: [:])
    }

    /// The key under the audit label, judged; a key that fails the policy is refused.
    private func findPolicyKey() throws -> ECKeyPair? {
        guard let key = try ECKeys.find(label: Self.auditKeyLabel, in: opened.session) else { return nil }
        if case .failsToMeetPolicy(let failures) = key.provenance.verdict {
            throw OperationError(.auditUntrustedKey, "the key labelled '\(Self.auditKeyLabel)' on token '\(opened.token.info.label)' fails the audit key policy (\(failures.map(\.description).joined(separator: "; "))): it was not made by this tool as the audit key, and nothing is signed with it")
        }
        cachedKey = key
        return key
    }

    /// Why the trail counts as sealed before (nil when it does not): a checkpoint anchored on
    /// the token, or a checkpoint file beside the log.
    private func sealedBeforeWithoutKey() throws -> String? {
        if try !anchorObjects().isEmpty { return "it holds an anchored audit checkpoint" }
        if try log.checkpointFile() != nil { return "\(log.checkpointPath) holds a checkpoint" }
        return nil
    }

    /// Makes the audit key, anchors the checkpoint of the log as it is (the empty tree on a
    /// new token), then records the key's creation in a sealed append.
    private func makeKey(recording extra: [String: AuditValue]) throws -> ECKeyPair {
        let key = try observer.slowStep("Generating the audit key (EC P-256) on token '\(opened.token.info.label)'") {
            try ECKeys.generate(label: Self.auditKeyLabel, in: opened.session)
        }
        cachedKey = key
        observer.note("created the audit key '\(Self.auditKeyLabel)' on token '\(opened.token.info.label)' (SHA-256 of its public key \(key.fingerprint)): give this fingerprint to your auditors")
        // The first anchor at once (over the records as they are: none on a new token, else
        // only unsealed ones, since nothing was ever sealed): an audit key without one is a
        // broken trail.
        let first = try Checkpoint(noteText: try log.sealAsItIs { tree in try anchor(size: tree.size, root: tree.root, key: key) }.text)
        let unsealed = first.treeSize
        var facts: [String: AuditValue] = [
            "label": .string(key.label), "id": .string(hex(key.id)), "spkiSHA256": .string(key.fingerprint),
            "verdict": .string(key.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy"),
        ]
        if unsealed > 0 { facts["unsealedRecordsBefore"] = .integer(unsealed) }
        facts.merge(extra) { $1 }
        _ = try log.append([AuditEntry(event: "audit.key-created", facts: facts)], anchor: { first }) { tree in
            try anchor(size: tree.size, root: tree.root, key: key)
        }
        return key
    }

    /// Appends the entries, then signs a checkpoint over the whole log and anchors it (token and
    /// file), once the log was found to extend the token's anchored checkpoint. Returns the
    /// signed checkpoint.
    @discardableResult
    public func record(_ entries: [AuditEntry]) throws -> SignedNote {
        guard let key = try auditKey(create: true) else {
            throw OperationError(.auditUnwritable, "no audit key")
        }
        return try log.append(entries, anchor: { try verifiedAnchor(key: key).checkpoint }) { tree in
            try anchor(size: tree.size, root: tree.root, key: key)
        }
    }

    /// Checks that the log extends the token's anchored checkpoint, without appending: before
    /// an operation whose record must be writable.
    public func requireIntact() throws {
        guard let key = try auditKey(create: true) else { throw OperationError(.auditUnwritable, "no audit key") }
        try log.requireExtends(try verifiedAnchor(key: key).checkpoint)
    }

    /// The proxy's appender, started on a log that extends the anchored checkpoint.
    public func appender() throws -> AuditAppender {
        guard let key = try auditKey(create: true) else { throw OperationError(.auditUnwritable, "no audit key on the token") }
        return try AuditAppender(log: log, anchor: try verifiedAnchor(key: key).checkpoint)
    }

    /// Signs a checkpoint over everything `appender`'s log holds now (records of other
    /// processes included) and anchors it on the token and in the file: for a long-running
    /// process that appends without a checkpoint each time (the signing proxy).
    @discardableResult
    public func seal(_ appender: AuditAppender) throws -> SignedNote {
        guard let key = try auditKey(create: false) else {
            throw OperationError(.auditUnwritable, "no audit key on the token to sign a checkpoint with")
        }
        return try appender.seal { tree in try anchor(size: tree.size, root: tree.root, key: key) }
    }

    /// Signs `size`/`root` with the audit key and anchors the checkpoint: on the token first
    /// (the new object, then the old ones away: a crash leaves at least one), then in the file.
    /// The file is a copy for convenience; a file ahead of the token's anchor is tampering.
    func anchor(size: Int, root: [UInt8], key: ECKeyPair) throws -> SignedNote {
        let checkpoint = try Checkpoint(origin: origin, treeSize: size, rootHash: root)
        let signer = try ECSigner(key: key, slot: opened.token.slot)
        let signature = try signer.sign(Array(checkpoint.noteText.utf8))
        let note = try SignedNote(text: checkpoint.noteText, signatures: [
            SignedNote.ecdsaSignature(name: origin, publicKey: key.publicKey, signature: signature)])
        let bytes = Array(note.formatted.utf8)
        let session = opened.session
        let old = try anchorObjects()
        _ = try session.createObject([.class(.data), .token(true), .private(true), .modifiable(true),
                                      .label(Self.checkpointObjectLabel), .value(bytes)])
        for object in old { try session.destroyObject(object) }
        try AtomicFile.write(bytes, to: log.checkpointPath, overwrite: true, mode: 0o600)
        return note
    }

    private func anchorObjects() throws -> [ObjectHandle] {
        try opened.session.findObjects([.class(.data), .label(Self.checkpointObjectLabel)])
    }

    /// The checkpoint anchored on the token, its signature verified with the audit key: the
    /// only state the trail trusts. Every append extends it; `audit verify` checks against it.
    /// No anchor while the key exists, an anchor that does not verify, or a checkpoint file
    /// ahead of it: refused.
    public func verifiedAnchor(key: ECKeyPair) throws -> (checkpoint: Checkpoint, note: SignedNote, legacyKeyID: Bool) {
        try verifiedAnchorAndFile(key: key).anchor
    }

    /// ``verifiedAnchor(key:)`` and the bytes of `<serial>.checkpoint` it compared with the
    /// anchor. The file is read first: an anchoring writes the token's object, then the file, so
    /// a file read before the token is never newer than the token's anchor, even while the proxy
    /// anchors beside this read (reading the token first could find a file that moved on since:
    /// a false "ahead of the anchor").
    func verifiedAnchorAndFile(key: ECKeyPair) throws -> (anchor: (checkpoint: Checkpoint, note: SignedNote, legacyKeyID: Bool), file: [UInt8]?) {
        // Another process (the proxy) anchors a new checkpoint beside this read: it makes the
        // new object, then destroys the old one, so a handle found a moment ago can be gone
        // when its value is read. The objects are then looked up again (a few times: each
        // anchoring leaves at least one object); anything else is not retried.
        var attempt = 0
        while true {
            do {
                let file = try log.checkpointFile()
                return (try readVerifiedAnchor(key: key, file: file), file)
            } catch let error as PKCS11Error where error.returnValue == .objectHandleInvalid && attempt < 8 {
                attempt += 1
                usleep(UInt32(1_000 << min(attempt, 6)))
            }
        }
    }

    private func readVerifiedAnchor(key: ECKeyPair, file fileBytes: [UInt8]?) throws -> (checkpoint: Checkpoint, note: SignedNote, legacyKeyID: Bool) {
        let objects = try anchorObjects()
        guard !objects.isEmpty else {
            throw OperationError(.auditAnchorMissing, "token '\(opened.token.info.label)' has the audit key (SHA-256 \(key.fingerprint)) but no anchored checkpoint (data object '\(Self.checkpointObjectLabel)'): the anchor was removed, so what the log held cannot be checked; nothing is appended or signed until a person re-anchors the trail")
        }
        var best: (checkpoint: Checkpoint, note: SignedNote, legacyKeyID: Bool)?
        var refused: String?
        for object in objects {
            guard let bytes = try opened.session.attributes([.value], of: object)[.value]?.attribute?.bytesValue,
                  let note = try? SignedNote(parsing: String(decoding: bytes, as: UTF8.self)),
                  let checkpoint = try? Checkpoint(noteText: note.text) else {
                refused = "it is not a signed checkpoint"
                continue
            }
            let verdict = note.verify(name: origin, publicKey: key.publicKey)
            guard case .failed = verdict else {
                guard checkpoint.origin == origin else { refused = "it is for '\(checkpoint.origin)', not '\(origin)'"; continue }
                if let current = best, current.checkpoint.treeSize == checkpoint.treeSize, current.checkpoint.rootHash != checkpoint.rootHash {
                    throw OperationError(.auditInconsistent, "token '\(opened.token.info.label)' holds two signed checkpoints of \(checkpoint.treeSize) records with different roots: the log was forked")
                }
                if best.map({ checkpoint.treeSize > $0.checkpoint.treeSize }) ?? true {
                    best = (checkpoint, note, verdict == .verifiedWithLegacyKeyID)
                }
                continue
            }
            if case .failed(let failure) = verdict { refused = failure.description }
        }
        guard let best else {
            throw OperationError(.auditInconsistent, "the checkpoint anchored on token '\(opened.token.info.label)' does not verify with the audit key (SHA-256 \(key.fingerprint)): \(refused ?? "no signature")")
        }
        // The file beside the log is written after the token's object: never ahead of it.
        if let bytes = fileBytes,
           let file = try? Checkpoint(noteText: SignedNote(parsing: String(decoding: bytes, as: UTF8.self)).text),
           file.treeSize > best.checkpoint.treeSize || (file.treeSize == best.checkpoint.treeSize && file.rootHash != best.checkpoint.rootHash) {
            throw OperationError(.auditInconsistent, "\(log.checkpointPath) is ahead of the checkpoint anchored on the token (\(file.treeSize) records against \(best.checkpoint.treeSize)): it was not written by this trail's appends; nothing is appended or signed")
        }
        return best
    }
    /// Writes the evidence bundle of an onboarding (see ``EvidenceBundle``) against the latest
    /// checkpoint on the token.
    /// Returns the folder written: `directory`, or beside it when it already holds a bundle
    /// (evidence is never rewritten).
    func writeEvidence(to directory: String, csrPEM: String, pair: TokenKeyPair, publicKey: TokenRSAPublicKey,
                       submission: APIUserCreationReport?, userID: String?, replaces: String? = nil,
                       replacesUserID: String? = nil) throws -> String {
        guard let key = try auditKey(create: false), let checkpoint = try tokenCheckpoint() else {
            throw OperationError(.auditInconsistent, "no audit key or checkpoint on the token to vouch for the evidence")
        }
        return try EvidenceBundle.write(to: directory, csrPEM: csrPEM, pair: pair, publicKey: publicKey, submission: submission,
                                 userID: userID, replaces: replaces, replacesUserID: replacesUserID, audit: self, checkpoint: checkpoint, auditKey: key,
                                 signerSlot: PKCS11SlotReference(signer: try ECSigner(key: key, slot: opened.token.slot)))
    }

    /// Writes the evidence of approval key `pair`'s registration, vouched for by the audit key
    /// and the checkpoint on the token; returns the folder written.
    func writeApprovalKeyEvidence(to directory: String, pair: ApprovalKeyPair, report: ApprovalKeyCreationReport,
                                  request: RegisterApprovalKey?, baseURL: String) throws -> String {
        guard let key = try auditKey(create: false), let checkpoint = try tokenCheckpoint() else {
            throw OperationError(.auditInconsistent, "no audit key or checkpoint on the token to vouch for the evidence")
        }
        return try EvidenceBundle.writeApprovalKey(to: directory, pair: pair, report: report, request: request, baseURL: baseURL,
                                                   audit: self, checkpoint: checkpoint, auditKey: key,
                                                   signerSlot: PKCS11SlotReference(signer: try ECSigner(key: key, slot: opened.token.slot)))
    }

    /// Where the key of a CSR lives (this token, or elsewhere), read with this trail's session.
    public func csrKeyFacts(csrPEM: String) throws -> CSRKeyFacts {
        try CSRKeyFacts.of(csrPEM: csrPEM, session: opened.session)
    }

    /// The signed checkpoint anchored on the token, verified (nil when the trail has not
    /// started: no audit key).
    public func tokenCheckpoint() throws -> SignedNote? {
        guard let key = try auditKey(create: false) else { return nil }
        return try verifiedAnchor(key: key).note
    }

    /// What `audit verify` found.
    public struct Verification: Sendable, Equatable {
        /// Records in the log.
        public let records: Int
        /// The root over them.
        public let rootHex: String
        /// The checkpoints the log was checked against (their sizes), by where they came from.
        public let checkedAgainst: [String]
        /// The audit key trusted (SHA-256 of its public key).
        public let auditKeySHA256: String?
        /// Checkpoints whose signature carries the key ID written before the tool followed
        /// C2SP (still valid signatures by the audit key).
        public let legacyKeyIDs: [String]
        /// `full` (every record hashed) or `incremental` (only those after the given checkpoint).
        public var mode = "full"
        /// The first record hashed, and how many were.
        public var hashedFrom = 0
        public var recordsHashed = 0
        /// Why an incremental verification was not possible (a full one was made instead).
        public var fallbackReason: String?
        /// The incremental verification's consistency proof from the given checkpoint to the
        /// token's (verified).
        public var consistencyProof: [[UInt8]] = []
        /// What the full verification found of the tiles.
        public var tiles: TileCheck?
        /// The archived segments: put back and read, or not read (their records' hashes kept).
        public var archived: [ArchivedRange] = []
    }

    /// The whole trail, trusting only the token: the audit key meets its policy; the anchored
    /// checkpoint exists and verifies; the log extends it, every record in its place, no torn
    /// line; `<serial>.checkpoint` verifies, is not ahead of the anchor and is a prefix too; and
    /// so is `external` (an auditor's), which must not be ahead of the anchor either.
    ///
    /// With `external` and not `full`, only the records after it are hashed (see
    /// ``AuditLog/verifyIncrementally(from:anchored:others:)``); when the tiles do not allow
    /// that, every record is, and ``Verification/fallbackReason`` says why.
    public func verify(external: SignedNote? = nil, full: Bool = false) throws -> Verification {
        try log.requireTrustedFiles()
        guard let key = try auditKey(create: false) else {
            if let reason = try sealedBeforeWithoutKey() {
                throw OperationError(.auditAnchorMissing, "the token has no audit key, but \(reason): the key that sealed this trail is gone")
            }
            if external != nil { throw OperationError(.auditInconsistent, "a checkpoint was given, but the token has no audit key to check it with") }
            guard try log.isEmpty() else {
                throw OperationError(.auditAnchorMissing, "\(log.logPath) holds records, but the token has no audit key: nothing ever sealed them")
            }
            return Verification(records: 0, rootHex: hex(MerkleTree.root([])), checkedAgainst: [], auditKeySHA256: nil, legacyKeyIDs: [])
        }
        let (anchored, fileBytes) = try verifiedAnchorAndFile(key: key)
        var checks: [(name: String, checkpoint: Checkpoint)] = [("the token's", anchored.checkpoint)]
        var checked = ["token (\(anchored.checkpoint.treeSize) records)"]
        var legacy = anchored.legacyKeyID ? ["token"] : []
        func signed(_ note: SignedNote, _ source: String) throws -> Checkpoint {
            let verdict = note.verify(name: origin, publicKey: key.publicKey)
            if case .failed(let failure) = verdict {
                throw OperationError(.auditInconsistent, "the \(source) checkpoint does not verify with the audit key (SHA-256 \(key.fingerprint)): \(failure)")
            }
            let checkpoint = try Checkpoint(noteText: note.text)
            guard checkpoint.origin == origin else {
                throw OperationError(.auditInconsistent, "the \(source) checkpoint is for '\(checkpoint.origin)', not '\(origin)'")
            }
            guard checkpoint.treeSize <= anchored.checkpoint.treeSize else {
                throw OperationError(.auditInconsistent, "the \(source) checkpoint seals \(checkpoint.treeSize) records, more than the \(anchored.checkpoint.treeSize) the token's anchor seals: the token's anchor or the log was rolled back")
            }
            if verdict == .verifiedWithLegacyKeyID { legacy.append(source) }
            return checkpoint
        }
        if let bytes = fileBytes {
            let file = try signed(try SignedNote(parsing: String(decoding: bytes, as: UTF8.self)), "file")
            checks.append(("the file's", file))
            checked.append("file (\(file.treeSize) records)")
        }
        var fallback: String?
        if let external {
            let given = try signed(external, "given")
            if !full {
                switch try log.verifyIncrementally(from: given, anchored: anchored.checkpoint, others: Array(checks.dropFirst())) {
                case .verified(let outcome):
                    var verification = Verification(records: outcome.size, rootHex: hex(outcome.root),
                                                    checkedAgainst: checked + ["given (\(given.treeSize) records)"],
                                                    auditKeySHA256: key.fingerprint, legacyKeyIDs: legacy)
                    verification.mode = "incremental"
                    verification.hashedFrom = outcome.hashedFrom
                    verification.recordsHashed = outcome.recordsHashed
                    verification.consistencyProof = outcome.consistencyProof
                    verification.archived = try archivedRanges()
                    return verification
                case .unavailable(let reason):
                    fallback = reason
                }
            }
            checks.append(("the given", given))
            checked.append("given (\(given.treeSize) records)")
        }
        let tree = try log.verifyWithTiles(against: checks)
        var verification = Verification(records: tree.size, rootHex: hex(tree.root), checkedAgainst: checked,
                                        auditKeySHA256: key.fingerprint, legacyKeyIDs: legacy)
        verification.archived = try archivedRanges()
        // Records of archived segments not put back were not read: their hashes were.
        verification.recordsHashed = tree.size - verification.archived.filter { !$0.putBack }.reduce(0) { $0 + $1.count }
        verification.fallbackReason = fallback
        verification.tiles = tree.tiles
        return verification
    }

    /// What a person's re-anchoring accepted, and what it cannot prove.
    public struct Reanchoring: Codable, Sendable, Equatable {
        /// The records accepted as they are, and the root of the new anchored checkpoint over them.
        public let records: Int
        /// The new anchored tree's root (before the `audit.reanchored` record).
        public let rootHex: String
        /// What the token held before: `none`, `extended` (the log extended it), `not-extended`
        /// (the log no longer holds what it sealed), `unverifiable`.
        public let previousAnchor: String
        /// The size the previous anchor sealed, when it verified.
        public let previousAnchorRecords: Int?
        /// Whether a new audit key was made (the old one was gone).
        public let keyCreated: Bool
        /// Bytes of a torn last line that were cut off.
        public let tornBytesRemoved: Int
        /// What nobody can prove about the records accepted.
        public let cannotProve: [String]
        /// The audit key's SHA-256.
        public let auditKeySHA256: String
    }

    /// A person's decision to trust the log as it is now: signs and anchors a checkpoint over
    /// its whole records (cutting a torn last line), making the audit key if it is gone, and
    /// records `audit.reanchored` with the reason and what cannot be proven. Records out of
    /// place are still refused: re-anchoring accepts records, it never renumbers them.
    public func reanchor(reason: String) throws -> Reanchoring {
        try log.requireTrustedFiles()
        try AtomicFile.makePrivateDirectory(log.directory.path)
        try requireFreeSpace()
        var key = try findPolicyKey()
        var previous = "none"
        var previousSize: Int?
        var cannotProve: [String] = []
        let before = try log.summary()
        if let damage = before.damage {
            throw OperationError(.auditInconsistent, "record \(damage.index): \(damage.reason); re-anchoring accepts records as they are but never renumbers them: move \(log.logPath) aside to start a new log")
        }
        if let key {
            do {
                let anchored = try verifiedAnchor(key: key).checkpoint
                previousSize = anchored.treeSize
                do {
                    // Every record is read (the tree cache vouches only for the last one): a
                    // re-anchoring must say whether what the token sealed is still there.
                    _ = try log.verify(against: [(name: "the token's", checkpoint: anchored)])
                    previous = "extended"
                } catch let error as AuditError where error.code == .tornTail {
                    previous = "extended"
                } catch {
                    previous = "not-extended"
                    cannotProve.append("the log no longer holds the \(anchored.treeSize) records the token's last checkpoint sealed (\(error)); every record is accepted as it is now")
                }
            } catch let error as OperationError where error.code == .auditAnchorMissing {
                previous = "none"
            } catch {
                previous = "unverifiable"
                cannotProve.append("the token's checkpoint could not be trusted (\(error))")
            }
        }
        let torn = try log.repairTornTail(anchor: nil)
        let records = before.records
        switch previous {
        case "none" where records > 0:
            cannotProve.append("that records 0–\(records - 1) are the ones written before the anchor was lost: they are accepted as they are now")
        case "extended" where (previousSize ?? 0) < records:
            cannotProve.append("that records \(previousSize ?? 0)–\(records - 1), written after the last checkpoint, were not changed before now")
        default:
            break
        }
        if torn > 0 { cannotProve.append("what the torn last line of \(torn) bytes was meant to record (it was cut off)") }
        for away in try log.segments().archivedAway {
            cannotProve.append("that records \(away.first)–\(away.end - 1), archived and not read, are the ones their stub's hashes stand for (put the segment back and verify)")
        }
        let keyCreated = key == nil
        if keyCreated {
            cannotProve.append("that checkpoints signed by an earlier audit key belong to this log: a new audit key signs from here on")
            key = try makeKey(recording: [:])
        }
        guard let key else { throw OperationError(.auditUnwritable, "no audit key") }
        let note = try log.sealAsItIs { tree in try anchor(size: tree.size, root: tree.root, key: key) }
        let accepted = try Checkpoint(noteText: note.text)
        var facts: [String: AuditValue] = [
            "reason": .string(reason), "acceptedRecords": .integer(accepted.treeSize), "previousAnchor": .string(previous),
            "keyCreated": .bool(keyCreated), "tornBytesRemoved": .integer(torn), "cannotProve": .array(cannotProve.map { .string($0) }),
        ]
        if let previousSize { facts["previousAnchorRecords"] = .integer(previousSize) }
        _ = try log.append([AuditEntry(event: "audit.reanchored", facts: facts)], anchor: { accepted }) { tree in
            try anchor(size: tree.size, root: tree.root, key: key)
        }
        return Reanchoring(records: accepted.treeSize, rootHex: hex(accepted.rootHash), previousAnchor: previous,
                           previousAnchorRecords: previousSize, keyCreated: keyCreated, tornBytesRemoved: torn,
                           cannotProve: cannotProve, auditKeySHA256: key.fingerprint)
    }

    /// Cuts a torn last line off when it lies beyond the anchored records (see
    /// ``AuditLog/repairTornTail(anchor:)``), and records that it did.
    public func repairTornTail() throws -> Int {
        guard let key = try auditKey(create: false) else { throw OperationError(.auditAnchorMissing, "the token has no audit key: there is no anchored checkpoint to repair against") }
        let anchored = try verifiedAnchor(key: key)
        try requireFreeSpace()
        let removed = try log.repairTornTail(anchor: anchored.checkpoint)
        if removed > 0 {
            try record([AuditEntry(event: "audit.repaired", facts: ["tornBytesRemoved": .integer(removed)])])
        }
        return removed
    }
}

extension AuditService {
    /// Opens the trail for an operation: writable now (or the operation is not performed) and
    /// with its audit key (made on first need, and said so).
    ///
    /// - Parameter checkingAnchor: also check now that the log extends the token's anchored
    ///   checkpoint (every append checks it again under the lock; an operation whose only
    ///   effect waits for its record, as `jwt`'s does, can leave it to the append).
    static func prepare(opened: OpenedToken, directory: URL, observer: any OperationObserver,
                        checkingAnchor: Bool = true) throws -> AuditService {
        let audit = AuditService(opened: opened, directory: directory, observer: observer)
        try audit.requireWritable()
        // Before the audit key is made (a record) and before the operation changes anything.
        try audit.requireFreeSpace()
        _ = try audit.auditKey(create: true)
        if checkingAnchor { try audit.requireIntact() }
        return audit
    }

    /// Records what an operation already did; if that fails, the error says what was done and
    /// must be reconciled (the operation cannot be undone by the log's failure).
    @discardableResult
    func recordDone(_ entries: [AuditEntry], done: String) throws -> SignedNote {
        do {
            return try record(entries)
        } catch {
            throw OperationError(.auditUnwritable, "\(done), but its audit record could not be written (\(error)): reconcile the audit log with the token before going on")
        }
    }

    /// Adds a lifecycle milestone (the record that `note` sealed last) to the evidence bundle
    /// of the onboarding that made the user, when this machine's onboarding records know it
    /// (or `bundle` names it). A milestone that cannot be written is said, not thrown: what it
    /// records already happened, and its record is in the log.
    /// - Parameter event: the milestone's name when it is not the record's event (a key deleted
    ///   is its successor's "predecessor retired").
    func addMilestone(_ entry: AuditEntry, sealedBy note: SignedNote, apiUserID: String, apiUserName: String,
                      stateDirectory: URL?, bundle: String? = nil, event: String? = nil) {
        do {
            let folder = try bundle ?? stateDirectory.flatMap {
                try OnboardingRecords(stateDirectory: $0).record(tokenSerial: log.token.serial, apiUserID: apiUserID)?.evidence
            }
            guard let folder, let key = try auditKey(create: false) else { return }
            let checkpoint = try Checkpoint(noteText: note.text)
            let index = checkpoint.treeSize - 1
            guard index >= 0, case .intact(let hashes) = try log.verify(), hashes.count > index,
                  MerkleTree.root(hashes[..<checkpoint.treeSize]) == checkpoint.rootHash else {
                throw OperationError(.auditInconsistent, "the audit log no longer extends the checkpoint just signed")
            }
            let line = try log.lines()[index]
            let written = try EvidenceBundle.writeMilestone(
                bundle: folder, event: event ?? entry.event, record: index, line: line, hashes: hashes[..<checkpoint.treeSize], checkpoint: note,
                apiUserID: apiUserID, apiUserName: apiUserName, facts: entry.facts, auditKey: key,
                signer: PKCS11SlotReference(signer: try ECSigner(key: key, slot: opened.token.slot)))
            observer.note("evidence: \(event ?? entry.event) added to \(written)")
        } catch {
            observer.note("warning: the \(event ?? entry.event) milestone could not be added to the evidence bundle (\(error)); its audit record was written")
        }
    }

    /// The facts of a key pair, as records carry them.
    static func facts(_ pair: TokenKeyPair) -> [String: AuditValue] {
        var attributes: [String: AuditValue] = [:]
        for (type, reading) in pair.provenance.privateKeyAttributes {
            if case .value(.bool(_, let value)) = reading { attributes[type.name] = .bool(value) }
        }
        return [
            "label": .string(pair.label), "id": .string(hex(pair.id)),
            "spkiSHA256": .string(pair.publicKey?.fingerprint ?? ""),
            "bits": .integer(pair.publicKey?.bits ?? 0),
            "attributes": .object(attributes),
            "verdict": .string(pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy"),
        ]
    }
}

extension OpenedToken {
    /// Runs an operation on this token and, if it fails, records `command.failed` with the
    /// reason in the token's audit log (appended, and sealed by the next signed checkpoint:
    /// the failure may be that the audit key or token cannot be used). Errors are never secrets
    /// (no PIN, JWT or pairing token is ever put in one).
    func recordingFailure<R>(of command: String, auditDirectory: URL?, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch {
            appendFailure(command: command, error: error, auditDirectory: auditDirectory)
            throw error
        }
    }

    /// The same, for an asynchronous operation.
    func recordingFailure<R>(of command: String, auditDirectory: URL?, _ body: () async throws -> R) async throws -> R {
        do {
            return try await body()
        } catch {
            appendFailure(command: command, error: error, auditDirectory: auditDirectory)
            throw error
        }
    }

    func appendFailure(command: String, error: any Error, auditDirectory: URL?) {
        // A failure of the audit trail itself cannot be recorded in it, and an operation
        // refused for want of disk space leaves no record (it would use the space it lacks).
        guard let auditDirectory, !(error is AuditError), (error as? OperationError)?.code != .auditDiskLow else { return }
        let log = AuditLog(directory: auditDirectory, token: .init(serial: token.info.serialNumber, label: token.info.label),
                           tool: .init(name: "fireblocks-hsm", version: FireblocksHSMVersion.current))
        _ = try? log.appendUnsealed([AuditEntry(event: "command.failed", outcome: .failed("\(error)"),
                                                facts: ["command": .string(command)])])
    }
}

/// What `api-user.created` says about the CSR an API user was registered with: its digest, its
/// key's, and whether that key lives on this token (and which one it is) or elsewhere (a file).
public struct CSRKeyFacts: Sendable, Equatable {
    /// SHA-256 of the CSR's DER.
    public let csrSHA256: String
    /// SHA-256 of the CSR key's DER SubjectPublicKeyInfo.
    public let spkiSHA256: String
    /// The token key with that public key, when there is one.
    public let onToken: (label: String, id: String)?

    /// Reads `csrPEM` and looks for its key among the token's private keys (`session` logged in).
    public static func of(csrPEM: String, session: Session) throws -> CSRKeyFacts {
        guard let csr = try? CertificateSigningRequest(pemEncoded: csrPEM),
              let der = try? csr.serializeAsPEM().derBytes,
              let spki = try? csr.publicKey.serializeAsPEM().derBytes else {
            throw OperationError(.invalidInput, "the CSR is not a PEM certificate request")
        }
        let spkiSHA256 = hex(SHA256.hash(data: spki))
        let match = try KeyStore.list(in: session).first { $0.publicKey?.fingerprint == spkiSHA256 }
        return CSRKeyFacts(csrSHA256: hex(SHA256.hash(data: der)), spkiSHA256: spkiSHA256, onToken: match.map { ($0.label, hex($0.id)) })
    }

    init(csrSHA256: String, spkiSHA256: String, onToken: (label: String, id: String)?) {
        self.csrSHA256 = csrSHA256
        self.spkiSHA256 = spkiSHA256
        self.onToken = onToken
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.csrSHA256 == rhs.csrSHA256 && lhs.spkiSHA256 == rhs.spkiSHA256 && lhs.onToken?.label == rhs.onToken?.label
            && lhs.onToken?.id == rhs.onToken?.id
    }

    /// The `api-user.created` record: who was made (name, role, id when known) with which key.
    public func entry(name: String, role: String, userID: String?, extra: [String: AuditValue] = [:]) -> AuditEntry {
        var facts: [String: AuditValue] = [
            "name": .string(name), "role": .string(role), "apiUserID": .string(userID ?? ""),
            "csrSHA256": .string(csrSHA256), "spkiSHA256": .string(spkiSHA256),
            "keyOnToken": onToken.map { .object(["label": .string($0.label), "id": .string($0.id)]) } ?? .string("not on this token"),
        ]
        facts.merge(extra) { $1 }
        return AuditEntry(event: "api-user.created", facts: facts)
    }
}
