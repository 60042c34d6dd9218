import _CryptoExtras
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import PKCS11
import SwiftASN1
import X509

/// The kind of an approval key (a key that signs Fireblocks approval requests): what the token
/// generates and how it signs.
public enum ApprovalKeyType: Hashable, Sendable, CustomStringConvertible {
    /// ECDSA on P-256 (`CKM_ECDSA` over a SHA-256 digest), DER signatures.
    case ecP256
    /// ECDSA on P-384 (`CKM_ECDSA` over a SHA-384 digest), DER signatures.
    case ecP384
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, on an RSA key of this many bits.
    case rsaPSS(bits: UInt)
    /// Ed25519 (`CKM_EDDSA`, pure, over the message).
    case ed25519

    /// RSA sizes offered for approval keys.
    public static let rsaBits: [UInt] = [3072, 4096]

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .ecP256: return "EC P-256"
        case .ecP384: return "EC P-384"
        case .rsaPSS(let bits): return "RSA-PSS \(bits)"
        case .ed25519: return "Ed25519"
        }
    }

    /// `CKA_KEY_TYPE`.
    var keyType: KeyType {
        switch self {
        case .ecP256, .ecP384: return .ec
        case .rsaPSS: return .rsa
        case .ed25519: return .ecEdwards
        }
    }
}

/// An approval key on a token, found and judged.
public struct ApprovalKeyPair: Sendable {
    /// `CKA_LABEL`.
    public let label: String
    /// `CKA_ID`.
    public let id: [UInt8]
    /// The kind.
    public let type: ApprovalKeyType
    /// The private key object.
    public let privateKey: ObjectHandle
    /// DER SubjectPublicKeyInfo of the public key.
    public let subjectPublicKeyInfoDER: [UInt8]
    /// What the token reports about the private key, and the verdict under the approval key policy.
    public let provenance: KeyProvenance
    /// The token it lives on.
    public let token: TokenInfo
    /// The mechanisms the token lets it sign with (`CKA_ALLOWED_MECHANISMS`), for an RSA key;
    /// empty for the others.
    public let allowedMechanisms: [MechanismType]

    /// The public key, a `PUBLIC KEY` PEM.
    public var publicKeyPEM: String {
        PEMDocument(type: "PUBLIC KEY", derBytes: subjectPublicKeyInfoDER).pemString + "\n"
    }
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
    public var fingerprint: String { hex(SHA256.hash(data: subjectPublicKeyInfoDER)) }
}

