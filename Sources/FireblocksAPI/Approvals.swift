#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// The Approvals API (early availability): approval keys of an API user and the requests they
// approve. Shapes follow the official Python SDK 35.1.0 (`approvals_beta_api.py` and the models
// ApprovalApiPublicKey, RegisterApprovalApiKeyRequest/Response, ApprovalApiKey,
// ListApprovalApiKeysResponse, DeleteApprovalApiKeyResponse, ApprovalRequestItem,
// ListApprovalsResponse, ApproveApprovalRequest, QuorumStatus).

/// The signature algorithm of an approval key (`ApprovalApiPublicKey.algorithm`).
public enum ApprovalKeyAlgorithm: String, CaseIterable, Codable, Sendable {
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    case RSA_PS256
    /// ECDSA on P-256 with SHA-256, DER signatures.
    case ECDSA_SECP256R1
    /// ECDSA on P-384 with SHA-384, DER signatures.
    case ECDSA_SECP384R1
    /// Ed25519 (pure EdDSA over the message).
    case EDDSA_ED25519

    /// Parses an algorithm, case-insensitively, or says which ones exist.
    public init(validating text: String) throws(APIClientError) {
        guard let algorithm = ApprovalKeyAlgorithm(rawValue: text.uppercased()) else {
            throw APIClientError(.badInput, "'\(text.prefix(64))' is not an approval key algorithm; one of: \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = algorithm
    }
}

/// `ApprovalApiPublicKey`: the public key and its algorithm.
public struct ApprovalPublicKey: Codable, Equatable, Sendable {
    /// `algorithm`, kept as sent (a value this version does not know is still shown).
    public let algorithm: String
    /// `publicKeyPem`: a `PUBLIC KEY` PEM (SubjectPublicKeyInfo).
    public let publicKeyPem: String

    /// Creates the value from its parts.
    public init(algorithm: ApprovalKeyAlgorithm, publicKeyPem: String) {
        self.algorithm = algorithm.rawValue
        self.publicKeyPem = publicKeyPem
    }
}

/// The body of `POST /v1/management/api_users/{userId}/approval_keys` (`RegisterApprovalApiKeyRequest`).
public struct RegisterApprovalKey: Codable, Equatable, Sendable {
    /// `name`.
    public let name: String
    /// `approvalApiPublicKey`.
    public let approvalApiPublicKey: ApprovalPublicKey

    /// Creates the value from its parts.
    public init(name: String, publicKey: ApprovalPublicKey) throws(APIClientError) {
        guard let first = name.first, let last = name.last, !first.isWhitespace, !last.isWhitespace, name.count <= 256 else {
            throw APIClientError(.badInput, "an approval key's name is 1 to 256 characters without surrounding spaces")
        }
        self.name = name
        self.approvalApiPublicKey = publicKey
    }

    /// The JSON sent (sorted keys: the same input gives the same bytes).
    public func serialized() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }
}

/// `RegisterApprovalApiKeyResponse`.
public struct RegisteredApprovalKey: Codable, Equatable, Sendable {
    /// `keyId`.
    public let keyId: String
    /// `ccrIdPendingRegistration`: empty when the key is active at once, else the approval
    /// request that must be approved first.
    public let ccrIdPendingRegistration: String
}

/// `ApprovalApiKey`: a registered approval key.
public struct ApprovalKey: Codable, Equatable, Sendable {
    /// `id`.
    public let id: String
    /// `name`.
    public let name: String
    /// `createdAt`: epoch seconds, as a string.
    public let createdAt: String
    /// `lastUsedAt`: epoch seconds as a string ("0": never used).
    public let lastUsedAt: String
    /// `approvalApiPublicKey`.
    public let approvalApiPublicKey: ApprovalPublicKey
    /// `userId`.
    public let userId: String
    /// `APPROVAL_API_KEY_STATUS_PENDING_REGISTRATION`, `_ENABLED`, `_PENDING_DELETION`, `_UNSPECIFIED`.
    public let status: String

