import Crypto
import _CryptoExtras
import FireblocksAPI
import Foundation
import X509

// What the stand-in keeps of the Approvals API (early availability; shapes of the official
// Python SDK 35.1.0): the approval keys API users registered and the approval requests waiting
// for them, with the signature check of an approval.

extension SandboxState {
    /// An approval key registered through `POST /v1/management/api_users/{userId}/approval_keys`.
    public struct ApprovalKeyRecord: Codable, Equatable, Sendable {
        /// `id`.
        public let id: String
        /// `name`.
        public let name: String
        /// The API user (its API key) it belongs to.
        public let userId: String
        /// `RSA_PS256`, `ECDSA_SECP256R1`, `ECDSA_SECP384R1` or `EDDSA_ED25519`.
        public let algorithm: String
        /// The `PUBLIC KEY` PEM as registered.
        public let publicKeyPem: String
        /// When it was registered.
        public let createdAt: Date
        /// When it last signed an approval.
        public var lastUsedAt: Date?
        /// `APPROVAL_API_KEY_STATUS_…`.
        public var status: String
        /// The approval request its registration or deletion waits for.
        public var pendingRequestID: String?
    }

    /// A request waiting for approvals (`ApprovalRequestItem` in the API).
    public struct ApprovalRecord: Codable, Equatable, Sendable {
        /// `requestId`.
        public let id: String
        /// `requestType`.
        public let type: String
        /// `requestPayload`: the exact text clients sign.
        public let payload: String
        /// When it was made.
        public let createdAt: Date
        /// When it expires (`expiresAt` of the payload).
        public let expiresAt: Date
        /// Approvals it needs.
        public let threshold: Int
        /// The API users (API keys) who approved it, in order.
        public var approvedBy: [String]
        /// Who rejected it.
        public var rejectedBy: String?
        /// `PENDING`, `APPROVED`, `REJECTED`.
        public var state: String
        /// API users who may not act on it (the owner of a key whose registration it is).
        public var notEligible: [String]
        /// The approval key whose registration (`register`) or deletion (`delete`) it decides.
        public var approvalKeyID: String?
        /// `register` or `delete`, with ``approvalKeyID``.
        public var keyAction: String?

        /// Pending and not expired at `now`.
        public func isOpen(at now: Date) -> Bool { state == "PENDING" && expiresAt > now }

        /// The state the API reports (`QuorumRequestState`): an expired pending request is `TIMED_OUT`.
        public func reportedState(at now: Date) -> String { state == "PENDING" && expiresAt <= now ? "TIMED_OUT" : state }
    }

    /// The approval keys (nil in a state file from before they were simulated).
    public var keys: [ApprovalKeyRecord] { approvalKeys ?? [] }
    /// The approval requests.
    public var approvalRequests: [ApprovalRecord] { approvals ?? [] }

    /// Adds an approval request whose payload is written the way a backend might: its own key
    /// order, a space after each colon, `requestData` exactly as given. Clients must sign these
    /// bytes as they are. At the bound the oldest request that is no longer open is forgotten;
    /// when every one is open, nil.
    public mutating func addApproval(type: String, requestDataJSON: String, now: Date, lifetime: TimeInterval, threshold: Int,
                                     notEligible: [String] = [], keyID: String? = nil, keyAction: String? = nil,
                                     limit: Int) -> ApprovalRecord? {
        var list = approvals ?? []
        if list.count >= limit {
            guard let index = list.firstIndex(where: { !$0.isOpen(at: now) }) else { return nil }
            list.remove(at: index)
        }
        let id = UUID().uuidString.lowercased()
        let expires = Date(timeIntervalSince1970: (now.timeIntervalSince1970 + lifetime).rounded(.down))
        let milliseconds = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        let typeJSON = String(decoding: (try? JSONEncoder().encode(type)) ?? Data("\"\"".utf8), as: UTF8.self)
        let payload = "{\"requestType\": \(typeJSON), \"requestId\": \"\(id)\", \"expiresAt\": \(Int64(expires.timeIntervalSince1970)), "
            + "\"requestTimestamp\": \(milliseconds), \"requestData\": \(requestDataJSON)}"
        let record = ApprovalRecord(id: id, type: type, payload: payload, createdAt: now, expiresAt: expires, threshold: max(1, threshold),
                                    approvedBy: [], rejectedBy: nil, state: "PENDING", notEligible: notEligible,
                                    approvalKeyID: keyID, keyAction: keyAction)
        list.append(record)
        approvals = list
        return record
    }

