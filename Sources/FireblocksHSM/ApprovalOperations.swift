import AuditTrail
import Crypto
import FireblocksAPI
import HexEncoding
import JOSE
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys

/// The kind of approval key to make, in the Approvals API's terms and the token's.
public enum ApprovalKeyChoice: String, CaseIterable, Codable, Sendable {
    /// ECDSA P-256 (the default; `CKM_ECDSA`, which p11-kit remoting also carries).
    case p256 = "ECDSA_SECP256R1"
    /// ECDSA P-384.
    case p384 = "ECDSA_SECP384R1"
    /// RSA-PSS, 3072 bits.
    case rsa3072 = "RSA_PS256-3072"
    /// RSA-PSS, 4096 bits.
    case rsa4096 = "RSA_PS256-4096"
    /// Ed25519, where the token offers `CKM_EDDSA`.
    case ed25519 = "EDDSA_ED25519"

    /// The token's kind.
    public var type: ApprovalKeyType {
        switch self {
        case .p256: return .ecP256
        case .p384: return .ecP384
        case .rsa3072: return .rsaPSS(bits: 3072)
        case .rsa4096: return .rsaPSS(bits: 4096)
        case .ed25519: return .ed25519
        }
    }

    /// The API's algorithm of a token key.
    public static func algorithm(of type: ApprovalKeyType) -> ApprovalKeyAlgorithm {
        switch type {
        case .ecP256: return .ECDSA_SECP256R1
        case .ecP384: return .ECDSA_SECP384R1
        case .rsaPSS: return .RSA_PS256
        case .ed25519: return .EDDSA_ED25519
        }
    }
}

/// What `approval-key create` reports.
public struct ApprovalKeyCreationReport: Codable, Sendable, Equatable {
    /// The token key's label.
    public let label: String
    /// The API's algorithm.
    public let algorithm: String
    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex.
    public let spkiSHA256: String
    /// `generated` (made now) or `existing` (the token already had an approval key of that label).
    public let key: String
    /// `registered`, or `already-registered` (the public key was listed for the user; nothing sent).
    public let result: String
    /// The registered key's id.
    public let keyID: String
    /// The approval request the registration waits for (empty: active at once, or a key
    /// registered by an earlier run: see ``status``).
    public let ccrIdPendingRegistration: String
    /// The key's status as registered or listed (`APPROVAL_API_KEY_STATUS_…`).
    public let status: String
    /// The API user.
    public let userID: String
    /// X-Request-ID of the registration.
    public let requestID: String?
    /// The evidence bundle written (`--evidence`), if any.
    public var evidence: String?
}

/// A registered approval key as `approval-key list|show` reports it.
public struct ApprovalKeyEntry: Codable, Sendable, Equatable {
    /// The key as the API lists it.
    public let key: ApprovalKey
    /// The token key whose public key it is (nil: none of this token's approval keys).
    public let tokenLabel: String?
}

/// What `approvals approve|reject` reports.
public struct ApprovalDecisionReport: Codable, Sendable, Equatable {
    /// The request.
    public let requestID: String
    /// Its type.
    public let requestType: String
    /// SHA-256 of the exact payload bytes, lowercase hex.
    public let payloadSHA256: String
    /// `approved` or `rejected`.
    public let decision: String
    /// The approval key that signed (approvals).
    public let keyLabel: String?
    /// Its registered id.
    public let keyID: String?
    /// The reason given (rejections; kept in the audit log, not sent: the API takes none).
    public let reason: String?
    /// X-Request-ID of the decision.
    public let xRequestID: String?
}

/// `approval-key` and `approvals`: approval keys made and used on the token, the requests they
/// approve. The API user is the one whose API key signs the requests' JWTs (``APITarget/apiKey``
/// is its id).
public enum ApprovalOperations {
    /// The longest request type kept in a record or report.
    static let typeBound = 128