    /// Creates the value from its parts.
    public init(id: String, name: String, createdAt: String, lastUsedAt: String, approvalApiPublicKey: ApprovalPublicKey,
                userId: String, status: String) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.approvalApiPublicKey = approvalApiPublicKey
        self.userId = userId
        self.status = status
    }

    /// The statuses the SDK's model allows.
    public static let statuses = ["APPROVAL_API_KEY_STATUS_UNSPECIFIED", "APPROVAL_API_KEY_STATUS_PENDING_REGISTRATION",
                                  "APPROVAL_API_KEY_STATUS_ENABLED", "APPROVAL_API_KEY_STATUS_PENDING_DELETION"]
}

/// `ListApprovalApiKeysResponse`.
public struct ApprovalKeyList: Codable, Equatable, Sendable {
    /// `data`.
    public let data: [ApprovalKey]
    /// `next`: the cursor of the next page; empty or absent on the last.
    public let next: String?
}

/// `DeleteApprovalApiKeyResponse`.
public struct DeletedApprovalKey: Codable, Equatable, Sendable {
    /// `ccrIdPendingDeletion`: empty when the key was deleted at once, else the approval request
    /// that must be approved first (the key stays active until then).
    public let ccrIdPendingDeletion: String
}

/// `ApprovalRequestItem`: a request the caller may act on. `requestPayload` is the exact text
/// to sign: it is never re-serialized (``ApprovalPayload`` only reads it).
public struct ApprovalRequestItem: Codable, Equatable, Sendable {
    /// `requestPayload`: the JSON text exactly as the backend produced it.
    public let requestPayload: String
    /// `requestSignature` (empty until Fireblocks signs requests).
    public let requestSignature: String?
    /// `userStatus`: `USER_STATUS_NOT_APPLICABLE`, `USER_NOT_ELIGIBLE_TO_APPROVE`, `USER_NOT_APPROVED`, `USER_APPROVED`.
    public let userStatus: String
    /// `quorumStatus`, when asked for (kept as JSON: the SDK allows backend-defined fields).
    public let quorumStatus: QuorumStatus?

    /// The payload's fields, read (nil when it is not the documented shape).
    public var payload: ApprovalPayload? { ApprovalPayload(text: requestPayload) }
}

/// `QuorumStatus`, the summary part: the request's overall state and the simple quorum.
public struct QuorumStatus: Codable, Equatable, Sendable {
    /// `requestStatus`: PENDING, APPROVED, REJECTED, CANCELLED, TIMED_OUT, FAILED.
    public let requestStatus: String
    /// `quorum`, its common fields.
    public let quorum: Quorum?

    /// `SimpleQuorum` / `RulesetQuorum`, the fields both have or the simple one adds.
    public struct Quorum: Codable, Equatable, Sendable {
        /// `SIMPLE` or `RULESET`.
        public let type: String
        /// `status`: APPROVED or PENDING.
        public let status: String
        /// `threshold` (SIMPLE).
        public let threshold: Int?
        /// `currentApprovalCount` (SIMPLE).
        public let currentApprovalCount: Int?
    }
}

/// `ListApprovalsResponse`.
public struct ApprovalRequestList: Codable, Equatable, Sendable {
    /// `data`.
    public let data: [ApprovalRequestItem]
    /// `next`: the cursor of the next page; empty or absent on the last.
    public let next: String?
}

/// The documented fields of a `requestPayload` (`{requestId, requestType, requestTimestamp (ms),
/// expiresAt (s), requestData}`), read for display, decisions and checks; the text itself stays
/// as received.
public struct ApprovalPayload: Sendable, Equatable {
    /// `requestId`.
    public let requestId: String
    /// `requestType`.
    public let requestType: String
    /// `requestTimestamp`, epoch milliseconds.
    public let requestTimestamp: Int64?
    /// `expiresAt`, epoch seconds.
    public let expiresAt: Int64?
    /// `requestData`, as a JSON value (nil when absent).
    public let requestData: PayloadValue?

