/// Makes RS256 signatures (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) over a JWS signing
/// input. The JWT code knows only this; a PKCS#11 token key is one implementation.
public protocol RS256Signer: Sendable {
    /// Signs `signingInput` (the signer hashes it).
    func signRS256(_ signingInput: [UInt8]) throws -> [UInt8]
}
