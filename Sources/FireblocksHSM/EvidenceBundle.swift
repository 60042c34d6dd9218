import ErrorShape
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
/// onboarding's audit records each with a C2SP tlog-proof against the signed checkpoint, the
/// audit public key, a DSSE envelope (an in-toto Statement v1 over all of them) signed on the
/// token with the audit key, and `SHA256SUMS` with its signature by the same key: the digests an
/// auditor compares come only from signed bytes. docs/auditor-guide.md is the procedure;
/// `VERIFY.md` inside is a convenience copy of its commands.
///
/// A bundle is never rewritten: a re-run writes a new one beside it (`<dir>.2`, `<dir>.3`, …),
/// whose statement names the previous statement's SHA-256.
public enum EvidenceBundle {
    /// The in-toto predicate type of an onboarding.
    public static let predicateType = "urn:fireblocks-hsm:predicate:onboarding:v1"

    /// The files every bundle has, in the order the statement lists them (the records' own
    /// files follow).
    static let files = ["api_user.csr", "public-key.pem", "key-attributes.json", "token.json", "api-exchange.json",
                        "audit-records.jsonl", "checkpoint", "audit-key.pem"]

    /// The file of record `index` (its exact bytes, no newline) and of its tlog-proof.
    static func recordFiles(_ index: Int) -> (record: String, proof: String) {
        ("audit-record-\(index).json", "audit-record-\(index).tlog-proof")
    }

    /// Where a new bundle goes: `requested` when it does not exist or is empty; otherwise the
    /// first free `requested.N` (N ≥ 2), with the SHA-256 of the newest earlier bundle's
    /// statement.
    static func placement(_ requested: String) -> (directory: String, previousStatementSHA256: String?) {
        func used(_ path: String) -> Bool {
            guard let entries = try? FileManager.default.contentsOfDirectory(atPath: path) else {
                return FileManager.default.fileExists(atPath: path)
            }
            return !entries.isEmpty
        }
        guard used(requested) else { return (requested, nil) }
        var previous = requested
        var number = 2
        while used("\(requested).\(number)") {
            previous = "\(requested).\(number)"
            number += 1
        }
        let digest = FileManager.default.contents(atPath: previous + "/statement.json").map { hex(SHA256.hash(data: $0)) }
        return ("\(requested).\(number)", digest)
    }

