import PKCS11

/// A token key checked once for use: it meets the key policy, has a readable RSA public key,
/// and its token signs with `CKM_SHA256_RSA_PKCS`. What signs with it (``TokenSigner``, one
/// session each) needs no check of its own — in the manner of smallstep's `CreateSigner`, the
/// decision "this key may be used" is separate from "a session to sign with".
public struct UsableKey: Sendable {
    /// The key pair, as found and judged.
    public let keyPair: TokenKeyPair
    /// Its public half.
    public let publicKey: TokenRSAPublicKey
    /// The slot of its token.
    public let slot: Slot

    /// Checks the key; throws `policyViolation`, `notAnRSAKey` or `mechanismUnsupported`.
    public init(_ keyPair: TokenKeyPair, slot: Slot) throws {
        try KeyStore.requireMeetsPolicy(keyPair)
        try TokenCapabilities.requireSigning(on: slot)
        guard let publicKey = keyPair.publicKey else {
            throw TokenKeysError(.notAnRSAKey, "key '\(keyPair.label)' has no readable RSA public key")
        }
        self.keyPair = keyPair
        self.publicKey = publicKey
        self.slot = slot
    }
}
