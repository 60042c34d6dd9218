import AuditTrail
import Crypto
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import TokenKeys
import TransparencyLog
import X509

/// The evidence of one onboarding, for an auditor who trusts neither this tool nor its operator:
/// the CSR, the public key, the key's attributes and verdict, the token, the API exchange, the
/// onboarding's audit records with inclusion proofs against a signed checkpoint, the audit
/// public key, and a DSSE envelope (an in-toto Statement v1 over all of them) signed on the token
/// with the audit key. `VERIFY.md` inside says how to check every claim with openssl and
/// coreutils alone.
public enum EvidenceBundle {
    /// The in-toto predicate type of an onboarding.
    public static let predicateType = "urn:fireblocks-hsm:predicate:onboarding:v1"

    /// The files, in the order the statement lists them.
    static let files = ["api_user.csr", "public-key.pem", "key-attributes.json", "token.json", "api-exchange.json",
                        "audit-records.jsonl", "inclusion-proofs.json", "checkpoint", "audit-key.pem"]

    /// Writes the bundle into `directory` (made 0700 when missing; files replaced atomically).
    static func write(to directory: String, csrPEM: String, pair: TokenKeyPair, publicKey: TokenRSAPublicKey,
                      submission: APIUserCreationReport?, userID: String?, replaces: String? = nil, replacesUserID: String? = nil,
                      audit: AuditService, checkpoint: SignedNote,
                      auditKey: ECKeyPair, signerSlot: PKCS11SlotReference) throws {
        try AtomicFile.makePrivateDirectory(directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]

        // This key's records, and their inclusion proofs against the checkpoint.
        let parsed = try Checkpoint(noteText: checkpoint.text)
        guard case .intact(let hashes) = try audit.log.verify() else {
            throw AuditError(.inconsistent, "the audit log is damaged: run 'audit verify'")
        }
        let lines = try audit.log.lines()
        var records: [[UInt8]] = []
        var proofs: [InclusionProofs.Proof] = []
        for (index, line) in lines.enumerated() where index < parsed.treeSize {
            guard let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)),
                  record.facts["spkiSHA256"] == AuditValue.string(publicKey.fingerprint) else { continue }
            records.append(line)
            let proof = MerkleTree.inclusionProof(index: index, hashes[..<parsed.treeSize]) ?? []
            proofs.append(.init(index: index, leafHash: hex(MerkleTree.leafHash(line)), path: proof.map { hex($0) }))
        }
        var attributes: [String: Bool] = [:]
        for (type, reading) in pair.provenance.privateKeyAttributes {
            if case .value(.bool(_, let value)) = reading { attributes[type.name] = value }
        }
        let contents: [String: [UInt8]] = [
            "api_user.csr": Array(csrPEM.utf8),
            "public-key.pem": Array((publicKey.pem + "\n").utf8),
            "key-attributes.json": try json(KeyAttributes(label: pair.label, id: hex(pair.id), privateKeyAttributes: attributes,
                                                          verdict: pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy",
                                                          spkiSHA256: publicKey.fingerprint)),
            "token.json": try json(TokenFacts(label: pair.token.label, serial: pair.token.serialNumber,
                                              manufacturer: pair.token.manufacturer, model: pair.token.model)),
            "api-exchange.json": Array(try encoder.encode(submission)) + [0x0A],
            "audit-records.jsonl": records.flatMap { $0 + [0x0A] },
            "inclusion-proofs.json": try json(InclusionProofs(treeSize: parsed.treeSize, rootHash: hex(parsed.rootHash),
                                                              origin: parsed.origin, records: proofs)),
            "checkpoint": Array(checkpoint.formatted.utf8),
            "audit-key.pem": Array((auditKey.publicKey.pemRepresentation + "\n").utf8),
        ]
        for name in files {
            try AtomicFile.write(contents[name] ?? [], to: directory + "/" + name, overwrite: true, mode: 0o644)
        }

        // The statement: one subject per file, the onboarding's facts as the predicate.
        let subjects = files.map { Statement.Subject(name: $0, digest: .init(sha256: hex(SHA256.hash(data: contents[$0] ?? [])))) }
        let predicate = Statement.Predicate(
            keyLabel: pair.label, keySPKISHA256: publicKey.fingerprint, token: pair.token.serialNumber,
            apiUserName: submission?.name ?? "", apiUserRole: submission?.role ?? "", apiUserID: userID ?? "",
            xRequestID: submission?.requestID ?? "", idempotencyKey: submission?.idempotencyKey ?? "",
            auditKeySPKISHA256: auditKey.fingerprint, checkpointTreeSize: parsed.treeSize,
            replaces: replaces ?? "", replacesUserID: replacesUserID ?? "")
        let compact = JSONEncoder()
        compact.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let statement = try compact.encode(Statement(type: Statement.inTotoType, subject: subjects, predicateType: predicateType,
                                                     predicate: predicate))
        let pae = DSSE.preAuthenticationEncoding(payloadType: DSSE.inTotoPayloadType, payload: Array(statement))
        let signature = try signerSlot.sign(pae)
        let envelope = DSSE.Envelope(payloadType: DSSE.inTotoPayloadType, payload: Array(statement), signatures: [
            .init(keyid: auditKey.fingerprint, sig: Data(signature).base64EncodedString())])
        try AtomicFile.write(Array(statement), to: directory + "/statement.json", overwrite: true, mode: 0o644)
        try AtomicFile.write(signature, to: directory + "/envelope.sig.der", overwrite: true, mode: 0o644)
        try AtomicFile.write(Array(try encoder.encode(envelope)) + [0x0A], to: directory + "/envelope.dsse.json", overwrite: true, mode: 0o644)
        try AtomicFile.write(Array(verifyGuide(statementSize: statement.count, subjects: subjects).utf8), to: directory + "/VERIFY.md",
                             overwrite: true, mode: 0o644)
    }

    private static func json(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value)) + [0x0A]
    }

    /// The commands an auditor runs, openssl and coreutils alone.
    static func verifyGuide(statementSize: Int, subjects: [Statement.Subject]) -> String {
        let digests = subjects.map { "\($0.digest.sha256)  \($0.name)" }.joined(separator: "\n")
        return """
            # Verifying this evidence

            Run these in this folder. Each must succeed; none needs this tool. First obtain the
            audit key's fingerprint from your own records (it was printed when the key was made)
            and compare it with `sha256sum` of the DER of `audit-key.pem` (step 1).

            ```
            # 1. The audit key is the one you recorded:
            openssl pkey -pubin -in audit-key.pem -outform DER | sha256sum

            # 2. statement.json is the envelope's payload, and the envelope's signature covers it
            #    (DSSE PAE built with printf; ECDSA P-256, SHA-256, DER):
            grep -o '"payload" : "[^"]*"' envelope.dsse.json | cut -d'"' -f4 | base64 -d | cmp - statement.json
            printf 'DSSEv1 %d %s %d ' 28 application/vnd.in-toto+json \(statementSize) > pae.bin
            cat statement.json >> pae.bin
            openssl dgst -sha256 -verify audit-key.pem -signature envelope.sig.der pae.bin

            # 3. Every file is the one the signed statement names (the statement lists these):
            sha256sum -c <<'SUMS'
            \(digests)
            SUMS

            # 4. The CSR's self-signature, and the CSR's key is public-key.pem:
            openssl req -in api_user.csr -verify -noout
            openssl req -in api_user.csr -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
            openssl pkey -pubin -in public-key.pem -outform DER | sha256sum

            # 5. The checkpoint is signed by the audit key (C2SP signed note, ECDSA):
            sed -n '1,3p' checkpoint > checkpoint.text
            tail -n 1 checkpoint | awk '{print $NF}' | base64 -d | tail -c +5 > checkpoint.sig.der
            openssl dgst -sha256 -verify audit-key.pem -signature checkpoint.sig.der checkpoint.text
            ```

            `fireblocks-hsm evidence verify . --audit-key audit-key.pem` does all of this and also
            checks each record's inclusion proof (`inclusion-proofs.json`, RFC 6962) against the
            checkpoint's root.

            """
    }
}