    /// The records whose `spkiSHA256` is `fingerprint`, each with its tlog-proof against the
    /// checkpoint, which the log must still extend (its root over the first treeSize records).
    static func provenRecords(of fingerprint: String, audit: AuditService, checkpoint: SignedNote) throws
        -> (checkpoint: Checkpoint, records: [[UInt8]], contents: [String: [UInt8]], names: [String]) {
        let parsed = try Checkpoint(noteText: checkpoint.text)
        guard case .intact(let hashes) = try audit.log.verify(), hashes.count >= parsed.treeSize,
              MerkleTree.root(hashes[..<parsed.treeSize]) == parsed.rootHash else {
            throw OperationError(.auditInconsistent, "the audit log does not extend the token's checkpoint: no evidence can be proven from it")
        }
        let lines = try audit.log.lines()
        var records: [[UInt8]] = []
        var contents: [String: [UInt8]] = [:]
        var recordNames: [String] = []
        for (index, line) in lines.enumerated() where index < parsed.treeSize {
            guard let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)),
                  record.facts["spkiSHA256"] == AuditValue.string(fingerprint) else { continue }
            records.append(line)
            let proof = try TlogProof(index: index, path: MerkleTree.inclusionProof(index: index, hashes[..<parsed.treeSize]) ?? [],
                                      checkpoint: checkpoint)
            let names = recordFiles(index)
            contents[names.record] = line
            contents[names.proof] = Array(proof.formatted.utf8)
            recordNames += [names.record, names.proof]
        }
        return (parsed, records, contents, recordNames)
    }

    /// Writes a new bundle at `requested` (or beside it, see ``placement(_:)``); returns its folder.
    static func write(to requested: String, csrPEM: String, pair: TokenKeyPair, publicKey: TokenRSAPublicKey,
                      submission: APIUserCreationReport?, userID: String?, replaces: String? = nil, replacesUserID: String? = nil,
                      audit: AuditService, checkpoint: SignedNote,
                      auditKey: ECKeyPair, signerSlot: PKCS11SlotReference) throws -> String {
        let (directory, previousStatement) = placement(requested)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let (parsed, records, proven, recordNames) = try provenRecords(of: publicKey.fingerprint, audit: audit, checkpoint: checkpoint)
        var contents = proven
        var attributes: [String: Bool] = [:]
        for (type, reading) in pair.provenance.privateKeyAttributes {
            if case .value(.bool(_, let value)) = reading { attributes[type.name] = value }
        }
        contents.merge([
            "api_user.csr": Array(csrPEM.utf8),
            "public-key.pem": Array((publicKey.pem + "\n").utf8),
            "key-attributes.json": try json(KeyAttributes(label: pair.label, id: hex(pair.id), privateKeyAttributes: attributes,
                                                          verdict: pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy",
                                                          spkiSHA256: publicKey.fingerprint)),
            "token.json": try json(TokenFacts(label: pair.token.label, serial: pair.token.serialNumber,
                                              manufacturer: pair.token.manufacturer, model: pair.token.model)),
            "api-exchange.json": Array(try encoder.encode(submission)) + [0x0A],
            "audit-records.jsonl": records.flatMap { $0 + [0x0A] },
            "checkpoint": Array(checkpoint.formatted.utf8),
            "audit-key.pem": Array((auditKey.publicKey.pemRepresentation + "\n").utf8),
        ]) { $1 }
        let predicate = OnboardingPredicate(
            keyLabel: pair.label, keySPKISHA256: publicKey.fingerprint, token: pair.token.serialNumber,
            apiUserName: submission?.name ?? "", apiUserRole: submission?.role ?? "", apiUserID: userID ?? "",
            xRequestID: submission?.requestID ?? "", idempotencyKey: submission?.idempotencyKey ?? "",
            auditKeySPKISHA256: auditKey.fingerprint, checkpointTreeSize: parsed.treeSize,
            replaces: replaces ?? "", replacesUserID: replacesUserID ?? "", previousStatementSHA256: previousStatement ?? "")
        try sealFolder(directory, contents: contents, order: files + recordNames, predicateType: predicateType, predicate: predicate,
                       auditKey: auditKey, signer: signerSlot)
        return directory
    }

    /// Step 4 of an onboarding's VERIFY.md.
    static let csrStep = """
        # 4. The CSR's self-signature, and the CSR's key is public-key.pem:
        openssl req -in api_user.csr -verify -noout
        test "$(openssl req -in api_user.csr -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum)" \\
           = "$(openssl pkey -pubin -in public-key.pem -outform DER | sha256sum)"
        """

    /// The in-toto predicate type of a lifecycle milestone added to a bundle after it was written.
    public static let milestonePredicateType = "urn:fireblocks-hsm:predicate:lifecycle-milestone:v1"

    /// What happened to an onboarded API user after its bundle: the event, the user, the
    /// event's facts as recorded, and the bundle it belongs to (its statement's SHA-256).
    struct MilestonePredicate: Encodable {
        let event, apiUserID, apiUserName, bundleStatementSHA256, auditKeySPKISHA256: String
        let checkpointTreeSize: Int
        let facts: [String: AuditValue]
    }

    /// Adds a milestone to `bundle` as a new signed folder `milestones/<record>-<event>/` (the
    /// record, its tlog-proof, the checkpoint, the audit key, a statement naming the bundle's,
    /// SHA256SUMS and its signature): the bundle's own files are never touched. Returns the
    /// folder; one that exists already is left as it is.
    static func writeMilestone(bundle: String, event: String, record index: Int, line: [UInt8], hashes: ArraySlice<MerkleTree.Hash>,
                               checkpoint: SignedNote, apiUserID: String, apiUserName: String, facts: [String: AuditValue],
                               auditKey: ECKeyPair, signer: PKCS11SlotReference) throws -> String {
        guard let statement = FileManager.default.contents(atPath: bundle + "/statement.json") else {
            throw OperationError(.auditUnreadable, "\(bundle) holds no evidence statement to add a milestone to")
        }
        let directory = bundle + "/milestones/\(index)-" + event.map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
        if FileManager.default.fileExists(atPath: directory) { return directory }
        let proof = try TlogProof(index: index, path: MerkleTree.inclusionProof(index: index, hashes) ?? [], checkpoint: checkpoint)
        let names = recordFiles(index)
        let contents: [String: [UInt8]] = [
            "checkpoint": Array(checkpoint.formatted.utf8),
            "audit-key.pem": Array((auditKey.publicKey.pemRepresentation + "\n").utf8),
            names.record: line, names.proof: Array(proof.formatted.utf8),
        ]
        let predicate = MilestonePredicate(event: event, apiUserID: apiUserID, apiUserName: apiUserName,
                                           bundleStatementSHA256: hex(SHA256.hash(data: statement)), auditKeySPKISHA256: auditKey.fingerprint,
                                           checkpointTreeSize: hashes.count, facts: facts)
        try AtomicFile.makePrivateDirectory(bundle + "/milestones")
        try sealFolder(directory, contents: contents, order: ["checkpoint", "audit-key.pem", names.record, names.proof],
                       predicateType: milestonePredicateType, predicate: predicate, auditKey: auditKey, signer: signer)
        return directory
    }

    /// Writes `contents` (each file new: nothing is ever replaced) with an in-toto statement
    /// over them (subjects in `order`), its DSSE envelope signed by the audit key, VERIFY.md, and
    /// SHA256SUMS over every file with its signature by the same key.
    static func sealFolder(_ directory: String, contents base: [String: [UInt8]], order: [String], predicateType: String,
                           predicate: some Encodable, auditKey: ECKeyPair, signer: PKCS11SlotReference,
                           guide: String = verifyGuide()) throws {
        var contents = base
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let subjects = order.map { Subject(name: $0, digest: .init(sha256: hex(SHA256.hash(data: contents[$0] ?? [])))) }
        let compact = JSONEncoder()
        compact.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let statement = Array(try compact.encode(Statement(type: inTotoType, subject: subjects, predicateType: predicateType,
                                                           predicate: predicate)))
        let pae = DSSE.preAuthenticationEncoding(payloadType: DSSE.inTotoPayloadType, payload: statement)
        let signature = try signer.sign(pae)
        let envelope = DSSE.Envelope(payloadType: DSSE.inTotoPayloadType, payload: statement, signatures: [
            .init(keyid: auditKey.fingerprint, sig: Data(signature).base64EncodedString())])
        contents["statement.json"] = statement
        contents["envelope.sig.der"] = signature
        contents["envelope.dsse.json"] = Array(try encoder.encode(envelope)) + [0x0A]
        contents["VERIFY.md"] = Array(guide.utf8)

        // SHA256SUMS over every file, signed by the audit key: what an auditor compares.
        let summed = order + ["statement.json", "envelope.dsse.json", "envelope.sig.der", "VERIFY.md"]
        let sums = Array(summed.map { "\(hex(SHA256.hash(data: contents[$0] ?? [])))  \($0)\n" }.joined().utf8)
        contents["SHA256SUMS"] = sums
        contents["SHA256SUMS.sig"] = try signer.sign(sums)
        try AtomicFile.makePrivateDirectory(directory)
        for name in summed + ["SHA256SUMS", "SHA256SUMS.sig"] {
            try AtomicFile.write(contents[name] ?? [], to: directory + "/" + name, overwrite: false, mode: 0o644)
        }
    }

    private static func json(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value)) + [0x0A]
    }

    /// VERIFY.md: a convenience copy of the auditor's commands; docs/auditor-guide.md (of the
    /// tool's version that wrote the bundle) is the reference.
    static func verifyGuide(keyStep: String = csrStep) -> String {
        """
            # Verifying this evidence

            The procedure is docs/auditor-guide.md of fireblocks-hsm (\(FireblocksHSMVersion.current)), which
            is the reference: it also checks each record's inclusion proof. These are its
            commands, for convenience; they need openssl and coreutils, not this tool. Run them
            in this folder, with the audit key fingerprint from your own records in FINGERPRINT.

            ```
            # 1. The audit key is the one you recorded:
            test "$(openssl pkey -pubin -in audit-key.pem -outform DER | sha256sum | cut -d' ' -f1)" = "$FINGERPRINT"

            # 2. SHA256SUMS is signed by that key, and every file is the one it names:
            openssl dgst -sha256 -verify audit-key.pem -signature SHA256SUMS.sig SHA256SUMS
            sha256sum --strict -c SHA256SUMS

            # 3. statement.json is the payload the DSSE envelope's signature covers:
            printf 'DSSEv1 %d %s %d ' 28 application/vnd.in-toto+json "$(wc -c < statement.json)" > pae.bin
            cat statement.json >> pae.bin
            openssl dgst -sha256 -verify audit-key.pem -signature envelope.sig.der pae.bin

            \(keyStep)

            # 5. The checkpoint is signed by the audit key (C2SP signed note, ECDSA, key ID =
            #    first 4 bytes of SHA-256 of the key's DER):
            sed '/^$/,$d' checkpoint > checkpoint.text
            grep '^— ' checkpoint | head -n 1 | awk '{print $NF}' | base64 -d > checkpoint.blob
            test "$(head -c 4 checkpoint.blob | od -An -tx1 | tr -d ' \\n')" \\
               = "$(openssl pkey -pubin -in audit-key.pem -outform DER | openssl dgst -sha256 -binary | head -c 4 | od -An -tx1 | tr -d ' \\n')"
            tail -c +5 checkpoint.blob > checkpoint.sig.der
            openssl dgst -sha256 -verify audit-key.pem -signature checkpoint.sig.der checkpoint.text
            ```

            """
    }
}

