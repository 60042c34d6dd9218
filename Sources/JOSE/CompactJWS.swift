#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A JWS in compact serialization (RFC 7515 §7.1): `BASE64URL(header).BASE64URL(payload).BASE64URL(signature)`.
public struct CompactJWS: Sendable, Equatable {
    /// The protected header's bytes, as signed.
    public let header: [UInt8]
    /// The payload's bytes, as signed.
    public let payload: [UInt8]
    /// The signature.
    public let signature: [UInt8]
    /// What the signature covers, exactly as received or produced (re-encoding decoded parts
    /// need not give the same text, so a verifier must use this).
    public let signingInput: String

    /// The header every Fireblocks JWT carries: exactly these bytes, as the official SDKs
    /// produce them (PyJWT sorts header keys and uses compact separators).
    public static let rs256JWTHeader = Array(#"{"alg":"RS256","typ":"JWT"}"#.utf8)

    /// Signs `payload` under `header`.
    public static func sign(header: [UInt8] = rs256JWTHeader, payload: [UInt8], with signer: any RS256Signer) throws -> CompactJWS {
        let input = signingInput(header: header, payload: payload)
        return CompactJWS(header: header, payload: payload, signature: try signer.signRS256(Array(input.utf8)))
    }

    /// Signs `payload` under `header` through the signer's asynchronous form.
    public static func sign(header: [UInt8] = rs256JWTHeader, payload: [UInt8], with signer: any RS256Signer) async throws -> CompactJWS {
        let input = signingInput(header: header, payload: payload)
        return CompactJWS(header: header, payload: payload, signature: try await signer.signRS256(Array(input.utf8)))
    }

    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    public static func signingInput(header: [UInt8], payload: [UInt8]) -> String {
        Base64URL.encode(header) + "." + Base64URL.encode(payload)
    }

    /// Creates the value from its parts.
    public init(header: [UInt8], payload: [UInt8], signature: [UInt8]) {
        self.header = header
        self.payload = payload
        self.signature = signature
        self.signingInput = CompactJWS.signingInput(header: header, payload: payload)
    }

    /// Splits and decodes a compact JWS; nil unless it is three base64url parts.
    public init?(compact: String) {
        let parts = compact.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let header = Base64URL.decode(parts[0]),
              let payload = Base64URL.decode(parts[1]),
              let signature = Base64URL.decode(parts[2]) else { return nil }
        self.header = Array(header)
        self.payload = Array(payload)
        self.signature = Array(signature)
        self.signingInput = parts[0] + "." + parts[1]
    }

    /// The text sent in `Authorization: Bearer …`.
    public var compact: String {
        signingInput + "." + Base64URL.encode(signature)
    }
}