    /// Generates the approval key on the token (or takes the approval key already there under
    /// that label, from an earlier run that did not finish), then registers it for the API user,
    /// unless its public key is already listed (then nothing is sent). Recorded as
    /// `approval-key.generated` (the attributes read back) and `approval-key.registered`.
    /// With `evidence`, then writes the evidence bundle of the key there (or beside it: a bundle
    /// is never rewritten), as an onboarding does (docs/auditor-guide.md).
    public static func createKey(token: TokenTarget, api: APITarget, label: String, choice: ApprovalKeyChoice, name: String?,
                                 evidence: String? = nil, observer: any OperationObserver) async throws -> ApprovalKeyCreationReport {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let (registered, pair) = try await register(session, api: api, label: label, choice: choice, name: name, observer: observer)
        var report = registered
        guard let evidence else { return report }
        guard let audit = session.audit else {
            throw OperationError(.auditUnwritable, "the approval key '\(label)' was registered, but no evidence can be written without the audit trail")
        }
        // What was sent: the same body as the registration's (nothing when the key was listed already).
        let request = report.result == "registered"
            ? try RegisterApprovalKey(name: name ?? label, publicKey: ApprovalPublicKey(algorithm: ApprovalKeyChoice.algorithm(of: pair.type),
                                                                                        publicKeyPem: pair.publicKeyPEM))
            : nil
        let folder = try audit.writeApprovalKeyEvidence(to: evidence, pair: pair, report: report, request: request, baseURL: api.baseURL.description)
        report.evidence = URL(fileURLWithPath: folder).standardizedFileURL.path
        return report
    }