// The bundle's JSON documents.
extension EvidenceBundle {
    /// An in-toto Statement v1 (https://in-toto.io/Statement/v1) over a folder's files.
    struct Statement<Predicate: Encodable>: Encodable {
        let type: String
        let subject: [Subject]
        let predicateType: String
        let predicate: Predicate
        enum CodingKeys: String, CodingKey { case type = "_type", subject, predicateType, predicate }
    }

    static let inTotoType = "https://in-toto.io/Statement/v1"

    /// One subject: a file of the folder and its digest.
    struct Subject: Codable {
        struct Digest: Codable { let sha256: String }
        let name: String
        let digest: Digest
    }

    /// The onboarding's facts.
    struct OnboardingPredicate: Encodable {
        let keyLabel, keySPKISHA256, token, apiUserName, apiUserRole, apiUserID, xRequestID, idempotencyKey: String
        let auditKeySPKISHA256: String
        let checkpointTreeSize: Int
        let replaces, replacesUserID: String
        /// SHA-256 of the statement of the bundle this one follows ("" for the first).
        let previousStatementSHA256: String
    }

    /// What verification reads of a statement (any predicate of the right type).
    struct StatementHeader: Decodable {
        let type: String
        let subject: [Subject]
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
        /// `onboarding` (a bundle) or `milestone` (a folder added to one later).
        public let kind: String
        /// The bundle's milestones, each verified the same way.
        public let milestones: Int
    }

