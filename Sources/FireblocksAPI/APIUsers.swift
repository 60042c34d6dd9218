#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// API user roles (the official SDK's enum).
public enum APIUserRole: String, CaseIterable, Codable, Sendable {
    case OWNER, ADMIN, SIGNER, COLLATERALS_SIGNER, EDITOR, APPROVER, VIEWER, NON_SIGNING_ADMIN,
         AUDITOR, NCW_ADMIN, NCW_SIGNER, SECURITY_ADMIN, SECURITY_AUDITOR

    /// Parses a role, case-insensitively, or says which ones exist.
    public init(validating text: String) throws(APIClientError) {
        guard let role = APIUserRole(rawValue: text.uppercased()) else {
            throw APIClientError(.badInput, "'\(text)' is not a Fireblocks role; one of: \(APIUserRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = role
    }

    /// Roles that may create API users ("Endpoint Permission: Admin, Non-Signing Admin"; the
    /// workspace owner too).
    public var mayCreateAPIUsers: Bool { self == .OWNER || self == .ADMIN || self == .NON_SIGNING_ADMIN }
}

/// The body of `POST /v1/management/api_users` (`CreateAPIUser`).
public struct CreateAPIUser: Codable, Equatable, Sendable {
    /// The role.
    public let role: String
    /// The name.
    public let name: String
    /// The CSR, PEM.
    public let csrPem: String
    /// `coSignerSetupType`, e.g. `SGX_MACHINE` (nil: left out).
    public let coSignerSetupType: String?
    /// The co signer setup is first user.
    public let coSignerSetupIsFirstUser: Bool?

    /// Creates the value from its parts.
    public init(role: APIUserRole, name: String, csrPem: String, coSignerSetupType: String? = nil,
                coSignerSetupIsFirstUser: Bool? = nil) throws(APIClientError) {
        guard let first = name.first, let last = name.last, !first.isWhitespace, !last.isWhitespace, name.count <= 256 else {
            throw APIClientError(.badInput, "an API user's name is 1 to 256 characters without surrounding spaces")
        }
        if let type = coSignerSetupType, type.isEmpty || !type.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
            throw APIClientError(.badInput, "a co-signer setup type looks like SGX_MACHINE (letters, digits, '_')")
        }
        self.role = role.rawValue
        self.name = name
        self.csrPem = csrPem
        self.coSignerSetupType = coSignerSetupType
        self.coSignerSetupIsFirstUser = coSignerSetupIsFirstUser
    }

    /// The JSON sent: serialised once (sorted keys, so the same input always gives the same
    /// bytes, which is what lets a re-run be recognised as the same intent); these bytes are
    /// hashed into the JWT and sent.
    public func serialized() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }
}

/// An API user as `GET /v1/management/api_users` lists it.
public struct APIUser: Codable, Equatable, Sendable {
    /// The id.
    public let id: String
    /// The name.
    public let name: String
    /// The role.
    public let role: String?
    /// Whether the API user is enabled.
    public let enabled: Bool?
    /// PENDING_ACTIVATION, PENDING_DEVICE_PAIRING, PENDING_DEVICE_SETUP, READY.
    public let status: String?
    /// API or CONSOLE.
    public let userType: String?

    /// Creates the value from its parts.
    public init(id: String, name: String, role: String?, enabled: Bool?, status: String?, userType: String?) {
        self.id = id
        self.name = name
        self.role = role
        self.enabled = enabled
        self.status = status
        self.userType = userType
    }
}

/// `{"users": [APIUser]}`.
public struct APIUserList: Codable, Equatable, Sendable {
    /// The users.
    public let users: [APIUser]

    /// Creates the value from its parts.
    public init(users: [APIUser]) { self.users = users }
}

extension FireblocksClient {
    /// `GET /v1/management/api_users`.
    public func listAPIUsers() async throws -> (users: [APIUser], response: APIResponse) {
        let response = try await send(APIRequest(method: "GET", path: "/management/api_users"))
        do {
            return (try JSONDecoder().decode(APIUserList.self, from: Data(response.body)).users, response)
        } catch {
            throw APIClientError(.invalidResponse, "the API user list could not be read (\(error)) [X-Request-ID: \(response.requestID ?? "none")]")
        }
    }
}

/// The statuses an API user goes through, in order (FIREBLOCKS-API.md, "Lifecycle"):
/// `PENDING_ACTIVATION` → (co-signer users) `PENDING_DEVICE_PAIRING` / `PENDING_DEVICE_SETUP`
/// → `READY`.
public enum APIUserStatus: String, CaseIterable, Codable, Sendable {
    case PENDING_ACTIVATION, PENDING_DEVICE_PAIRING, PENDING_DEVICE_SETUP, READY

