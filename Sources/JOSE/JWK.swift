/// An RSA public key as a JSON Web Key (RFC 7517 §4, RFC 7518 §6.3.1).
public struct RSAPublicJWK: Codable, Hashable, Sendable {
    public let kty: String
    public let n: String
    public let e: String
    public let alg: String
    public let use: String
    public let kid: String?

    /// - Parameters:
    ///   - modulus: big-endian, no leading zero bytes.
    ///   - publicExponent: big-endian, no leading zero bytes.
    ///   - keyID: `kid`, e.g. the key's fingerprint.
    public init(modulus: [UInt8], publicExponent: [UInt8], keyID: String?) {
        kty = "RSA"
        n = Base64URL.encode(modulus)
        e = Base64URL.encode(publicExponent)
        alg = "RS256"
        use = "sig"
        kid = keyID
    }
}