// The bundle's JSON documents.
extension EvidenceBundle {
    /// An in-toto Statement v1 of an onboarding (https://in-toto.io/Statement/v1).
    struct Statement: Encodable {
        static let inTotoType = "https://in-toto.io/Statement/v1"
        struct Subject: Codable {
            struct Digest: Codable { let sha256: String }
            let name: String
            let digest: Digest
        }
        struct Predicate: Encodable {
            let keyLabel, keySPKISHA256, token, apiUserName, apiUserRole, apiUserID, xRequestID, idempotencyKey: String
            let auditKeySPKISHA256: String
            let checkpointTreeSize: Int
            let replaces, replacesUserID: String
        }
        let type: String
        let subject: [Subject]
        let predicateType: String
        let predicate: Predicate
        enum CodingKeys: String, CodingKey { case type = "_type", subject, predicateType, predicate }
    }

    /// What verification reads of a statement (any predicate of the right type).
    struct StatementHeader: Decodable {
        let type: String
        let subject: [Statement.Subject]
        let predicateType: String
        enum CodingKeys: String, CodingKey { case type = "_type", subject, predicateType }
    }

    struct KeyAttributes: Encodable {
        let label, id: String
        let privateKeyAttributes: [String: Bool]
        let verdict, spkiSHA256: String
    }

    struct TokenFacts: Encodable {
        let label, serial, manufacturer, model: String
    }

    struct InclusionProofs: Encodable {
        struct Proof: Codable {
            let index: Int
            let leafHash: String
            let path: [String]
        }
        /// What verification reads: the proofs alone.
        struct Entries: Decodable { let records: [Proof] }
        let treeSize: Int
        let rootHash, origin: String
        let records: [Proof]
    }
}

/// Signs with the audit key on a slot (what the bundle's envelope needs).
struct PKCS11SlotReference {
    let signer: ECSigner
    func sign(_ message: [UInt8]) throws -> [UInt8] { try signer.sign(message) }
}

