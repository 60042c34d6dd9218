/// An RSA public key as a JSON Web Key (RFC 7517 §4, RFC 7518 §6.3.1).
public struct RSAPublicJWK: Codable, Hashable, Sendable {
    /// RFC 7517 `kty`: `RSA`.
    public let kty: String
    /// RFC 7518 `n`: the modulus, base64url.
    public let n: String
    /// RFC 7518 `e`: the public exponent, base64url.
    public let e: String
    /// RFC 7517 `alg`: `RS256`.
    public let alg: String
    /// RFC 7517 `use`: `sig`.
    public let use: String
    /// RFC 7517 `kid`: the key fingerprint.
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
