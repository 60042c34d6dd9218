import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import HexEncoding
import PKCS11
import SwiftASN1
import Synchronization

/// An EC P-256 key pair on a token (the audit key), as found and judged.
public struct ECKeyPair: Sendable {
    /// `CKA_LABEL`.
    public let label: String
    /// `CKA_ID`.
    public let id: [UInt8]
    /// The private key object.
    public let privateKey: ObjectHandle
    /// The public key, from `CKA_EC_POINT`.
    public let publicKey: P256.Signing.PublicKey
    /// What the token reports about the private key, and the verdict under ``KeyPolicy/auditKey``.
    public let provenance: KeyProvenance
    /// The token it lives on.
    public let token: TokenInfo

    /// DER SubjectPublicKeyInfo of the public key.
    public var subjectPublicKeyInfoDER: [UInt8] { Array(publicKey.derRepresentation) }
    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (what an auditor records).
    public var fingerprint: String { hex(SHA256.hash(data: subjectPublicKeyInfoDER)) }
}

/// EC P-256 keys made on the token under a policy, read back and proven like the RSA API keys:
/// the audit trail's signing key.
public enum ECKeys {
    /// DER of the OID of prime256v1 (secp256r1), the `CKA_EC_PARAMS` of a P-256 key.
    public static let p256Parameters: [UInt8] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]

    /// Generates a P-256 pair directly on the token (read-only, a random id), reads it back and
    /// judges it; a pair the token did not make as asked is destroyed.
    /// - Parameter session: a read-write session with the user logged in.
    public static func generate(label: String, in session: Session, policy: KeyPolicy = .auditKey) throws -> ECKeyPair {
        try KeyLabel.validateNew(label)
        try KeyStore.requireUnused(label: label, id: nil, in: session)
        let mechanisms = try session.slot.mechanisms()
        guard mechanisms.contains(.ecKeyPairGen), mechanisms.contains(.ecdsa) else {
            throw TokenKeysError(.mechanismUnsupported, "the token does not offer CKM_EC_KEY_PAIR_GEN and CKM_ECDSA, which the audit key needs")
        }
        var generator = SystemRandomNumberGenerator()
        let id = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let handles = try session.generateKeyPair(
            mechanism: .ecKeyPairGen,
            publicKeyTemplate: [
                .class(.publicKey), .keyType(.ec), .token(true), .private(false), .modifiable(false),
                .verify(true), .encrypt(false), .wrap(false), .derive(false), .ecParams(p256Parameters),
                .label(label), .id(id),
            ],
            privateKeyTemplate: [
                .class(.privateKey), .keyType(.ec), .token(true), .private(true), .modifiable(false),
                .sensitive(true), .extractable(false), .sign(true), .signRecover(false), .decrypt(false),
                .unwrap(false), .derive(false), .label(label), .id(id),
            ])
        do {
            let pair = try load(privateKey: handles.privateKey, in: session, policy: policy)
            if case .failsToMeetPolicy(let failures) = pair.provenance.verdict {
                throw TokenKeysError(.policyViolation, "the token did not honour the audit key policy (\(failures.map(\.description).joined(separator: "; "))); the key pair was destroyed")
            }
            return pair
        } catch {
            try? session.destroyObject(handles.privateKey)
            try? session.destroyObject(handles.publicKey)
            throw error
        }
    }

    /// The EC private key labelled `label`, judged; nil when there is none.
    public static func find(label: String, in session: Session, policy: KeyPolicy = .auditKey) throws -> ECKeyPair? {
        let found = try session.findObjects([.class(.privateKey), .keyType(.ec), .label(label)])
        switch found.count {
        case 0: return nil
        case 1: return try load(privateKey: found[0], in: session, policy: policy)
        default: throw TokenKeysError(.ambiguousKey, "\(found.count) EC private keys are labelled '\(label)'")
        }
    }

    static func load(privateKey: ObjectHandle, in session: Session, policy: KeyPolicy) throws -> ECKeyPair {
        let token = try session.slot.tokenInfo()
        let privateAttributes = try session.attributes(KeyPolicy.privateKeyAttributesToRead + [.label, .id, .ecParams], of: privateKey)
        let label = privateAttributes[.label]?.attribute.flatMap { if case .label(let value) = $0 { return value } else { return nil } } ?? ""
        let id = privateAttributes[.id]?.attribute?.bytesValue ?? []
        guard privateAttributes[.ecParams]?.attribute?.bytesValue == p256Parameters else {
            throw TokenKeysError(.policyViolation, "EC key '\(label)' is not on P-256 (CKA_EC_PARAMS)")
        }
        let publicTemplate: [Attribute] = id.isEmpty ? [.class(.publicKey), .label(label)] : [.class(.publicKey), .id(id)]
        guard let publicObject = try session.findObjects(publicTemplate).first,
              let encodedPoint = try session.attributes([.ecPoint], of: publicObject)[.ecPoint]?.attribute?.bytesValue,
              let publicKey = publicKey(fromECPoint: encodedPoint) else {
            throw TokenKeysError(.notAnRSAKey, "EC key '\(label)' has no readable public point (CKA_EC_POINT)")
        }
        let publicAttributes = try session.attributes(KeyPolicy.publicKeyAttributesToRead, of: publicObject)
        return ECKeyPair(
            label: label, id: id, privateKey: privateKey, publicKey: publicKey,
            provenance: KeyProvenance(privateKeyAttributes: privateAttributes, publicKeyAttributes: publicAttributes,
                                      verdict: policy.evaluate(privateKey: privateAttributes, modulusBits: nil)),
            token: token)
    }

    /// The public key from `CKA_EC_POINT`: a DER OCTET STRING around the uncompressed X9.62
    /// point (PKCS#11 v2.40), or the bare point as some modules give it.
    static func publicKey(fromECPoint value: [UInt8]) -> P256.Signing.PublicKey? {
        if let octets = try? ASN1OctetString(derEncoded: value[...]),
           let key = try? P256.Signing.PublicKey(x963Representation: Array(octets.bytes)) {
            return key
        }
        return try? P256.Signing.PublicKey(x963Representation: value)
    }
}

