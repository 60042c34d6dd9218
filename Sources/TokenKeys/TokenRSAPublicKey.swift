import Crypto
import _CryptoExtras
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import PKCS11
import X509

/// The public half of a token RSA key, built from `CKA_MODULUS` / `CKA_PUBLIC_EXPONENT`.
public struct TokenRSAPublicKey: Sendable, Hashable {
    /// Big-endian modulus without leading zero bytes.
    public let modulus: [UInt8]
    /// Big-endian public exponent without leading zero bytes.
    public let publicExponent: [UInt8]
    let key: _RSA.Signing.PublicKey

    /// Builds the key; fails for malformed values or moduli under 2048 bits.
    public init(modulus: [UInt8], publicExponent: [UInt8]) throws {
        let modulus = Array(modulus.drop { $0 == 0 })
        let exponent = Array(publicExponent.drop { $0 == 0 })
        self.modulus = modulus
        self.publicExponent = exponent
        self.key = try _RSA.Signing.PublicKey(n: modulus, e: exponent)
    }

    /// Modulus size in bits.
    public var bits: Int { key.keySizeInBits }

    /// DER SubjectPublicKeyInfo.
    public var subjectPublicKeyInfoDER: [UInt8] { Array(key.derRepresentation) }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkey -pubout` prints it.
    public var pem: String { key.pemRepresentation }

    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo; equals
    /// `openssl pkey -pubin -outform DER | sha256sum`.
    public var fingerprint: String { hex(SHA256.hash(data: subjectPublicKeyInfoDER)) }

    /// SHA-1 of the modulus: the conventional `CKA_ID`, which lets a certificate issued for
    /// this key later be matched to it.
    public var conventionalID: [UInt8] { Array(Insecure.SHA1.hash(data: modulus)) }

    /// The key as swift-certificates sees it.
    public var certificatePublicKey: Certificate.PublicKey { Certificate.PublicKey(key) }

    /// Verifies an RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature in software.
    public func isValidRS256Signature(_ signature: some DataProtocol, for message: some DataProtocol) -> Bool {
        key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature),
                             for: SHA256.hash(data: Data(message)), padding: .insecurePKCS1v1_5)
    }

    /// Equal by value.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.modulus == rhs.modulus && lhs.publicExponent == rhs.publicExponent
    }

    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(modulus)
        hasher.combine(publicExponent)
    }
}