    /// Parses a status, case-insensitively, or says which ones exist.
    public init(validating text: String) throws(APIClientError) {
        guard let status = APIUserStatus(rawValue: text.uppercased()) else {
            throw APIClientError(.badInput, "'\(text)' is not an API user status; one of: \(APIUserStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = status
    }

    /// Its place in the lifecycle (the two device statuses share one).
    public var stage: Int {
        switch self {
        case .PENDING_ACTIVATION: return 0
        case .PENDING_DEVICE_PAIRING: return 1
        case .PENDING_DEVICE_SETUP: return 2
        case .READY: return 3
        }
    }
}

/// `{userId, whitelistedIps}` of `GET /v1/management/api_users/{id}/whitelist_ip_addresses`.
public struct APIUserWhitelist: Codable, Equatable, Sendable {
    /// The user.
    public let userId: String?
    /// The addresses the user may call from; empty means any.
    public let whitelistedIps: [String]
}

/// The answer of `POST /v1/management/api_users/{id}/pairing_token`. `pairingToken` is a
/// secret (valid one hour): never log it; `description` leaves it out.
public struct PairingTokenAnswer: Codable, Equatable, Sendable, CustomStringConvertible {
    /// The user's id.
    public let id: String?
    /// The user's name.
    public let name: String?
    /// The user's status after the token was issued.
    public let status: String?
    /// The token.
    public let pairingToken: String

    /// Everything but the token.
    public var description: String { "pairing token for \(name ?? id ?? "?") (status \(status ?? "?"))" }
}

extension FireblocksClient {
    /// Refuses a user id that could change the path it is put in (ids are UUIDs).
    static func checkedUserID(_ id: String) throws(APIClientError) -> String {
        guard !id.isEmpty, id.count <= 64, id.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }) else {
            throw APIClientError(.badInput, "an API user id is letters, digits and '-' (a UUID), not '\(id.prefix(64))'")
        }
        return id
    }

    /// `GET /v1/management/api_users/{id}/whitelist_ip_addresses`.
    public func whitelistedIPs(userID: String) async throws -> (whitelist: APIUserWhitelist, response: APIResponse) {
        let id = try Self.checkedUserID(userID)
        let response = try await send(APIRequest(method: "GET", path: "/management/api_users/\(id)/whitelist_ip_addresses"))
        do {
            return (try JSONDecoder().decode(APIUserWhitelist.self, from: Data(response.body)), response)
        } catch {
            throw APIClientError(.invalidResponse, "the whitelist of API user \(id) could not be read (\(error)) [X-Request-ID: \(response.requestID ?? "none")]")
        }
    }

    /// `POST /v1/management/api_users/{id}/pairing_token` with an Idempotency-Key (so that a
    /// retry after a lost answer gets the same token instead of a second one).
    public func issuePairingToken(userID: String, idempotencyKey: String) async throws -> (answer: PairingTokenAnswer, response: APIResponse) {
        let id = try Self.checkedUserID(userID)
        try IdempotencyStore.validate(key: idempotencyKey)
        let response = try await send(APIRequest(method: "POST", path: "/management/api_users/\(id)/pairing_token",
                                                 idempotencyKey: idempotencyKey))
        let answer: PairingTokenAnswer
        do {
            answer = try JSONDecoder().decode(PairingTokenAnswer.self, from: Data(response.body))
        } catch {
            // The decoder's message could quote the body, and the body holds the token.
            throw APIClientError(.invalidResponse, "the pairing token answer could not be read [X-Request-ID: \(response.requestID ?? "none")]")
        }
        guard Self.isPlausiblePairingToken(answer.pairingToken) else {
            // Never quoted: it would reach a terminal or a file as the server sent it.
            throw APIClientError(.invalidResponse, "the server's pairing token is not 1 to \(Self.maximumPairingTokenLength) printable ASCII characters without spaces (it has \(answer.pairingToken.unicodeScalars.count)): refused, not written or shown [X-Request-ID: \(response.requestID ?? "none")]")
        }
        return (answer, response)
    }

    /// The longest pairing token accepted (Fireblocks' are far shorter).
    public static let maximumPairingTokenLength = 4096

    /// What a pairing token can be: 1 to 4096 printable ASCII characters, no space or control
    /// character (a token is pasted into a co-signer's setup; anything else is not one).
    public static func isPlausiblePairingToken(_ token: String) -> Bool {
        let scalars = token.unicodeScalars
        return (1...maximumPairingTokenLength).contains(scalars.count) && scalars.allSatisfy { (0x21...0x7E).contains($0.value) }
    }
}
