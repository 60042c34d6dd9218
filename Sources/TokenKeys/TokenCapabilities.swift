import ErrorShape
import PKCS11

/// Checks, before any work, that a token has the mechanisms this tool needs.
public enum TokenCapabilities {
    /// `CKM_RSA_PKCS_KEY_PAIR_GEN` for `bits`, and `CKM_SHA256_RSA_PKCS` signing.
    public static func requireKeyGeneration(on slot: Slot, bits: UInt) throws {
        let mechanisms = try slot.mechanisms()
        let label = (try? slot.tokenInfo().label) ?? "?"
        guard mechanisms.contains(.rsaPKCSKeyPairGen) else {
            throw TokenKeysError(.mechanismUnsupported, "token '\(label)' does not offer CKM_RSA_PKCS_KEY_PAIR_GEN: it cannot generate RSA keys", facts: ErrorFacts(tokenLabel: label))
        }
        let info = try slot.mechanismInfo(.rsaPKCSKeyPairGen)
        // Some modules report 0/0 for "no limit".
        if info.maximumKeySize > 0, !(info.minimumKeySize...info.maximumKeySize).contains(bits) {
            throw TokenKeysError(.keySizeUnsupported, "token '\(label)' generates RSA keys of \(info.minimumKeySize) to \(info.maximumKeySize) bits, not \(bits)")
        }
        try requireSigning(on: slot, mechanisms: mechanisms)
    }

    /// `CKM_SHA256_RSA_PKCS` with the sign flag: what CSRs and RS256 JWTs are signed with.
    public static func requireSigning(on slot: Slot) throws {
        try requireSigning(on: slot, mechanisms: try slot.mechanisms())
    }

    private static func requireSigning(on slot: Slot, mechanisms: [MechanismType]) throws {
        let label = (try? slot.tokenInfo().label) ?? "?"
        guard mechanisms.contains(.sha256RSAPKCS) else {
            throw TokenKeysError(.mechanismUnsupported, "token '\(label)' does not offer CKM_SHA256_RSA_PKCS, which CSR and JWT signatures (RS256) need", facts: ErrorFacts(tokenLabel: label))
        }
        let info = try slot.mechanismInfo(.sha256RSAPKCS)
        guard info.flags.contains(.sign) else {
            throw TokenKeysError(.mechanismUnsupported, "token '\(label)' offers CKM_SHA256_RSA_PKCS but not for signing (CKF_SIGN is off)", facts: ErrorFacts(tokenLabel: label))
        }
    }
}
