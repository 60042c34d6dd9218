import AuditTrail
import DurableFiles
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import TokenKeys
import TransparencyLog

/// The evidence of a registered approval key (`approval-key create --evidence`), in the shape
/// of an onboarding's (docs/auditor-guide.md): its public key, its attributes read back from
/// the token, the token, the registration exchange (no JWT), its audit records each with a
/// tlog-proof against the token's checkpoint, the audit key, a signed in-toto statement and a
/// signed SHA256SUMS.
extension EvidenceBundle {
    /// The in-toto predicate type of an approval key's registration.
    public static let approvalKeyPredicateType = "urn:fireblocks-hsm:predicate:approval-key:v1"

    /// The files every approval key bundle has (the records' own files follow).
    static let approvalKeyFiles = ["public-key.pem", "key-attributes.json", "token.json", "registration.json",
                                   "audit-records.jsonl", "checkpoint", "audit-key.pem"]

    /// registration.json: what was sent (nil when the key was already listed and nothing was)
    /// and what came back.
    struct ApprovalKeyRegistration: Encodable {
        let baseURL, userID, result, keyId, ccrIdPendingRegistration, status, xRequestID: String
        let request: RegisterApprovalKey?
    }

    /// The approval key's facts.
    struct ApprovalKeyPredicate: Encodable {
        let keyLabel, keySPKISHA256, algorithm, token, apiUserID, keyID, result, status, xRequestID: String
        let auditKeySPKISHA256: String
        let checkpointTreeSize: Int
        /// SHA-256 of the statement of the bundle this one follows ("" for the first).
        let previousStatementSHA256: String
    }

    struct ApprovalKeyAttributes: Encodable {
        let label, id, type: String
        let privateKeyAttributes: [String: Bool]
        /// `CKA_ALLOWED_MECHANISMS` as the token reports it (an RSA approval key: its RSA-PSS
        /// mechanisms only); nil when the token reports none.
        let allowedMechanisms: [String]?
        let verdict, spkiSHA256: String
    }

    /// Step 4 of an approval key bundle's VERIFY.md.
    static let approvalKeyStep = """
        # 4. public-key.pem is the key registered and recorded (its SHA-256 is keySPKISHA256 in
        #    statement.json, spkiSHA256 in key-attributes.json and in each audit record):
        openssl pkey -pubin -in public-key.pem -outform DER | sha256sum
        grep -F "$(openssl pkey -pubin -in public-key.pem -outform DER | sha256sum | cut -d' ' -f1)" key-attributes.json
        """

    /// Writes a new approval key bundle at `requested` (or beside it); returns its folder.
    static func writeApprovalKey(to requested: String, pair: ApprovalKeyPair, report: ApprovalKeyCreationReport,
                                 request: RegisterApprovalKey?, baseURL: String, audit: AuditService, checkpoint: SignedNote,
                                 auditKey: ECKeyPair, signerSlot: PKCS11SlotReference) throws -> String {
        let (directory, previousStatement) = placement(requested)
        let (parsed, records, proven, recordNames) = try provenRecords(of: pair.fingerprint, audit: audit, checkpoint: checkpoint)
        guard !records.isEmpty else {
            throw OperationError(.auditInconsistent, "no audit record of approval key '\(pair.label)' is covered by the token's checkpoint")
        }
        var attributes: [String: Bool] = [:]
        var allowedMechanisms: [String]?
        for (type, reading) in pair.provenance.privateKeyAttributes {
            if case .value(.bool(_, let value)) = reading { attributes[type.name] = value }
            if case .value(.allowedMechanisms(let mechanisms)) = reading, !mechanisms.isEmpty { allowedMechanisms = mechanisms.map(\.name) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        func json(_ value: some Encodable) throws -> [UInt8] { Array(try encoder.encode(value)) + [0x0A] }
        var contents = proven
        contents.merge([
            "public-key.pem": Array((pair.publicKeyPEM.hasSuffix("\n") ? pair.publicKeyPEM : pair.publicKeyPEM + "\n").utf8),
            "key-attributes.json": try json(ApprovalKeyAttributes(
                label: pair.label, id: hex(pair.id), type: pair.type.description, privateKeyAttributes: attributes,
                allowedMechanisms: allowedMechanisms,
                verdict: pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy", spkiSHA256: pair.fingerprint)),
            "token.json": try json(TokenFacts(label: pair.token.label, serial: pair.token.serialNumber,
                                              manufacturer: pair.token.manufacturer, model: pair.token.model)),
            "registration.json": try json(ApprovalKeyRegistration(
                baseURL: baseURL, userID: report.userID, result: report.result, keyId: report.keyID,
                ccrIdPendingRegistration: report.ccrIdPendingRegistration, status: report.status, xRequestID: report.requestID ?? "",
                request: request)),
            "audit-records.jsonl": records.flatMap { $0 + [0x0A] },
            "checkpoint": Array(checkpoint.formatted.utf8),
            "audit-key.pem": Array((auditKey.publicKey.pemRepresentation + "\n").utf8),
        ]) { $1 }
        let predicate = ApprovalKeyPredicate(
            keyLabel: pair.label, keySPKISHA256: pair.fingerprint, algorithm: report.algorithm, token: pair.token.serialNumber,
            apiUserID: report.userID, keyID: report.keyID, result: report.result, status: report.status, xRequestID: report.requestID ?? "",
            auditKeySPKISHA256: auditKey.fingerprint, checkpointTreeSize: parsed.treeSize, previousStatementSHA256: previousStatement ?? "")
        try sealFolder(directory, contents: contents, order: approvalKeyFiles + recordNames, predicateType: approvalKeyPredicateType,
                       predicate: predicate, auditKey: auditKey, signer: signerSlot, guide: verifyGuide(keyStep: approvalKeyStep))
        return directory
    }
}
