import PKCS11

/// An RSA key pair on a token, as found and judged.
public struct TokenKeyPair: Sendable {
    /// `CKA_LABEL` of the private key.
    public let label: String
    /// `CKA_ID` (empty when the token has none).
    public let id: [UInt8]
    /// The private key object.
    public let privateKey: ObjectHandle
    /// The public key object, when the token has one with the same id (or label).
    public let publicKeyObject: ObjectHandle?
    /// The public key, from the private key's public components or the public key object;
    /// nil when neither gives a usable RSA key.
    public let publicKey: TokenRSAPublicKey?
    /// What the token reports about the key, and the policy verdict on it.
    public let provenance: KeyProvenance
    /// The token the key lives on.
    public let token: TokenInfo

    /// A URI that selects this key: token, object label, id and type.
    public var uri: PKCS11URI {
        var uri = PKCS11URI()
        uri.token = token.label
        uri.serial = token.serialNumber
        uri.object = label
        if !id.isEmpty { uri.id = id }
        uri.type = .privateKey
        return uri
    }
}

/// What the token reports about a key pair, and whether the private key meets the policy.
public struct KeyProvenance: Sendable {
    /// The private key attributes.
    public let privateKeyAttributes: [AttributeType: AttributeReading]
    /// The public key attributes.
    public let publicKeyAttributes: [AttributeType: AttributeReading]
    /// The verdict.
    public let verdict: PolicyVerdict
}