    /// Reads the payload text; nil unless it is a JSON object with a string `requestId` and
    /// `requestType`.
    public init?(text: String) {
        guard let object = try? JSONDecoder().decode([String: PayloadValue].self, from: Data(text.utf8)),
              case .string(let id)? = object["requestId"], case .string(let type)? = object["requestType"] else { return nil }
        requestId = id
        requestType = type
        requestTimestamp = object["requestTimestamp"]?.integer
        expiresAt = object["expiresAt"]?.integer
        requestData = object["requestData"]
    }

    /// Whether the request has expired at `now` (no `expiresAt`: not known to expire).
    public func isExpired(at now: Date) -> Bool {
        guard let expiresAt else { return false }
        return Double(expiresAt) <= now.timeIntervalSince1970
    }
}

/// A JSON value, read without losing what a number was written as.
public enum PayloadValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    /// A number, as JSONDecoder reads it: through binary types that may round (it reads
    /// 100.000…0001 as the integer 100), so it is shown, and used for times (`expiresAt`), but
    /// never compared against a policy's values (amounts are decimal strings in Fireblocks' API,
    /// and those are compared exactly).
    case number(String)
    case string(String)
    case array([PayloadValue])
    case object([String: PayloadValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(Int64.self) { self = .number(String(value)); return }
        if let value = try? container.decode(Decimal.self) { self = .number("\(value)"); return }
        if let value = try? container.decode(String.self) { self = .string(value); return }
        if let value = try? container.decode([PayloadValue].self) { self = .array(value); return }
        self = .object(try container.decode([String: PayloadValue].self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let text): try container.encode(Decimal(string: text) ?? 0)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The value as a whole number, when it is one that fits.
    public var integer: Int64? {
        if case .number(let text) = self { return Int64(text) }
        return nil
    }
}

/// `ApproveApprovalRequest`.
public struct ApproveApprovalRequest: Codable, Equatable, Sendable {
    /// `keyId` (nil: the server tries each of the user's keys).
    public let keyId: String?
    /// `signature`, base64url.
    public let signature: String

    /// Creates the value from its parts.
    public init(keyId: String?, signature: String) {
        self.keyId = keyId
        self.signature = signature
    }
}

extension FireblocksClient {
    /// Refuses an id that could change the path or query it is put in.
    public static func checkedApprovalID(_ id: String, what: String) throws(APIClientError) -> String {
        guard !id.isEmpty, id.count <= 128, id.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" || $0 == ".") }),
              id != ".", id != ".." else {
            throw APIClientError(.badInput, "\(what) is letters, digits, '-', '_' and '.' (1 to 128), not one of \(id.unicodeScalars.count) characters like that")
        }
        return id
    }

    private func decoded<T: Decodable>(_ type: T.Type, _ response: APIResponse, _ what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(response.body))
        } catch {
            throw APIClientError(.invalidResponse, "\(what) could not be read (\(error)) [X-Request-ID: \(response.requestID ?? "none")]")
        }
    }

    /// `POST /v1/management/api_users/{userId}/approval_keys` (the caller's own user).
    public func registerApprovalKey(userID: String, _ body: RegisterApprovalKey, idempotencyKey: String?) async throws -> (answer: RegisteredApprovalKey, response: APIResponse) {
        let id = try Self.checkedUserID(userID)
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
        let response = try await send(APIRequest(method: "POST", path: "/management/api_users/\(id)/approval_keys",
                                                 body: try body.serialized(), idempotencyKey: idempotencyKey))
        return (try decoded(RegisteredApprovalKey.self, response, "the approval key registration answer"), response)
    }

    /// `GET /v1/management/api_users/{userId}/approval_keys`, every page.
    public func listApprovalKeys(userID: String) async throws -> (keys: [ApprovalKey], response: APIResponse) {
        let id = try Self.checkedUserID(userID)
        var keys: [ApprovalKey] = []
        var cursor: String?
        for _ in 0..<100 {
            let query = try cursor.map { "?pageCursor=" + (try Self.checkedApprovalID($0, what: "a page cursor")) } ?? ""
            let response = try await send(APIRequest(method: "GET", path: "/management/api_users/\(id)/approval_keys" + query))
            let page = try decoded(ApprovalKeyList.self, response, "the approval key list")
            keys += page.data
            guard let next = page.next, !next.isEmpty else { return (keys, response) }
            cursor = next
        }
        throw APIClientError(.invalidResponse, "the approval key list did not end within 100 pages")
    }

    /// `DELETE /v1/management/api_users/{userId}/approval_keys/{keyId}`.
    public func deleteApprovalKey(userID: String, keyID: String) async throws -> (answer: DeletedApprovalKey, response: APIResponse) {
        let id = try Self.checkedUserID(userID)
        let key = try Self.checkedApprovalID(keyID, what: "an approval key id")
        let response = try await send(APIRequest(method: "DELETE", path: "/management/api_users/\(id)/approval_keys/\(key)"))
        return (try decoded(DeletedApprovalKey.self, response, "the approval key deletion answer"), response)
    }

    /// `GET /v1/approvals`, one page.
    public func listApprovals(includeUserApproved: Bool = false, pageCursor: String? = nil) async throws -> (page: ApprovalRequestList, response: APIResponse) {
        var query = ["quorumStatusMode=SUMMARY"]
        if includeUserApproved { query.append("includeUserApproved=true") }
        if let pageCursor { query.append("pageCursor=" + (try Self.checkedApprovalID(pageCursor, what: "a page cursor"))) }
        let response = try await send(APIRequest(method: "GET", path: "/approvals?" + query.joined(separator: "&")))
        return (try decoded(ApprovalRequestList.self, response, "the approval request list"), response)
    }

    /// `GET /v1/approvals`, every page (at most 100).
    public func listAllApprovals(includeUserApproved: Bool = false) async throws -> [ApprovalRequestItem] {
        var items: [ApprovalRequestItem] = []
        var cursor: String?
        for _ in 0..<100 {
            let (page, _) = try await listApprovals(includeUserApproved: includeUserApproved, pageCursor: cursor)
            items += page.data
            guard let next = page.next, !next.isEmpty else { return items }
            cursor = next
        }
        throw APIClientError(.invalidResponse, "the approval request list did not end within 100 pages")
    }

    /// `GET /v1/approvals/{requestId}`.
    public func approval(id requestID: String) async throws -> (item: ApprovalRequestItem, response: APIResponse) {
        let id = try Self.checkedApprovalID(requestID, what: "an approval request id")
        let response = try await send(APIRequest(method: "GET", path: "/approvals/\(id)?quorumStatusMode=SUMMARY"))
        return (try decoded(ApprovalRequestItem.self, response, "the approval request"), response)
    }

    /// `POST /v1/approvals/{requestId}/approve` (204 No Content).
    public func approve(requestID: String, _ body: ApproveApprovalRequest, idempotencyKey: String?) async throws -> APIResponse {
        let id = try Self.checkedApprovalID(requestID, what: "an approval request id")
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try await send(APIRequest(method: "POST", path: "/approvals/\(id)/approve", body: Array(try encoder.encode(body)),
                                         idempotencyKey: idempotencyKey))
    }

    /// `POST /v1/approvals/{requestId}/reject` (no body; 204 No Content).
    public func reject(requestID: String, idempotencyKey: String?) async throws -> APIResponse {
        let id = try Self.checkedApprovalID(requestID, what: "an approval request id")
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
        return try await send(APIRequest(method: "POST", path: "/approvals/\(id)/reject", idempotencyKey: idempotencyKey))
    }
}