/// Approval keys made on the token under the key policy (generated there, sign-only, sensitive,
/// private, never extractable; read back and judged as API keys are), and their signatures over
/// the exact bytes of a request.
public enum ApprovalKeys {
    /// DER of the OID of secp384r1, the `CKA_EC_PARAMS` of a P-384 key.
    public static let p384Parameters: [UInt8] = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]
    /// DER of the OID id-Ed25519 (1.3.101.112), the `CKA_EC_PARAMS` of an Ed25519 key.
    public static let ed25519Parameters: [UInt8] = [0x06, 0x03, 0x2B, 0x65, 0x70]

    /// The policy of an approval key of `type`: that of API keys, for its key type.
    public static func policy(for type: ApprovalKeyType) -> KeyPolicy {
        KeyPolicy(requirements: KeyPolicy.signingKey.requirements, minimumModulusBits: 3072, keyType: type.keyType)
    }

    /// The mechanisms `type` needs, for generating and for signing (the signing one: any of them).
    static func mechanisms(for type: ApprovalKeyType) -> (generate: MechanismType, sign: [MechanismType]) {
        switch type {
        case .ecP256, .ecP384: return (.ecKeyPairGen, [.ecdsa])
        case .rsaPSS: return (.rsaPKCSKeyPairGen, [.sha256RSAPKCSPSS, .rsaPKCSPSS])
        case .ed25519: return (.ecEdwardsKeyPairGen, [.eddsa])
        }
    }

    /// Whether the token offers what `type` needs.
    public static func isSupported(_ type: ApprovalKeyType, in session: Session) throws -> Bool {
        let offered = try session.slot.mechanisms()
        let needed = mechanisms(for: type)
        return offered.contains(needed.generate) && needed.sign.contains(where: offered.contains)
    }

    /// Generates an approval key pair on the token (a random id), reads it back and judges it;
    /// a pair the token did not make as asked is destroyed.
    /// - Parameter session: a read-write session with the user logged in.
    public static func generate(_ type: ApprovalKeyType, label: String, in session: Session) throws -> ApprovalKeyPair {
        try KeyLabel.validateNew(label)
        if case .rsaPSS(let bits) = type, !ApprovalKeyType.rsaBits.contains(bits) {
            throw TokenKeysError(.invalidArgument, "RSA-PSS approval keys are \(ApprovalKeyType.rsaBits.map(String.init).joined(separator: " or ")) bits, not \(bits)")
        }
        try KeyStore.requireUnused(label: label, id: nil, in: session)
        guard try isSupported(type, in: session) else {
            let needed = mechanisms(for: type)
            throw TokenKeysError(.mechanismUnsupported, "the token does not offer \(needed.generate) and \(needed.sign.map(\.name).joined(separator: " or ")), which an \(type) approval key needs")
        }
        var generator = SystemRandomNumberGenerator()
        let id = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let policy = policy(for: type)
        let publicTemplate: [Attribute]
        let privateTemplate: [Attribute]
        switch type {
        case .rsaPSS(let bits):
            publicTemplate = policy.publicKeyTemplate(label: label, id: id, bits: bits, onToken: true, modifiable: false)
            // The token keeps it to RSA-PSS: an RSA key it would let sign PKCS#1 v1.5 could sign
            // API JWTs, and an API key could pass for it (see `load`).
            let offered = try session.slot.mechanisms()
            privateTemplate = policy.privateKeyTemplate(label: label, id: id, onToken: true, modifiable: false)
                + [.allowedMechanisms(mechanisms(for: type).sign.filter(offered.contains))]
        case .ecP256, .ecP384, .ed25519:
            let parameters = type == .ecP256 ? ECKeys.p256Parameters : type == .ecP384 ? p384Parameters : ed25519Parameters
            publicTemplate = [
                .class(.publicKey), .keyType(type.keyType), .token(true), .private(false), .modifiable(false),
                .verify(true), .encrypt(false), .wrap(false), .derive(false), .ecParams(parameters), .label(label), .id(id),
            ]
            privateTemplate = [
                .class(.privateKey), .keyType(type.keyType), .token(true), .private(true), .modifiable(false),
                .sensitive(true), .extractable(false), .sign(true), .signRecover(false), .decrypt(false),
                .unwrap(false), .derive(false), .label(label), .id(id),
            ]
        }
        let handles: (publicKey: ObjectHandle, privateKey: ObjectHandle)
        do {
            handles = try session.generateKeyPair(mechanism: mechanisms(for: type).generate, publicKeyTemplate: publicTemplate,
                                                  privateKeyTemplate: privateTemplate)
        } catch let error as PKCS11Error where type.keyType == .rsa
                    && [.attributeTypeInvalid, .attributeValueInvalid, .templateInconsistent].contains(error.returnValue) {
            throw TokenKeysError(.mechanismUnsupported, "the token does not take CKA_ALLOWED_MECHANISMS, which keeps an RSA approval key to RSA-PSS and apart from API keys (\(error)): make an EC approval key (ECDSA P-256) instead")
        }
        do {
            let pair = try load(privateKey: handles.privateKey, in: session)
            if case .failsToMeetPolicy(let failures) = pair.provenance.verdict {
                throw TokenKeysError(.policyViolation, "the token did not honour the approval key policy (\(failures.map(\.description).joined(separator: "; "))); the key pair was destroyed")
            }
            return pair
        } catch {
            try? session.destroyObject(handles.privateKey)
            try? session.destroyObject(handles.publicKey)
            throw error
        }
    }

    /// The approval key labelled `label` (EC, Edwards or RSA), judged; nil when there is none.
    public static func find(label: String, in session: Session) throws -> ApprovalKeyPair? {
        let found = try session.findObjects([.class(.privateKey), .label(label)])
        switch found.count {
        case 0: return nil
        case 1: return try load(privateKey: found[0], in: session)
        default: throw TokenKeysError(.ambiguousKey, "\(found.count) private keys are labelled '\(label)'")
        }
    }

    /// The private key `handle` read as an approval key and judged (throws when it is not one).
    public static func load(privateKeyHandle handle: ObjectHandle, in session: Session) throws -> ApprovalKeyPair {
        try load(privateKey: handle, in: session)
    }

    static func load(privateKey: ObjectHandle, in session: Session) throws -> ApprovalKeyPair {
        let token = try session.slot.tokenInfo()
        let privateAttributes = try session.attributes(KeyPolicy.privateKeyAttributesToRead + [.label, .id], of: privateKey)
        let label = privateAttributes[.label]?.attribute.flatMap { if case .label(let value) = $0 { return value } else { return nil } } ?? ""
        let id = privateAttributes[.id]?.attribute?.bytesValue ?? []
        let publicTemplate: [Attribute] = id.isEmpty ? [.class(.publicKey), .label(label)] : [.class(.publicKey), .id(id)]
        guard let publicObject = try session.findObjects(publicTemplate).first else {
            throw TokenKeysError(.notAnRSAKey, "approval key '\(label)' has no public key object")
        }
        let (type, spki) = try publicKey(of: publicObject, privateAttributes: privateAttributes, label: label, in: session)
        var allowedMechanisms: [MechanismType] = []
        if case .rsaPSS = type {
            // An API key is RSA too: only a key the token limits to RSA-PSS is an approval key.
            let pss = Set(mechanisms(for: type).sign)
            guard case .value(.allowedMechanisms(let allowed))? = privateAttributes[.allowedMechanisms], !allowed.isEmpty,
                  allowed.allSatisfy(pss.contains) else {
                let shown = privateAttributes[.allowedMechanisms].map { reading -> String in
                    if case .value(.allowedMechanisms(let allowed)) = reading { return allowed.isEmpty ? "empty: any mechanism" : allowed.map(\.name).joined(separator: ", ") }
                    return "not set"
                } ?? "not set"
                throw TokenKeysError(.policyViolation, "key '\(label)' is an RSA key the token does not limit to RSA-PSS (CKA_ALLOWED_MECHANISMS \(shown)), so it is not an approval key: an API key, or an RSA key made otherwise; RSA approval keys are generated limited to RSA-PSS")
            }
            allowedMechanisms = allowed
        }
        let publicAttributes = try session.attributes(KeyPolicy.publicKeyAttributesToRead, of: publicObject)
        let modulusBits: UInt? = if case .rsaPSS(let bits) = type { bits } else { nil }
        return ApprovalKeyPair(
            label: label, id: id, type: type, privateKey: privateKey, subjectPublicKeyInfoDER: spki,
            provenance: KeyProvenance(privateKeyAttributes: privateAttributes, publicKeyAttributes: publicAttributes,
                                      verdict: policy(for: type).evaluate(privateKey: privateAttributes, modulusBits: modulusBits)),
            token: token, allowedMechanisms: allowedMechanisms)
    }

    private static func publicKey(of object: ObjectHandle, privateAttributes: [AttributeType: AttributeReading], label: String,
                                  in session: Session) throws -> (ApprovalKeyType, [UInt8]) {
        guard case .value(.keyType(let keyType))? = privateAttributes[.keyType] else {
            throw TokenKeysError(.notAnRSAKey, "approval key '\(label)' has no readable CKA_KEY_TYPE")
        }
        switch keyType {
        case .rsa:
            let read = try session.attributes([.modulus, .publicExponent], of: object)
            guard let modulus = read[.modulus]?.attribute?.bytesValue, let exponent = read[.publicExponent]?.attribute?.bytesValue else {
                throw TokenKeysError(.notAnRSAKey, "approval key '\(label)' has no readable modulus and exponent")
            }
            let key = try TokenRSAPublicKey(modulus: modulus, publicExponent: exponent)
            return (.rsaPSS(bits: UInt(key.bits)), key.subjectPublicKeyInfoDER)
        case .ec, .ecEdwards:
            let read = try session.attributes([.ecParams, .ecPoint], of: object)
            guard let parameters = read[.ecParams]?.attribute?.bytesValue, let point = read[.ecPoint]?.attribute?.bytesValue else {
                throw TokenKeysError(.notAnRSAKey, "approval key '\(label)' has no readable CKA_EC_PARAMS and CKA_EC_POINT")
            }
            // CKA_EC_POINT: a DER OCTET STRING around the point (PKCS#11 2.40), or the bare point.
            let inner = (try? ASN1OctetString(derEncoded: point[...])).map { Array($0.bytes) }
            if keyType == .ec, parameters == ECKeys.p256Parameters,
               let key = (try? P256.Signing.PublicKey(x963Representation: inner ?? point)) ?? (try? P256.Signing.PublicKey(x963Representation: point)) {
                return (.ecP256, Array(key.derRepresentation))
            }
            if keyType == .ec, parameters == p384Parameters,
               let key = (try? P384.Signing.PublicKey(x963Representation: inner ?? point)) ?? (try? P384.Signing.PublicKey(x963Representation: point)) {
                return (.ecP384, Array(key.derRepresentation))
            }
            if keyType == .ecEdwards, parameters == ed25519Parameters || parameters == Array("\u{13}\u{0C}edwards25519".utf8),
               let key = (try? Curve25519.Signing.PublicKey(rawRepresentation: inner ?? point)) ?? (try? Curve25519.Signing.PublicKey(rawRepresentation: point)) {
                var serializer = DER.Serializer()
                try serializer.serialize(Certificate.PublicKey(key))
                return (.ed25519, serializer.serializedBytes)
            }
            throw TokenKeysError(.policyViolation, "key '\(label)' is on a curve approval keys do not use (P-256, P-384, Ed25519)")
        default:
            throw TokenKeysError(.notAnRSAKey, "key '\(label)' is a \(keyType) key, not an approval key (EC, EC_EDWARDS or RSA)")
        }
    }

    /// Signs the exact bytes of `message` with the approval key on the token: ECDSA P-256 over
    /// SHA-256 and P-384 over SHA-384 (DER), RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) and
    /// Ed25519 over the message. A key that fails the policy is refused; each signature is
    /// checked with the public key before it is returned.
    /// - Parameter session: a session with the user logged in.
    public static func sign(_ message: [UInt8], with key: ApprovalKeyPair, in session: Session) throws -> [UInt8] {
        if case .failsToMeetPolicy(let failures) = key.provenance.verdict {
            throw TokenKeysError(.policyViolation, "approval key '\(key.label)' fails the key policy and is not used: \(failures.map(\.description).joined(separator: "; "))")
        }
        let publicKey = try Certificate.PublicKey(derEncoded: key.subjectPublicKeyInfoDER)
        switch key.type {
        case .ecP256:
            let digest = SHA256.hash(data: message)
            let raw = try session.sign(mechanism: .ecdsa, key: key.privateKey, data: Array(digest), expectedLength: 64)
            guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: raw), let verifier = P256.Signing.PublicKey(publicKey),
                  verifier.isValidSignature(signature, for: digest) else {
                throw TokenKeysError(.signatureCheckFailed, "the token's ECDSA P-256 signature does not verify with the key's public point")
            }
            return Array(signature.derRepresentation)
        case .ecP384:
            let digest = SHA384.hash(data: message)
            let raw = try session.sign(mechanism: .ecdsa, key: key.privateKey, data: Array(digest), expectedLength: 96)
            guard let signature = try? P384.Signing.ECDSASignature(rawRepresentation: raw), let verifier = P384.Signing.PublicKey(publicKey),
                  verifier.isValidSignature(signature, for: digest) else {
                throw TokenKeysError(.signatureCheckFailed, "the token's ECDSA P-384 signature does not verify with the key's public point")
            }
            return Array(signature.derRepresentation)
        case .ed25519:
            let signature = try session.sign(mechanism: .eddsa, key: key.privateKey, data: message, expectedLength: 64)
            guard let verifier = Curve25519.Signing.PublicKey(publicKey), verifier.isValidSignature(signature, for: message) else {
                throw TokenKeysError(.signatureCheckFailed, "the token's Ed25519 signature does not verify with the key's public key")
            }
            return signature
        case .rsaPSS(let bits):
            let parameter = MechanismParameter.rsaPSS(hash: .sha256, maskGeneration: .mgf1SHA256, saltLength: 32)
            // A mechanism both the token offers and the key allows.
            let offered = try session.slot.mechanisms()
            let usable = Set(key.allowedMechanisms).intersection(offered)
            guard !usable.isEmpty else {
                throw TokenKeysError(.mechanismUnsupported, "approval key '\(key.label)' may sign only with \(key.allowedMechanisms.map(\.name).joined(separator: ", ")), which the token does not offer")
            }
            let length = Int(bits / 8)
            let signature = usable.contains(.sha256RSAPKCSPSS)
                ? try session.sign(mechanism: .sha256RSAPKCSPSS, parameter: parameter, key: key.privateKey, data: message, expectedLength: length)
                : try session.sign(mechanism: .rsaPKCSPSS, parameter: parameter, key: key.privateKey, data: Array(SHA256.hash(data: message)),
                                   expectedLength: length)
            guard let verifier = _RSA.Signing.PublicKey(publicKey),
                  verifier.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: message, padding: .PSS) else {
                throw TokenKeysError(.signatureCheckFailed, "the token's RSA-PSS signature does not verify with the key's public key")
            }
            return signature
        }
    }
}