    /// Checks a bundle with the audit public key an auditor trusts, trusting only signed bytes:
    /// `SHA256SUMS`' signature and every file against it; the envelope's signature, and that
    /// `statement.json` is its payload byte for byte; every statement subject against its
    /// file; the CSR's self-signature and key; the checkpoint's signature (C2SP key ID); each
    /// record's tlog-proof against that checkpoint.
    public static func verify(directory: String, auditKeyPEM: String) throws -> Verification {
        func read(_ name: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else {
                throw OperationError(.auditUnreadable, "the evidence has no readable \(name)")
            }
            return Array(data)
        }
        func fail(_ reason: String) -> OperationError { OperationError(.auditInconsistent, reason) }
        func valid(_ signature: [UInt8], over bytes: [UInt8], _ key: P256.Signing.PublicKey) -> Bool {
            guard let parsed = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return key.isValidSignature(parsed, for: SHA256.hash(data: bytes))
        }

        guard let key = try? P256.Signing.PublicKey(pemRepresentation: auditKeyPEM) else {
            throw fail("the audit key given is not an EC P-256 public key (PEM)")
        }
        let fingerprint = hex(SHA256.hash(data: key.derRepresentation))

        // The envelope and its statement; statement.json is the payload itself.
        guard let envelope = try? JSONDecoder().decode(DSSE.Envelope.self, from: Data(try read("envelope.dsse.json"))),
              envelope.payloadType == DSSE.inTotoPayloadType, let payload = envelope.payloadBytes else {
            throw fail("envelope.dsse.json is not a DSSE envelope of an in-toto statement")
        }
        let pae = DSSE.preAuthenticationEncoding(payloadType: envelope.payloadType, payload: payload)
        let signed = envelope.signatures.contains { entry in
            guard let der = Data(base64Encoded: entry.sig) else { return false }
            return valid(Array(der), over: pae, key)
        }
        guard signed else { throw fail("the envelope's signature does not verify with the audit key (SHA-256 \(fingerprint))") }
        guard try read("statement.json") == payload else {
            throw fail("statement.json is not the envelope's signed payload: what an auditor reads there is not what was signed")
        }
        guard let statement = try? JSONDecoder().decode(StatementHeader.self, from: Data(payload)), statement.type == inTotoType,
              [predicateType, milestonePredicateType, approvalKeyPredicateType].contains(statement.predicateType) else {
            throw fail("the envelope's payload is not an in-toto Statement v1 of an onboarding, of its milestone or of an approval key")
        }
        let isOnboarding = statement.predicateType == predicateType
        let isApprovalKey = statement.predicateType == approvalKeyPredicateType

        // SHA256SUMS, signed by the audit key, names every file's digest.
        let sums = try read("SHA256SUMS")
        guard valid(try read("SHA256SUMS.sig"), over: sums, key) else {
            throw fail("SHA256SUMS.sig does not verify with the audit key (SHA-256 \(fingerprint)): the digests are not the signed ones")
        }
        var summed: [String: String] = [:]
        for line in String(decoding: sums, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1].hasPrefix(" "), parts[0].count == 64 else { throw fail("SHA256SUMS is not 'DIGEST  NAME' lines") }
            let name = String(parts[1].dropFirst())
            guard !name.isEmpty, !name.contains("/"), summed[name] == nil else { throw fail("SHA256SUMS names '\(name)' twice or outside this folder") }
            guard hex(SHA256.hash(data: try read(name))) == parts[0] else { throw fail("\(name) is not the file SHA256SUMS signed") }
            summed[name] = String(parts[0])
        }