    /// Finishes a request (`APPROVED` or `REJECTED`) and what it decides about an approval key:
    /// an approved registration enables the key, a rejected one removes it; an approved deletion
    /// removes the key, a rejected one leaves it enabled.
    public mutating func finish(approval index: Int, as state: String, by user: String?) {
        guard var list = approvals, list.indices.contains(index) else { return }
        list[index].state = state
        if state == "REJECTED" { list[index].rejectedBy = user }
        approvals = list
        guard let keyID = list[index].approvalKeyID, var keys = approvalKeys,
              let keyIndex = keys.firstIndex(where: { $0.id == keyID }) else { return }
        switch (list[index].keyAction, state) {
        case ("register", "APPROVED"), ("delete", "REJECTED"):
            keys[keyIndex].status = "APPROVAL_API_KEY_STATUS_ENABLED"
            keys[keyIndex].pendingRequestID = nil
        case ("register", "REJECTED"), ("delete", "APPROVED"):
            keys.remove(at: keyIndex)
        default:
            break
        }
        approvalKeys = keys
    }

    /// Approves a request from the Console's side (the workspace's quorum, not an API user):
    /// it is finished as approved. Nil when there is no open request of that id.
    public mutating func approveFromConsole(_ id: String, now: Date) -> ApprovalRecord? {
        guard let index = approvalRequests.firstIndex(where: { $0.id == id }), approvalRequests[index].isOpen(at: now) else { return nil }
        finish(approval: index, as: "APPROVED", by: nil)
        return approvalRequests[index]
    }
}

/// The signature check of `POST /v1/approvals/{id}/approve`: the signature over the exact bytes
/// of `requestPayload`, by the registered key's algorithm.
public enum ApprovalSignatureCheck {
    /// Why a public key cannot be registered under an algorithm; nil when it can.
    public static func problem(algorithm: String, publicKeyPem: String) -> String? {
        guard let algorithm = ApprovalKeyAlgorithm(rawValue: algorithm) else {
            return "approvalApiPublicKey.algorithm must be one of \(ApprovalKeyAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))"
        }
        guard let key = try? Certificate.PublicKey(pemEncoded: publicKeyPem) else {
            return "approvalApiPublicKey.publicKeyPem is not a PUBLIC KEY PEM"
        }
        switch algorithm {
        case .ECDSA_SECP256R1: return P256.Signing.PublicKey(key) == nil ? "the key is not a P-256 key (ECDSA_SECP256R1)" : nil
        case .ECDSA_SECP384R1: return P384.Signing.PublicKey(key) == nil ? "the key is not a P-384 key (ECDSA_SECP384R1)" : nil
        case .EDDSA_ED25519: return Curve25519.Signing.PublicKey(key) == nil ? "the key is not an Ed25519 key (EDDSA_ED25519)" : nil
        case .RSA_PS256:
            guard let rsa = _RSA.Signing.PublicKey(key) else { return "the key is not an RSA key (RSA_PS256)" }
            return rsa.keySizeInBits < 2048 ? "an RSA_PS256 key has at least 2048 bits" : nil
        }
    }

    /// Whether `signature` is a valid signature of `payload` by the key: ECDSA P-256 with
    /// SHA-256 and P-384 with SHA-384 (DER), RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte
    /// salt, Ed25519 over the bytes.
    public static func isValid(signature: [UInt8], payload: [UInt8], algorithm: String, publicKeyPem: String) -> Bool {
        guard let algorithm = ApprovalKeyAlgorithm(rawValue: algorithm),
              let key = try? Certificate.PublicKey(pemEncoded: publicKeyPem) else { return false }
        switch algorithm {
        case .ECDSA_SECP256R1:
            guard let publicKey = P256.Signing.PublicKey(key),
                  let parsed = try? P256.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return publicKey.isValidSignature(parsed, for: payload)
        case .ECDSA_SECP384R1:
            guard let publicKey = P384.Signing.PublicKey(key),
                  let parsed = try? P384.Signing.ECDSASignature(derRepresentation: signature) else { return false }
            return publicKey.isValidSignature(parsed, for: payload)
        case .EDDSA_ED25519:
            guard let publicKey = Curve25519.Signing.PublicKey(key) else { return false }
            return publicKey.isValidSignature(signature, for: payload)
        case .RSA_PS256:
            guard let publicKey = _RSA.Signing.PublicKey(key) else { return false }
            // swift-crypto's PSS: MGF1 with the message digest (SHA-256) and a salt as long as it.
            return publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: payload, padding: .PSS)
        }
    }
}
