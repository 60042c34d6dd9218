import _CryptoExtras
import AsyncHTTPTransport
import Crypto
import FireblocksAPI
import FireblocksHSM
import FireblocksSandbox
import Foundation
import JOSE
import PKCS11
import SoftHSMTestSupport
import Synchronization
import TokenKeys
import X509

/// A software RS256 key, for tokens the tests forge on purpose (wrong in one way each).
public struct SoftwareSigner: RS256Signer {
    public let key: _RSA.Signing.PrivateKey

    public init() throws { key = try _RSA.Signing.PrivateKey(keySize: .bits2048) }

    public func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        Array(try key.signature(for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5).rawRepresentation)
    }

    public var publicKeyPEM: String { key.publicKey.pemRepresentation }
}

/// Signs with a raw session of a test token (for keys the policy rightly refuses, such as the
/// imported known-answer key).
public final class SessionSigner: RS256Signer {
    private let session: Mutex<Session>
    private let key: ObjectHandle

    public init(session: consuming sending Session, key: ObjectHandle) {
        self.session = Mutex(session)
        self.key = key
    }

    public func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        try session.withLock { try $0.sign(mechanism: .sha256RSAPKCS, key: key, data: signingInput) }
    }
}

/// Collects diagnostics lines.
public final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    public var all: [String] { lines.withLock { $0 } }
    public func append(_ line: String) { lines.withLock { $0.append(line) } }
}

/// A SoftHSM token with an admin key (and a signer on it), and CSRs made on it.
public struct TokenAdmin {
    public let token: TestToken
    public let session: Session
    public let admin: TokenKeyPair
    public let signer: TokenJWTSigner
    public let apiKey = UUID().uuidString.lowercased()

    public init(label: String = "api") throws {
        token = try TestToken(labelPrefix: label)
        session = try token.userSession()
        admin = try KeyGenerator.generate(KeyGenerationRequest(label: "admin", bits: 2048), in: session)
        signer = TokenJWTSigner(try TokenSigner(keyPair: admin, slot: token.slot))
    }

    public var publicKeyPEM: String { admin.publicKey?.pem ?? "" }

    /// A new key on the token and its CSR, signed on the token.
    public func csr(label: String, organization: String = "Acme Corp") throws -> String {
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: label, bits: 2048), in: session)
        let csr = try CSRBuilder.makeCSR(subject: try CSRSubject(commonName: label, organization: organization),
                                         signingKey: TokenPrivateKey(signer: try TokenSigner(keyPair: pair, slot: token.slot)))
        return try csr.serializeAsPEM().pemString + "\n"
    }

    public func trusted(role: APIUserRole = .ADMIN) throws -> TrustedAPIUser {
        try TrustedAPIUser(apiKey: apiKey, role: role, publicKeyPEM: publicKeyPEM)
    }
}

/// The stand-in on a loopback port of its own, for one test.
public struct RunningSandbox {
    public let service: SandboxService
    public let server: SandboxServer
    public let stateDirectory: URL

    public static func start(_ configuration: SandboxConfiguration) async throws -> RunningSandbox {
        let service = try SandboxService(configuration: configuration)
        let server = try await SandboxServer.start(service: service, port: 0)
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("fbhsm-state-\(UUID().uuidString)")
        return RunningSandbox(service: service, server: server, stateDirectory: state)
    }

    public var baseURL: APIBaseURL {
        get throws { try APIBaseURL(validating: server.baseURL) }
    }

    public var store: IdempotencyStore { IdempotencyStore(fileURL: stateDirectory.appendingPathComponent("idempotency.json")) }

    public func client(signer: any RS256Signer, apiKey: String, options: ClientOptions = fastOptions(), diagnostics: Lines = Lines()) throws -> FireblocksClient {
        FireblocksClient(baseURL: try baseURL, issuer: try RequestTokenIssuer(apiKey: apiKey, signer: signer), options: options,
                         transport: AsyncHTTPClientTransport(), diagnostics: { diagnostics.append($0) })
    }

    public func stop() async throws {
        try await server.shutdown()
        try? FileManager.default.removeItem(at: stateDirectory)
    }

    public static func fastOptions(attempts: Int = 4, timeout: TimeInterval = 30, compensate: Bool = true) -> ClientOptions {
        ClientOptions(timeout: timeout, retryPolicy: RetryPolicy(maximumAttempts: attempts, initialDelay: 0.01, maximumDelay: 0.05),
                      compensateClockSkew: compensate, sleep: { try await Task.sleep(nanoseconds: UInt64(min($0, 0.05) * 1e9)) })
    }
}