        // Every file is the one the statement names, and SHA256SUMS says the same.
        var checked: [String] = []
        for subject in statement.subject {
            let name = subject.name, digest = subject.digest.sha256
            guard !name.contains("/"), !name.isEmpty else { throw fail("a statement subject names no file of this folder") }
            guard hex(SHA256.hash(data: try read(name))) == digest else { throw fail("\(name) is not the file the statement signed") }
            guard summed[name] == digest else { throw fail("SHA256SUMS and the statement disagree about \(name)") }
            checked.append(name)
        }
        for required in isOnboarding ? files : isApprovalKey ? approvalKeyFiles : ["checkpoint", "audit-key.pem"] where !checked.contains(required) {
            throw fail("the statement does not cover \(required)")
        }

        // The CSR's self-signature, and its key is public-key.pem.
        if isOnboarding {
            guard let csr = try? CertificateSigningRequest(pemEncoded: String(decoding: try read("api_user.csr"), as: UTF8.self)),
                  CSRBuilder.hasValidSelfSignature(csr) else { throw fail("api_user.csr is not a CSR whose self-signature verifies") }
            guard let publicKey = try? Certificate.PublicKey(pemEncoded: String(decoding: try read("public-key.pem"), as: UTF8.self)),
                  publicKey == csr.publicKey else { throw fail("the CSR's key is not public-key.pem") }
        }