/// Signs with a checked EC P-256 key (`CKM_ECDSA` over a SHA-256 digest) through one session of
/// its own; returns ASN.1 DER signatures, as C2SP signed notes and DSSE with ECDSA expect.
public final class ECSigner: Sendable {
    private let session: Mutex<Session>
    /// The key this signer uses.
    public let key: ECKeyPair

    /// Refuses a key that fails ``KeyPolicy/auditKey``; opens a session on `slot` (the user
    /// must be logged in).
    public init(key: ECKeyPair, slot: Slot) throws {
        if case .failsToMeetPolicy(let failures) = key.provenance.verdict {
            throw TokenKeysError(.policyViolation, "key '\(key.label)' fails the audit key policy and is not used: \(failures.map(\.description).joined(separator: "; "))")
        }
        session = Mutex(try slot.openSession(readWrite: false))
        self.key = key
    }

    /// ECDSA P-256 with SHA-256 over `message` (hashed here, signed on the token), DER encoded.
    public func sign(_ message: some DataProtocol) throws -> [UInt8] {
        let digest = Array(SHA256.hash(data: message))
        let privateKey = key.privateKey
        let raw = try session.withLock { try $0.sign(mechanism: .ecdsa, key: privateKey, data: digest, expectedLength: 64) }
        guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: raw) else {
            throw TokenKeysError(.signatureCheckFailed, "the token's ECDSA signature is not 64 bytes of r ‖ s")
        }
        guard key.publicKey.isValidSignature(signature, for: SHA256.hash(data: message)) else {
            throw TokenKeysError(.signatureCheckFailed, "the token's ECDSA signature does not verify with the key's public point")
        }
        return Array(signature.derRepresentation)
    }
}
