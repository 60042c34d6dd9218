import Foundation
import PKCS11
import Synchronization
import SwiftASN1
import X509

/// Signs with a token key through one PKCS#11 session of its own.
///
/// The session is guarded by a lock, because PKCS#11 sessions must not run two operations at
/// once; for signatures in parallel, make one signer per task (each gets its own session).
public final class TokenSigner: Sendable {
    private let session: Mutex<Session>
    private let privateKey: ObjectHandle
    /// The key pair this signer uses.
    public let keyPair: TokenKeyPair
    /// The key's public half.
    public let publicKey: TokenRSAPublicKey

    /// Opens a session on the key's slot for this signer. The user must already be logged in
    /// (login state is per token and process, shared by all its sessions). Refuses a key that
    /// fails the policy.
    public init(keyPair: TokenKeyPair, slot: Slot) throws {
        try KeyStore.requireMeetsPolicy(keyPair)
        try TokenCapabilities.requireSigning(on: slot)
        guard let publicKey = keyPair.publicKey else {
            throw TokenKeysError(.notAnRSAKey, "key '\(keyPair.label)' has no readable RSA public key")
        }
        self.session = Mutex(try slot.openSession(readWrite: false))
        self.privateKey = keyPair.privateKey
        self.keyPair = keyPair
        self.publicKey = publicKey
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (`CKM_SHA256_RSA_PKCS`; JOSE `RS256`) over `message`;
    /// the token hashes.
    public func signRS256(_ message: some Collection<UInt8>) throws -> [UInt8] {
        let bytes = Array(message)
        return try session.withLock { session in
            try session.sign(mechanism: .sha256RSAPKCS, key: privateKey, data: bytes)
        }
    }
}

/// A token RSA key as a swift-certificates private key: CSRs (and certificates) built with it
/// are signed by `C_Sign` on the token.
public struct TokenPrivateKey: CustomPrivateKey {
    public let signer: TokenSigner

    public init(signer: TokenSigner) {
        self.signer = signer
    }

    public var publicKey: Certificate.PublicKey { signer.publicKey.certificatePublicKey }

    public var defaultSignatureAlgorithm: Certificate.SignatureAlgorithm { .sha256WithRSAEncryption }

    public var supportedSignatureAlgorithms: [Certificate.SignatureAlgorithm] { [.sha256WithRSAEncryption] }

    public func signSynchronously(bytes: some DataProtocol,
                                  signatureAlgorithm: Certificate.SignatureAlgorithm) throws -> Certificate.Signature {
        guard signatureAlgorithm == .sha256WithRSAEncryption else {
            throw TokenKeysError(.invalidArgument, "token keys sign with sha256WithRSAEncryption only, not \(signatureAlgorithm)")
        }
        let signature = try signer.signRS256(Array(bytes))
        return try Certificate.Signature(signatureAlgorithm: signatureAlgorithm,
                                         signatureBytes: ASN1BitString(bytes: signature[...]))
    }

    public static var defaultPEMDiscriminator: String { "PRIVATE KEY" }

    /// A token key has no serialisation: the private key never leaves the token.
    public func serialize(into coder: inout DER.Serializer) throws {
        throw TokenKeysError(.notExportable, "the private key lives on the token and cannot be serialised")
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.signer.publicKey == rhs.signer.publicKey
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(signer.publicKey)
    }
}