        // An approval key's bundle: public-key.pem is the key its attributes describe.
        if isApprovalKey {
            struct Described: Decodable { let spkiSHA256: String }
            guard let spki = ApprovalOperations.spkiSHA256(pem: String(decoding: try read("public-key.pem"), as: UTF8.self)),
                  let described = try? JSONDecoder().decode(Described.self, from: Data(try read("key-attributes.json"))),
                  spki == described.spkiSHA256 else {
                throw fail("public-key.pem is not the key key-attributes.json describes")
            }
        }

        // The checkpoint, signed by the audit key; each record's tlog-proof leads to it.
        let note = try SignedNote(parsing: String(decoding: try read("checkpoint"), as: UTF8.self))
        let checkpoint = try Checkpoint(noteText: note.text)
        if case .failed(let why) = note.verify(name: checkpoint.origin, publicKey: key) {
            throw fail("the checkpoint's signature does not verify with the audit key: \(why)")
        }
        var records = 0
        for name in checked where name.hasPrefix("audit-record-") && name.hasSuffix(".json") {
            guard let index = Int(name.dropFirst("audit-record-".count).dropLast(".json".count)) else { continue }
            let proofName = recordFiles(index).proof
            guard checked.contains(proofName) else { throw fail("audit record \(index) has no signed tlog-proof") }
            let proof = try TlogProof(parsing: String(decoding: try read(proofName), as: UTF8.self))
            guard proof.index == index, proof.checkpoint == note, try proof.includes(leaf: try read(name)) else {
                throw fail("audit record \(index) is not in the checkpoint's tree (\(proofName))")
            }
            records += 1
        }
        guard records > 0 else { throw fail("the evidence holds no audit record with its proof") }

        // The milestones added since, each a signed folder of its own that names this bundle.
        var milestones = 0
        if isOnboarding, let entries = try? FileManager.default.contentsOfDirectory(atPath: directory + "/milestones") {
            struct Named: Decodable { struct Predicate: Decodable { let bundleStatementSHA256: String }; let predicate: Predicate }
            for entry in entries.sorted() {
                let folder = directory + "/milestones/" + entry
                let result = try verify(directory: folder, auditKeyPEM: auditKeyPEM)
                guard result.kind == "milestone",
                      let named = try? JSONDecoder().decode(Named.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/statement.json"))),
                      named.predicate.bundleStatementSHA256 == hex(SHA256.hash(data: payload)) else {
                    throw fail("milestones/\(entry) is not a milestone of this bundle")
                }
                milestones += 1
            }
        }
        return Verification(auditKeySHA256: fingerprint, files: checked, records: records, treeSize: checkpoint.treeSize,
                            kind: isOnboarding ? "onboarding" : isApprovalKey ? "approval-key" : "milestone", milestones: milestones)
    }
}