    /// The steps of ``createKey(token:api:label:choice:name:observer:)`` on an open session.
    static func register(_ session: APISession, api: APITarget, label: String, choice: ApprovalKeyChoice, name: String?,
                         observer: any OperationObserver) async throws -> (report: ApprovalKeyCreationReport, pair: ApprovalKeyPair) {
        let userID = api.apiKey
        let tokenLabel = session.token.token.info.label
        let (pair, made) = try session.token.recordingFailure(of: "approval-key create", auditDirectory: api.auditDirectory) {
            () throws -> (ApprovalKeyPair, Bool) in
            if let existing = try ApprovalOperations.approvalKey(label, in: session.token.session) {
                guard existing.type == choice.type else {
                    throw OperationError(.keyExists, "token '\(tokenLabel)' already has a key labelled '\(label)' (\(existing.type)), not a new \(choice.type) approval key")
                }
                if case .failsToMeetPolicy(let failures) = existing.provenance.verdict {
                    throw OperationError(.policyViolation, "the approval key '\(label)' on token '\(tokenLabel)' fails the key policy: \(failures.map(\.description).joined(separator: "; "))")
                }
                observer.note("approval key '\(label)' is already on token '\(tokenLabel)' (an earlier run): registering it")
                return (existing, false)
            }
            let pair = try during("generating an \(choice.type) approval key on token '\(tokenLabel)'", token: tokenLabel, key: label) {
                try observer.slowStep("Generating \(choice.type) approval key '\(label)' on token '\(tokenLabel)'") {
                    try ApprovalKeys.generate(choice.type, label: label, in: session.token.session)
                }
            }
            try session.audit?.recordDone([AuditEntry(event: "approval-key.generated", facts: facts(pair))],
                                          done: "approval key '\(label)' was generated on token '\(tokenLabel)'")
            try FaultInjection.point("approval-key-generated")
            return (pair, true)
        }
        let algorithm = ApprovalKeyChoice.algorithm(of: pair.type)
        let body = try RegisterApprovalKey(name: name ?? label, publicKey: ApprovalPublicKey(algorithm: algorithm, publicKeyPem: pair.publicKeyPEM))
        let outcome: (keyID: String, ccr: String, requestID: String?, result: String, status: String) = try await session.recording {
            let (keys, _) = try await session.client.listApprovalKeys(userID: userID)
            if let listed = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == pair.fingerprint }) {
                return (listed.id, "", nil, "already-registered", listed.status)
            }
            let (answer, response) = try await session.client.registerApprovalKey(userID: userID, body, idempotencyKey: UUID().uuidString.lowercased())
            return (answer.keyId, answer.ccrIdPendingRegistration, response.requestID, "registered",
                    answer.ccrIdPendingRegistration.isEmpty ? "APPROVAL_API_KEY_STATUS_ENABLED" : "APPROVAL_API_KEY_STATUS_PENDING_REGISTRATION")
        }
        let report = ApprovalKeyCreationReport(label: pair.label, algorithm: algorithm.rawValue, spkiSHA256: pair.fingerprint,
                                               key: made ? "generated" : "existing", result: outcome.result, keyID: outcome.keyID,
                                               ccrIdPendingRegistration: outcome.ccr, status: outcome.status, userID: userID,
                                               requestID: outcome.requestID)
        if outcome.result == "registered" {
            try session.audit?.recordDone([AuditEntry(event: "approval-key.registered", facts: facts(pair).merging([
                "algorithm": .string(algorithm.rawValue), "keyId": .string(String(outcome.keyID.prefix(128))),
                "ccrIdPendingRegistration": .string(String(outcome.ccr.prefix(128))), "userId": .string(userID),
                "xRequestID": .string(outcome.requestID ?? ""), "baseURL": .string(api.baseURL.description),
                "publicKeyPem": .string(pair.publicKeyPEM),
            ]) { $1 })], done: "approval key '\(label)' was registered")
        }
        return (report, pair)
    }

    /// SHA-256 of the exact bytes of an item's `requestPayload`, lowercase hex.
    public static func payloadSHA256(_ item: ApprovalRequestItem) -> String {
        hex(SHA256.hash(data: Array(item.requestPayload.utf8)))
    }

    static func facts(_ pair: ApprovalKeyPair) -> [String: AuditValue] {
        var attributes: [String: AuditValue] = [:]
        for (type, reading) in pair.provenance.privateKeyAttributes {
            if case .value(.bool(_, let value)) = reading { attributes[type.name] = .bool(value) }
        }
        return [
            "label": .string(pair.label), "id": .string(hex(pair.id)), "type": .string(pair.type.description),
            "spkiSHA256": .string(pair.fingerprint), "attributes": .object(attributes),
            "verdict": .string(pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy"),
        ]
    }

    /// SHA-256 of a PEM public key's DER, lowercase hex (nil when it is not a PEM).
    static func spkiSHA256(pem: String) -> String? {
        let body = pem.split(whereSeparator: \.isNewline).filter { !$0.hasPrefix("-----") }.joined()
        guard let der = Data(base64Encoded: body) else { return nil }
        return hex(SHA256.hash(data: der))
    }

    /// The API user's approval keys, each matched to this token's approval key of the same
    /// public key, if any.
    public static func listKeys(token: TokenTarget, api: APITarget, observer: any OperationObserver) async throws -> [ApprovalKeyEntry] {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let (keys, _) = try await session.recording { try await session.client.listApprovalKeys(userID: api.apiKey) }
        let onToken = try tokenApprovalKeys(session)
        return keys.map { key in
            ApprovalKeyEntry(key: key, tokenLabel: spkiSHA256(pem: key.approvalApiPublicKey.publicKeyPem).flatMap { onToken[$0] })
        }
    }

    /// This token's private keys that load as approval keys, by SPKI SHA-256 (never the audit
    /// trail's key).
    static func tokenApprovalKeys(_ session: APISession) throws -> [String: String] {
        var found: [String: String] = [:]
        for handle in try session.token.session.findObjects([.class(.privateKey)]) {
            if let pair = try? ApprovalKeys.load(privateKeyHandle: handle, in: session.token.session), pair.label != AuditService.auditKeyLabel {
                found[pair.fingerprint] = pair.label
            }
        }
        return found
    }

    /// The approval key labelled `label` on the token, nil when there is none. The audit
    /// trail's key is never one: it is an EC P-256 key made like a default approval key, and it
    /// signs the trail's checkpoints, so it must never sign (or be registered for) anything a
    /// server sends.
    static func approvalKey(_ label: String, in session: Session) throws -> ApprovalKeyPair? {
        guard label != AuditService.auditKeyLabel else {
            throw OperationError(.invalidInput, "'\(label)' is the label of the audit trail's key, which is never an approval key: choose another label")
        }
        return try ApprovalKeys.find(label: label, in: session)
    }

    /// Deletes the registered key `keyID`, or the one whose public key is the token key
    /// `label`'s. The token key stays (a deletion may wait for approval). Recorded as
    /// `approval-key.deleted`.
    public static func deleteKey(token: TokenTarget, api: APITarget, keyID: String?, label: String?,
                                 observer: any OperationObserver) async throws -> (keyID: String, ccrIdPendingDeletion: String, requestID: String?) {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let (id, answer, response) = try await session.recording { () async throws -> (String, DeletedApprovalKey, APIResponse) in
            var id = keyID
            if id == nil, let label {
                guard let pair = try ApprovalOperations.approvalKey(label, in: session.token.session) else {
                    throw OperationError(.keyNotFound, "no approval key labelled '\(label)' on token '\(session.token.token.info.label)'")
                }
                let (keys, _) = try await session.client.listApprovalKeys(userID: api.apiKey)
                guard let listed = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == pair.fingerprint }) else {
                    throw OperationError(.keyNotFound, "the approval key '\(label)' is not registered for API user \(api.apiKey)")
                }
                id = listed.id
            }
            guard let id else { throw OperationError(.invalidInput, "name the approval key to delete (its id or its token label)") }
            let (answer, response) = try await session.client.deleteApprovalKey(userID: api.apiKey, keyID: id)
            return (id, answer, response)
        }
        try session.audit?.recordDone([AuditEntry(event: "approval-key.deleted", facts: [
            "keyId": .string(id), "label": .string(label ?? ""), "userId": .string(api.apiKey),
            "ccrIdPendingDeletion": .string(String(answer.ccrIdPendingDeletion.prefix(128))), "xRequestID": .string(response.requestID ?? ""),
        ])], done: "approval key \(id) was deleted")
        return (id, answer.ccrIdPendingDeletion, response.requestID)
    }

    /// The requests the API user may act on (every page).
    public static func list(token: TokenTarget, api: APITarget, includeUserApproved: Bool,
                            observer: any OperationObserver) async throws -> [ApprovalRequestItem] {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        return try await session.recording { try await session.client.listAllApprovals(includeUserApproved: includeUserApproved) }
    }

    /// One request.
    public static func show(token: TokenTarget, api: APITarget, requestID: String, observer: any OperationObserver) async throws -> ApprovalRequestItem {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        return try await session.recording { try await session.client.approval(id: requestID).item }
    }

    /// Approves `requestID` with the token's approval key `label`: reads the request, refuses
    /// one that is expired, that is not the documented shape or whose payload names another
    /// request, signs the exact bytes of its `requestPayload` on the token and sends the
    /// signature (base64url) with the key's registered id. Recorded as `approval.approved` (id,
    /// type, the payload's SHA-256; never a JWT).
    public static func approve(token: TokenTarget, api: APITarget, requestID: String, label: String, now: @Sendable () -> Date = Date.init,
                               observer: any OperationObserver) async throws -> ApprovalDecisionReport {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let tokenLabel = session.token.token.info.label
        guard let pair = try session.token.recordingFailure(of: "approvals approve", auditDirectory: api.auditDirectory, {
            try ApprovalOperations.approvalKey(label, in: session.token.session)
        }) else {
            throw OperationError(.keyNotFound, "no approval key labelled '\(label)' on token '\(tokenLabel)'")
        }
        return try await session.recording {
            let (item, _) = try await session.client.approval(id: requestID)
            let payload = try checked(item, requestID: requestID, now: now())
            let (keys, _) = try await session.client.listApprovalKeys(userID: api.apiKey)
            guard let registered = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == pair.fingerprint }) else {
                throw OperationError(.keyNotFound, "the approval key '\(label)' is not registered for API user \(api.apiKey): register it with its public key first")
            }
            let bytes = Array(item.requestPayload.utf8)
            let signature = try during("signing approval request \(requestID)", token: tokenLabel, key: label) {
                try ApprovalKeys.sign(bytes, with: pair, in: session.token.session)
            }
            let response = try await session.client.approve(requestID: requestID, ApproveApprovalRequest(keyId: registered.id, signature: Base64URL.encode(signature)),
                                                            idempotencyKey: UUID().uuidString.lowercased())
            let report = ApprovalDecisionReport(requestID: requestID, requestType: String(payload.requestType.prefix(typeBound)),
                                                payloadSHA256: hex(SHA256.hash(data: bytes)), decision: "approved", keyLabel: label,
                                                keyID: registered.id, reason: nil, xRequestID: response.requestID)
            try session.audit?.recordDone([entry(report, keyFingerprint: pair.fingerprint)], done: "approval request \(requestID) was approved")
            return report
        }
    }

    /// Rejects `requestID` (the API takes no reason: `reason` is kept in the audit record and
    /// the report). Recorded as `approval.rejected`.
    public static func reject(token: TokenTarget, api: APITarget, requestID: String, reason: String, now: @Sendable () -> Date = Date.init,
                              observer: any OperationObserver) async throws -> ApprovalDecisionReport {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        return try await session.recording {
            let (item, _) = try await session.client.approval(id: requestID)
            let payload = try checked(item, requestID: requestID, now: now())
            let response = try await session.client.reject(requestID: requestID, idempotencyKey: UUID().uuidString.lowercased())
            let report = ApprovalDecisionReport(requestID: requestID, requestType: String(payload.requestType.prefix(typeBound)),
                                                payloadSHA256: hex(SHA256.hash(data: Array(item.requestPayload.utf8))), decision: "rejected",
                                                keyLabel: nil, keyID: nil, reason: reason, xRequestID: response.requestID)
            try session.audit?.recordDone([entry(report, keyFingerprint: nil)], done: "approval request \(requestID) was rejected")
            return report
        }
    }

    /// The payload read, and refused when it names another request or has expired.
    static func checked(_ item: ApprovalRequestItem, requestID: String, now: Date) throws -> ApprovalPayload {
        guard let payload = item.payload else {
            throw OperationError(.invalidInput, "approval request \(requestID)'s requestPayload is not the documented JSON ({requestId, requestType, …}): not acted on")
        }
        guard payload.requestId == requestID else {
            throw OperationError(.invalidInput, "approval request \(requestID)'s payload names another request (\(payload.requestId.prefix(64).debugDescription)): not acted on")
        }
        if payload.isExpired(at: now) {
            throw OperationError(.invalidInput, "approval request \(requestID) expired at \(payload.expiresAt ?? 0) (epoch seconds): not acted on")
        }
        return payload
    }

    static func entry(_ report: ApprovalDecisionReport, keyFingerprint: String?) -> AuditEntry {
        var facts: [String: AuditValue] = [
            "requestId": .string(report.requestID), "requestType": .string(report.requestType),
            "payloadSHA256": .string(report.payloadSHA256), "xRequestID": .string(report.xRequestID ?? ""),
        ]
        if let label = report.keyLabel { facts["key"] = .string(label) }
        if let keyID = report.keyID { facts["keyId"] = .string(String(keyID.prefix(128))) }
        if let keyFingerprint { facts["spkiSHA256"] = .string(keyFingerprint) }
        if let reason = report.reason { facts["reason"] = .string(String(reason.prefix(1024))) }
        return AuditEntry(event: report.decision == "approved" ? "approval.approved" : "approval.rejected", facts: facts)
    }
}
