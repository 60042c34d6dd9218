import AuditTrail
import Crypto
import DurableFiles
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

    /// Fails unless a record could be appended now (the directory can be made, the lock taken,
    /// no torn tail): checked before an operation, so that one whose record cannot be written is
    /// not performed.
    public func requireWritable() throws {
        try AtomicFile.makePrivateDirectory(log.directory.path)
        guard access(log.directory.path, W_OK) == 0 else {
            throw FileOutputError(path: log.directory.path, reason: "the audit directory is not writable")
        }
        // The last byte only: parsing the whole log before every command would cost more as
        // it grows (`audit verify` checks every record).
        if try log.hasTornTail() {
            throw AuditError(.tornTail, "the audit log \(log.logPath) ends in a torn record")
        }
    }

    /// The audit key, made (and recorded) when there is none and `create` allows it.
    /// - Parameter session: a read-write session with the user logged in, for creating.
    public func auditKey(create: Bool) throws -> ECKeyPair? {
        if let cachedKey { return cachedKey }
        if let key = try ECKeys.find(label: Self.auditKeyLabel, in: opened.session) {
            cachedKey = key
            return key
        }
        guard create else { return nil }
        // One creator at a time across processes (two first commands at once would otherwise
        // both make a key); whoever waited finds the other's.
        try AtomicFile.makePrivateDirectory(log.directory.path)
        let lock = try FileLock.acquire(log.logPath + ".key.lock", timeout: 60, note: "pid \(getpid()): audit key creation")
        defer { lock.release() }
        if let key = try ECKeys.find(label: Self.auditKeyLabel, in: opened.session) { return key }
        let key = try observer.slowStep("Generating the audit key (EC P-256) on token '\(opened.token.info.label)'") {
            try ECKeys.generate(label: Self.auditKeyLabel, in: opened.session)
        }
        cachedKey = key
        observer.note("created the audit key '\(Self.auditKeyLabel)' on token '\(opened.token.info.label)' (SHA-256 of its public key \(key.fingerprint)): give this fingerprint to your auditors")
        _ = try append([AuditEntry(event: "audit.key-created", facts: [
            "label": .string(key.label), "id": .string(hex(key.id)), "spkiSHA256": .string(key.fingerprint),
            "verdict": .string(key.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy"),
        ])], key: key)
        return key
    }

    /// Appends the entries, then signs a checkpoint over the whole log and anchors it (file and
    /// token). Returns the signed checkpoint.
    @discardableResult
    public func record(_ entries: [AuditEntry]) throws -> SignedNote {
        guard let key = try auditKey(create: true) else {
            throw AuditError(.unwritable, "no audit key")
        }
        return try append(entries, key: key)
    }

    private func append(_ entries: [AuditEntry], key: ECKeyPair) throws -> SignedNote {
        try log.append(entries) { tree in try anchor(size: tree.size, root: tree.root, key: key) }
    }

    /// Signs a checkpoint over everything `appender`'s log holds now (records of other
    /// processes included) and anchors it in the file and on the token: for a long-running
    /// process that appends without a checkpoint each time (the signing proxy).
    @discardableResult
    public func seal(_ appender: AuditAppender) throws -> SignedNote {
        guard let key = try auditKey(create: false) else {
            throw AuditError(.unwritable, "no audit key on the token to sign a checkpoint with")
        }
        return try appender.seal { tree in try anchor(size: tree.size, root: tree.root, key: key) }
    }

    /// Signs `size`/`root` with the audit key and writes the checkpoint to the file and the token.
    func anchor(size: Int, root: [UInt8], key: ECKeyPair) throws -> SignedNote {
        let checkpoint = try Checkpoint(origin: origin, treeSize: size, rootHash: root)
        let signer = try ECSigner(key: key, slot: opened.token.slot)
        let signature = try signer.sign(Array(checkpoint.noteText.utf8))
        let note = try SignedNote(text: checkpoint.noteText, signatures: [
            .init(name: origin, keyID: SignedNote.ecdsaKeyID(name: origin, subjectPublicKeyInfo: key.subjectPublicKeyInfoDER),
                  signature: signature)])
        let bytes = Array(note.formatted.utf8)
        try AtomicFile.write(bytes, to: log.checkpointPath, overwrite: true, mode: 0o600)
        // The new object first, then the old one away: a crash leaves at least one.
        let session = opened.session
        let old = try session.findObjects([.class(.data), .label(Self.checkpointObjectLabel)])
        _ = try session.createObject([.class(.data), .token(true), .private(true), .modifiable(true),
                                      .label(Self.checkpointObjectLabel), .value(bytes)])
        for object in old { try session.destroyObject(object) }
        return note
    }

    /// Writes the evidence bundle of an onboarding (see ``EvidenceBundle``) against the latest
    /// checkpoint on the token.
    func writeEvidence(to directory: String, csrPEM: String, pair: TokenKeyPair, publicKey: TokenRSAPublicKey,
                       submission: APIUserCreationReport?, userID: String?, replaces: String? = nil,
                       replacesUserID: String? = nil) throws {
        guard let key = try auditKey(create: false), let checkpoint = try tokenCheckpoint() else {
            throw AuditError(.inconsistent, "no audit key or checkpoint on the token to vouch for the evidence")
        }
        try EvidenceBundle.write(to: directory, csrPEM: csrPEM, pair: pair, publicKey: publicKey, submission: submission,
                                 userID: userID, replaces: replaces, replacesUserID: replacesUserID, audit: self, checkpoint: checkpoint, auditKey: key,
                                 signerSlot: PKCS11SlotReference(signer: try ECSigner(key: key, slot: opened.token.slot)))
    }

    /// The signed checkpoint anchored on the token, if any.
    public func tokenCheckpoint() throws -> SignedNote? {
        let objects = try opened.session.findObjects([.class(.data), .label(Self.checkpointObjectLabel)])
        guard let object = objects.last,
              let bytes = try opened.session.attributes([.value], of: object)[.value]?.attribute?.bytesValue else { return nil }
        return try SignedNote(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// Verifies a signed checkpoint with an audit public key: the signature line named by the
    /// origin, its key ID, and the ECDSA signature over the note text.
    public static func verifySignature(_ note: SignedNote, origin: String, publicKey: P256.Signing.PublicKey) -> Bool {
        let keyID = SignedNote.ecdsaKeyID(name: origin, subjectPublicKeyInfo: Array(publicKey.derRepresentation))
        return note.signatures.contains { line in
            guard line.name == origin, line.keyID == keyID,
                  let signature = try? P256.Signing.ECDSASignature(derRepresentation: line.signature) else { return false }
            return publicKey.isValidSignature(signature, for: SHA256.hash(data: Array(note.text.utf8)))
        }
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
    }

    /// The log must be intact; the token's checkpoint (and `external`, an auditor's) must be
    /// signed by the audit key and be a prefix of the log.
    public func verify(external: SignedNote? = nil) throws -> Verification {
        let key = try auditKey(create: false)
        var checked: [String] = []
        var notes: [(String, SignedNote)] = []
        if let onToken = try tokenCheckpoint() { notes.append(("token", onToken)) }
        if let external { notes.append(("given", external)) }
        for (source, note) in notes {
            guard let key else { throw AuditError(.inconsistent, "there is a \(source) checkpoint but no audit key on the token to check its signature") }
            guard Self.verifySignature(note, origin: origin, publicKey: key.publicKey) else {
                throw AuditError(.inconsistent, "the \(source) checkpoint's signature does not verify with the audit key (SHA-256 \(key.fingerprint))")
            }
            let checkpoint = try Checkpoint(noteText: note.text)
            guard checkpoint.origin == origin else {
                throw AuditError(.inconsistent, "the \(source) checkpoint is for '\(checkpoint.origin)', not '\(origin)'")
            }
            _ = try log.verify(against: checkpoint)
            checked.append("\(source) (\(checkpoint.treeSize) records)")
        }
        switch try log.verify() {
        case .damaged(let index, let reason):
            throw AuditError(.inconsistent, "record \(index): \(reason)")
        case .intact(let hashes):
            return Verification(records: hashes.count, rootHex: hex(MerkleTree.root(hashes[...])), checkedAgainst: checked,
                                auditKeySHA256: key?.fingerprint)
        }
    }
}

extension AuditService {
    /// Opens the trail for an operation: writable now (or the operation is not performed) and
    /// with its audit key (made on first need, and said so).
    static func prepare(opened: OpenedToken, directory: URL, observer: any OperationObserver) throws -> AuditService {
        let audit = AuditService(opened: opened, directory: directory, observer: observer)
        try audit.requireWritable()
        _ = try audit.auditKey(create: true)
        return audit
    }

    /// Records what an operation already did; if that fails, the error says what was done and
    /// must be reconciled (the operation cannot be undone by the log's failure).
    func recordDone(_ entries: [AuditEntry], done: String) throws {
        do {
            try record(entries)
        } catch {
            throw AuditError(.unwritable, "\(done), but its audit record could not be written (\(error)): reconcile the audit log with the token before going on")
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
        // A failure of the audit trail itself cannot be recorded in it.
        guard let auditDirectory, !(error is AuditError) else { return }
        let log = AuditLog(directory: auditDirectory, token: .init(serial: token.info.serialNumber, label: token.info.label),
                           tool: .init(name: "fireblocks-hsm", version: FireblocksHSMVersion.current))
        _ = try? log.append([AuditEntry(event: "command.failed", outcome: .failed("\(error)"),
                                        facts: ["command": .string(command)])])
    }
}
