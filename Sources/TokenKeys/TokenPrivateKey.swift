import Dispatch
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import Synchronization
import SwiftASN1
import X509

/// Signs with a ``UsableKey`` through one PKCS#11 session of its own.
///
/// The session is guarded by a lock, because PKCS#11 sessions must not run two operations at
/// once; for signatures in parallel, make one signer per task (each gets its own session). The
/// asynchronous form runs `C_Sign` — which blocks for as long as the token takes — on a thread
/// of its own rather than on Swift's cooperative thread pool.
public final class TokenSigner: Sendable {
    private let session: Mutex<Session>
    /// The key this signer uses, as checked.
    public let key: UsableKey

    /// The key pair this signer uses.
    public var keyPair: TokenKeyPair { key.keyPair }
    /// The key's public half.
    public var publicKey: TokenRSAPublicKey { key.publicKey }

    /// Opens a session on the key's slot. The user must already be logged in (login state is
    /// per token and process, shared by all its sessions).
    public init(key: UsableKey) throws {
        self.session = Mutex(try key.slot.openSession(readWrite: false))
        self.key = key
    }

    /// Checks the key (``UsableKey``) and opens a session for it.
    public convenience init(keyPair: TokenKeyPair, slot: Slot) throws {
        try self.init(key: try UsableKey(keyPair, slot: slot))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (`CKM_SHA256_RSA_PKCS`; JOSE `RS256`) over `message`;
    /// the token hashes.
    public func signRS256(_ message: some Collection<UInt8>) throws -> [UInt8] {
        let bytes = Array(message)
        let privateKey = key.keyPair.privateKey
        // One C_Sign into a buffer of the modulus's size (the length query only if the module
        // asks for more).
        let expectedLength = (key.publicKey.bits + 7) / 8
        return try session.withLock { session in
            try session.sign(mechanism: .sha256RSAPKCS, key: privateKey, data: bytes, expectedLength: expectedLength)
        }
    }

    /// The same signature without blocking the caller's executor: `C_Sign` runs on a Dispatch
    /// thread, outside Swift's cooperative pool (a slow token must not stall other tasks).
    public func signRS256(_ message: some Collection<UInt8> & Sendable) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(with: Result { try self.signRS256(message) })
            }
        }
    }
}

/// A token RSA key as a swift-certificates private key: CSRs (and certificates) built with it
/// are signed by `C_Sign` on the token.
public struct TokenPrivateKey: CustomPrivateKey {
    /// The signer.
    public let signer: TokenSigner

    /// Creates the value from its parts.
    public init(signer: TokenSigner) {
        self.signer = signer
    }

    /// The public key.
    public var publicKey: Certificate.PublicKey { signer.publicKey.certificatePublicKey }

    /// The default signature algorithm.
    public var defaultSignatureAlgorithm: Certificate.SignatureAlgorithm { .sha256WithRSAEncryption }

    /// The supported signature algorithms.
    public var supportedSignatureAlgorithms: [Certificate.SignatureAlgorithm] { [.sha256WithRSAEncryption] }

    /// Signs on the token; only `sha256WithRSAEncryption` is offered.
    public func signSynchronously(bytes: some DataProtocol,
                                  signatureAlgorithm: Certificate.SignatureAlgorithm) throws -> Certificate.Signature {
        guard signatureAlgorithm == .sha256WithRSAEncryption else {
            throw TokenKeysError(.invalidArgument, "token keys sign with sha256WithRSAEncryption only, not \(signatureAlgorithm)")
        }
        let signature = try signer.signRS256(Array(bytes))
        return try Certificate.Signature(signatureAlgorithm: signatureAlgorithm,
                                         signatureBytes: ASN1BitString(bytes: signature[...]))
    }

    /// The default PEM discriminator.
    public static var defaultPEMDiscriminator: String { "PRIVATE KEY" }

    /// A token key has no serialisation: the private key never leaves the token.
    public func serialize(into coder: inout DER.Serializer) throws {
        throw TokenKeysError(.notExportable, "the private key lives on the token and cannot be serialised")
    }

    /// Equal by value.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.signer.publicKey == rhs.signer.publicKey
    }

    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(signer.publicKey)
    }
}
