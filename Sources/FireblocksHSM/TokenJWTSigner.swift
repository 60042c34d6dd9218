import JOSE
import TokenKeys

/// A token key as the JWT code's signer: RS256 = `CKM_SHA256_RSA_PKCS` on the token.
public struct TokenJWTSigner: RS256Signer {
    /// The signer.
    public let signer: TokenSigner

    /// Creates the value from its parts.
    public init(_ signer: TokenSigner) {
        self.signer = signer
    }

    /// `CKM_SHA256_RSA_PKCS` on the token.
    public func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        try signer.signRS256(signingInput)
    }

    /// Off Swift's cooperative thread pool (see ``TokenSigner``).
    public func signRS256(_ signingInput: [UInt8]) async throws -> [UInt8] {
        try await signer.signRS256(signingInput)
    }
}
