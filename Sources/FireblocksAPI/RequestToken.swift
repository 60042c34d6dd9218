import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import JOSE

/// The claims of a Fireblocks API JWT (FIREBLOCKS-API.md, "Request authentication").
public struct RequestClaims: Codable, Equatable, Sendable {
    /// Path including `/v1`, plus `?query`, exactly as sent.
    public let uri: String
    /// Fresh per request (UUIDv4); the server refuses reuse.
    public let nonce: String
    /// Issue time, epoch seconds.
    public let iat: Int
    /// Expiry, epoch seconds; `iat + 55` in every official SDK.
    public let exp: Int
    /// The API key.
    public let sub: String
    /// Lowercase hex SHA-256 of the exact body bytes sent (of the empty string when there is none).
    public let bodyHash: String

    /// Creates the value from its parts.
    public init(uri: String, nonce: String, iat: Int, exp: Int, sub: String, bodyHash: String) {
        self.uri = uri
        self.nonce = nonce
        self.iat = iat
        self.exp = exp
        self.sub = sub
        self.bodyHash = bodyHash
    }

    /// The payload bytes, in the official SDKs' key order (uri, nonce, iat, exp, sub, bodyHash)
    /// with compact separators, so a token is byte-for-byte what the Python SDK makes for the same
    /// inputs. Each value is encoded by Foundation's JSONEncoder; only the fixed object frame is
    /// written here, because JSONEncoder does not promise a key order.
    public func serialized() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        func value(_ string: String) throws -> String { String(decoding: try encoder.encode(string), as: UTF8.self) }
        let text = "{\"uri\":\(try value(uri)),\"nonce\":\(try value(nonce)),\"iat\":\(iat),\"exp\":\(exp),\"sub\":\(try value(sub)),\"bodyHash\":\(try value(bodyHash))}"
        return Array(text.utf8)
    }

    /// Lowercase hex SHA-256 of `body`; of the empty string when there is no body, as the
    /// official SDKs compute it.
    public static func bodyHash(_ body: [UInt8]?) -> String {
        sha256Hex(body ?? [])
    }
}

/// Lowercase hex SHA-256.
public func sha256Hex(_ bytes: some DataProtocol) -> String {
    hex(SHA256.hash(data: bytes))
}

/// Issues the bearer token for one request, signing through an ``RS256Signer`` (a token key).
public struct RequestTokenIssuer: Sendable {
    /// Longest lifetime the official SDKs use; the API refuses `exp - iat` much above it.
    public static let maximumLifetime = 55

    /// The API key.
    public let apiKey: String
    /// The signer.
    public let signer: any RS256Signer
    /// `exp - iat`, 1…55 seconds.
    public let lifetime: Int

    /// Creates the value from its parts.
    public init(apiKey: String, signer: any RS256Signer, lifetime: Int = RequestTokenIssuer.maximumLifetime) throws(APIClientError) {
        try Self.check(apiKey: apiKey, lifetime: lifetime)
        self.apiKey = apiKey
        self.signer = signer
        self.lifetime = lifetime
    }

    /// The claims for a request, before there is a signer (the same checks as the issuer's):
    /// for a caller that makes them while it is still finding the key.
    public static func claims(apiKey: String, lifetime: Int, uri: String, body: [UInt8]?, issuedAt: Int,
                              nonce: String) throws(APIClientError) -> RequestClaims {
        try check(apiKey: apiKey, lifetime: lifetime)
        return RequestClaims(uri: uri, nonce: nonce, iat: issuedAt, exp: issuedAt + lifetime, sub: apiKey,
                             bodyHash: RequestClaims.bodyHash(body))
    }

    private static func check(apiKey: String, lifetime: Int) throws(APIClientError) {
        guard (1...Self.maximumLifetime).contains(lifetime) else {
            throw APIClientError(.badInput, "a JWT lifetime (exp - iat) is 1 to \(Self.maximumLifetime) seconds, not \(lifetime)")
        }
        guard !apiKey.isEmpty, apiKey.unicodeScalars.allSatisfy({ $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw APIClientError(.badInput, "the API key must be the API user's id (letters, digits and '-'), e.g. a UUID")
        }
    }

    /// The claims for a request.
    public func claims(uri: String, body: [UInt8]?, issuedAt: Int, nonce: String) -> RequestClaims {
        RequestClaims(uri: uri, nonce: nonce, iat: issuedAt, exp: issuedAt + lifetime, sub: apiKey,
                      bodyHash: RequestClaims.bodyHash(body))
    }

    /// The signed JWT, compact form.
    public func token(uri: String, body: [UInt8]?, issuedAt: Int, nonce: String) throws -> String {
        let payload = try claims(uri: uri, body: body, issuedAt: issuedAt, nonce: nonce).serialized()
        return try CompactJWS.sign(payload: payload, with: signer).compact
    }

    /// The signed JWT for claims already made, through the signer's asynchronous form.
    public func token(claims: RequestClaims) async throws -> String {
        try await CompactJWS.sign(payload: try claims.serialized(), with: signer).compact
    }

    /// The signed JWT, compact form, signed through the signer's asynchronous form (a token
    /// signature then runs off Swift's cooperative thread pool).
    public func token(uri: String, body: [UInt8]?, issuedAt: Int, nonce: String) async throws -> String {
        let payload = try claims(uri: uri, body: body, issuedAt: issuedAt, nonce: nonce).serialized()
        return try await CompactJWS.sign(payload: payload, with: signer).compact
    }
}
