import X509

/// Builds PKCS#10 requests signed on the token.
public enum CSRBuilder {
    /// A CSR for the key, signed with SHA256withRSA by `C_Sign` on the token, and verified with
    /// the public key read from the token before it is returned.
    public static func makeCSR(subject: CSRSubject, signingKey: TokenPrivateKey) throws -> CertificateSigningRequest {
        let csr = try CertificateSigningRequest(
            version: .v1,
            subject: subject.distinguishedName(),
            privateKey: Certificate.PrivateKey(signingKey),
            attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .sha256WithRSAEncryption)
        try verify(csr, against: signingKey.signer.publicKey)
        return csr
    }

    /// True when the CSR's signature verifies with the public key it carries (PKCS#10's
    /// proof of possession): the one check of it in the project.
    public static func hasValidSelfSignature(_ csr: CertificateSigningRequest) -> Bool {
        csr.publicKey.isValidSignature(csr.signature, for: csr)
    }

    /// Checks that the CSR carries `publicKey` and that its self-signature verifies with it.
    public static func verify(_ csr: CertificateSigningRequest, against publicKey: TokenRSAPublicKey) throws {
        guard csr.publicKey == publicKey.certificatePublicKey else {
            throw TokenKeysError(.signatureCheckFailed, "the CSR's public key is not the token key's")
        }
        guard hasValidSelfSignature(csr) else {
            throw TokenKeysError(.signatureCheckFailed, "the CSR signature made on the token does not verify with the token's public key")
        }
    }
}
