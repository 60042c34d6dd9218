import _CryptoExtras
import X509

/// CSRs from software keys, for stand-in tests that do not need a token.
public enum SoftwareCSR {
    /// A CSR for a new software key, PEM.
    public static func make(commonName: String) throws -> String {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(commonName); OrganizationName("Acme") },
            privateKey: Certificate.PrivateKey(key), attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .sha256WithRSAEncryption)
        return try csr.serializeAsPEM().pemString + "\n"
    }
}
