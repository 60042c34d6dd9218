import PKCS11

/// What to generate.
public struct KeyGenerationRequest: Sendable {
    /// `CKA_LABEL` for both halves.
    public var label: String
    /// Modulus size: 2048, 3072 or 4096.
    public var bits: UInt
    /// `CKA_ID`; nil for the conventional SHA-1 of the modulus.
    public var id: [UInt8]?

    /// Creates the value from its parts.
    public init(label: String, bits: UInt = 4096, id: [UInt8]? = nil) {
        self.label = label
        self.bits = bits
        self.id = id
    }
}

/// Generates RSA key pairs on the token under ``KeyPolicy`` and proves the result.
public enum KeyGenerator {
    /// Generates the pair, reads its attributes back and judges them. If the token did not
    /// honour the policy the pair is destroyed and `policyViolation` thrown: there is never a
    /// half-made or weaker-than-asked key left behind.
    ///
    /// With an explicit id the pair is generated straight into the token, read-only
    /// (`CKA_MODIFIABLE` false). Without one, the id is the SHA-1 of the modulus, known only
    /// after generation, and a read-only object's id cannot be set afterwards; so the pair is
    /// generated as session objects (which vanish with the session, whatever happens) and
    /// copied into the token with its id and `CKA_MODIFIABLE` false. `C_CopyObject` keeps
    /// `CKA_LOCAL`, `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE` (PKCS#11 v2.40 §4.4),
    /// which the read-back then proves.
    ///
    /// - Parameter session: a read-write session with the user logged in.
    public static func generate(_ request: KeyGenerationRequest, in session: Session,
                                policy: KeyPolicy = .signingKey) throws -> TokenKeyPair {
        guard KeyPolicy.supportedModulusBits.contains(request.bits) else {
            throw TokenKeysError(.invalidArgument, "RSA keys of \(KeyPolicy.supportedModulusBits.map(String.init).joined(separator: ", ")) bits are supported, not \(request.bits)")
        }
        try KeyLabel.validateNew(request.label)
        if let id = request.id, id.isEmpty || id.count > 64 {
            throw TokenKeysError(.invalidArgument, "a key id (CKA_ID) is 1 to 64 bytes")
        }
        try TokenCapabilities.requireKeyGeneration(on: session.slot, bits: request.bits)
        try KeyStore.requireUnused(label: request.label, id: request.id, in: session)

        let handles: (publicKey: ObjectHandle, privateKey: ObjectHandle)
        if let id = request.id {
            handles = try session.generateKeyPair(
                mechanism: .rsaPKCSKeyPairGen,
                publicKeyTemplate: policy.publicKeyTemplate(label: request.label, id: id, bits: request.bits, onToken: true, modifiable: false),
                privateKeyTemplate: policy.privateKeyTemplate(label: request.label, id: id, onToken: true, modifiable: false))
        } else {
            handles = try generateWithConventionalID(request, in: session, policy: policy)
        }

        let token = try session.slot.tokenInfo()
        let pair: TokenKeyPair
        do {
            pair = try KeyStore.load(privateKey: handles.privateKey, in: session, token: token, policy: policy)
        } catch {
            destroy([handles.privateKey, handles.publicKey], in: session)
            throw error
        }
        if case .failsToMeetPolicy(let failures) = pair.provenance.verdict {
            destroy([handles.privateKey, handles.publicKey], in: session)
            let list = failures.map(\.description).joined(separator: "; ")
            throw TokenKeysError(.policyViolation, "token '\(token.label)' did not honour the key policy (\(list)); the key pair was destroyed")
        }
        if pair.publicKey == nil {
            destroy([handles.privateKey, handles.publicKey], in: session)
            throw TokenKeysError(.notAnRSAKey, "token '\(token.label)' generated a key whose public part cannot be read; the key pair was destroyed")
        }
        return pair
    }

    private static func generateWithConventionalID(_ request: KeyGenerationRequest, in session: Session,
                                                   policy: KeyPolicy) throws -> (publicKey: ObjectHandle, privateKey: ObjectHandle) {
        let ephemeral = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: policy.publicKeyTemplate(label: request.label, id: nil, bits: request.bits, onToken: false, modifiable: true),
            privateKeyTemplate: policy.privateKeyTemplate(label: request.label, id: nil, onToken: false, modifiable: true))
        defer { destroy([ephemeral.privateKey, ephemeral.publicKey], in: session) }

        guard let modulus = try session.attributes([.modulus], of: ephemeral.publicKey)[.modulus]?.attribute?.bytesValue else {
            throw TokenKeysError(.notAnRSAKey, "the token generated a public key without a readable CKA_MODULUS")
        }
        let id = try TokenRSAPublicKey(modulus: modulus, publicExponent: [0x01, 0x00, 0x01]).conventionalID
        // The label was checked before generating (the session objects carry it now).
        try KeyStore.requireUnused(label: nil, id: id, in: session)

        let lock: [Attribute] = [.token(true), .id(id), .modifiable(false)]
        let publicKey: ObjectHandle
        do {
            publicKey = try session.copyObject(ephemeral.publicKey, changing: lock)
        } catch let error as PKCS11Error {
            throw copyUnsupported(error)
        }
        try FaultInjection.point("keygen-between-copies")
        do {
            let privateKey = try session.copyObject(ephemeral.privateKey, changing: lock)
            return (publicKey, privateKey)
        } catch let error as PKCS11Error {
            destroy([publicKey], in: session)
            throw copyUnsupported(error)
        }
    }

    private static func copyUnsupported(_ error: PKCS11Error) -> Error {
        switch error.returnValue {
        case .functionNotSupported, .actionProhibited, .attributeReadOnly, .templateInconsistent, .attributeValueInvalid:
            return TokenKeysError(.copyUnsupported, "the token cannot store the key under its conventional id (\(error))")
        default:
            return error
        }
    }

    private static func destroy(_ objects: [ObjectHandle], in session: Session) {
        for object in objects { try? session.destroyObject(object) }
    }
}