extension EvidenceBundle {
    /// What `evidence verify` found.
    public struct Verification: Codable, Sendable, Equatable {
        /// SHA-256 of the audit key trusted (compare it with the one recorded).
        public let auditKeySHA256: String
        /// The files checked against the signed statement.
        public let files: [String]
        /// The audit records whose inclusion was proven.
        public let records: Int
        /// The checkpoint's tree size.
        public let treeSize: Int
    }

    /// Checks a bundle with the audit public key an auditor trusts: the envelope's signature
    /// over the statement, every file's digest, the CSR's self-signature and key, the
    /// checkpoint's signature, and each record's inclusion proof against the checkpoint.
    public static func verify(directory: String, auditKeyPEM: String) throws -> Verification {
        func read(_ name: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else {
                throw AuditError(.unreadable, "the evidence has no readable \(name)")
            }
            return Array(data)
        }
        func fail(_ reason: String) -> AuditError { AuditError(.inconsistent, reason) }

        guard let key = try? P256.Signing.PublicKey(pemRepresentation: auditKeyPEM) else {
            throw fail("the audit key given is not an EC P-256 public key (PEM)")
        }
        let fingerprint = hex(SHA256.hash(data: key.derRepresentation))

        // The envelope and its statement.
        guard let envelope = try? JSONDecoder().decode(DSSE.Envelope.self, from: Data(try read("envelope.dsse.json"))),
              envelope.payloadType == DSSE.inTotoPayloadType, let payload = envelope.payloadBytes else {
            throw fail("envelope.dsse.json is not a DSSE envelope of an in-toto statement")
        }
        let pae = DSSE.preAuthenticationEncoding(payloadType: envelope.payloadType, payload: payload)
        let signed = envelope.signatures.contains { entry in
            guard let der = Data(base64Encoded: entry.sig),
                  let signature = try? P256.Signing.ECDSASignature(derRepresentation: der) else { return false }
            return key.isValidSignature(signature, for: SHA256.hash(data: pae))
        }
        guard signed else { throw fail("the envelope's signature does not verify with the audit key (SHA-256 \(fingerprint))") }
        guard let statement = try? JSONDecoder().decode(StatementHeader.self, from: Data(payload)),
              statement.type == Statement.inTotoType, statement.predicateType == predicateType else {
            throw fail("the envelope's payload is not an in-toto Statement v1 of an onboarding")
        }

        // Every file is the one the statement names.
        var checked: [String] = []
        for subject in statement.subject {
            let name = subject.name, digest = subject.digest.sha256
            guard !name.contains("/"), !name.isEmpty else { throw fail("a statement subject names no file of this folder") }
            guard hex(SHA256.hash(data: try read(name))) == digest else { throw fail("\(name) is not the file the statement signed") }
            checked.append(name)
        }
        for required in files where !checked.contains(required) {
            throw fail("the statement does not cover \(required)")
        }

        // The CSR's self-signature, and its key is public-key.pem.
        guard let csr = try? CertificateSigningRequest(pemEncoded: String(decoding: try read("api_user.csr"), as: UTF8.self)),
              CSRBuilder.hasValidSelfSignature(csr) else { throw fail("api_user.csr is not a CSR whose self-signature verifies") }
        guard let publicKey = try? Certificate.PublicKey(pemEncoded: String(decoding: try read("public-key.pem"), as: UTF8.self)),
              publicKey == csr.publicKey else { throw fail("the CSR's key is not public-key.pem") }

        // The checkpoint, signed by the audit key; each record included in it.
        let note = try SignedNote(parsing: String(decoding: try read("checkpoint"), as: UTF8.self))
        let checkpoint = try Checkpoint(noteText: note.text)
        guard AuditService.verifySignature(note, origin: checkpoint.origin, publicKey: key).isVerified else {
            throw fail("the checkpoint's signature does not verify with the audit key")
        }
        guard let entries = try? JSONDecoder().decode(InclusionProofs.Entries.self, from: Data(try read("inclusion-proofs.json"))).records else {
            throw fail("inclusion-proofs.json is malformed")
        }
        let lines = try read("audit-records.jsonl").split(separator: 0x0A).map(Array.init)
        guard lines.count == entries.count, !lines.isEmpty else { throw fail("the records and their proofs do not pair up") }
        for (line, entry) in zip(lines, entries) {
            let index = entry.index, path = entry.path
            let hashes = path.compactMap { HexEncoding.bytes(fromHex: $0) }
            guard hashes.count == path.count,
                  MerkleTree.verifyInclusion(leafHash: MerkleTree.leafHash(line), index: index, treeSize: checkpoint.treeSize,
                                             proof: hashes, rootHash: checkpoint.rootHash) else {
                throw fail("audit record \(index) is not in the checkpoint's tree")
            }
        }
        return Verification(auditKeySHA256: fingerprint, files: checked, records: lines.count, treeSize: checkpoint.treeSize)
    }
}
