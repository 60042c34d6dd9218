import APITestSupport
import FireblocksAPI
import Foundation
import JOSE
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys
import HexEncoding

/// Tokens signed on a SoftHSM token equal, byte for byte, what the official Python SDK
/// (`fireblocks` on PyPI, BearerTokenProvider) makes for the same key, time, nonce and request.
@Suite("JWT known answers from the official Python SDK")
struct JWTKnownAnswerTests {
    struct Fixture: Decodable {
        struct Key: Decodable { let n, e, d, p, q, dp, dq, qinv: String }
        struct Vector: Decodable { let method: String; let uri: String; let body: String?; let token: String }
        let apiKey: String
        let iat: Int
        let nonce: String
        let key: Key
        let vectors: [Vector]
    }

    static let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func fixture(_ data: Data? = nil) throws -> Fixture {
        let data = try data ?? Data(contentsOf: fixturesDirectory.appendingPathComponent("jwt-vectors.json"))
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    /// Imports the fixture's key into a fresh token (C_CreateObject) and returns a signer on it.
    static func importedSigner(_ key: Fixture.Key) throws -> SessionSigner {
        let token = try TestToken(labelPrefix: "kat")
        let session = try token.userSession()
        func bytes(_ text: String) -> [UInt8] { HexEncoding.bytes(fromHex: text)! }
        let handle = try session.createObject([
            .class(.privateKey), .keyType(.rsa), .token(false), .private(true), .sensitive(true), .sign(true),
            .modulus(bytes(key.n)), .publicExponent(bytes(key.e)), .bytes(.privateExponent, bytes(key.d)),
            .bytes(.prime1, bytes(key.p)), .bytes(.prime2, bytes(key.q)), .bytes(.exponent1, bytes(key.dp)),
            .bytes(.exponent2, bytes(key.dq)), .bytes(.coefficient, bytes(key.qinv)),
        ])
        return SessionSigner(session: session, key: handle)
    }

    @Test func tokensEqualTheSDKsByteForByte() throws {
        let fixture = try Self.fixture()
        let issuer = try RequestTokenIssuer(apiKey: fixture.apiKey, signer: try Self.importedSigner(fixture.key))
        #expect(fixture.vectors.count == 3)
        for vector in fixture.vectors {
            let body = vector.body.map { Array($0.utf8) }
            let token = try issuer.token(uri: vector.uri, body: body, issuedAt: fixture.iat, nonce: fixture.nonce)
            let ours = try #require(CompactJWS(compact: token))
            let theirs = try #require(CompactJWS(compact: vector.token))
            #expect(ours.header == theirs.header, "\(vector.method) \(vector.uri): header")
            #expect(String(decoding: ours.payload, as: UTF8.self) == String(decoding: theirs.payload, as: UTF8.self), "\(vector.method) \(vector.uri): payload")
            #expect(token == vector.token, "\(vector.method) \(vector.uri): whole token (RS256 is deterministic)")
        }
    }

    @Test func theSDKsSignatureVerifiesWithTheKey() throws {
        let fixture = try Self.fixture()
        let publicKey = try TokenRSAPublicKey(modulus: HexEncoding.bytes(fromHex: fixture.key.n)!, publicExponent: HexEncoding.bytes(fromHex: fixture.key.e)!)
        for vector in fixture.vectors {
            let jws = try #require(CompactJWS(compact: vector.token))
            #expect(publicKey.isValidRS256Signature(jws.signature, for: Array(jws.signingInput.utf8)))
        }
    }

    /// With FIREBLOCKS_PY_SDK pointing at a `pip install --target` of the SDK (ci/test does this
    /// when PyPI is reachable), the committed vectors are made again and must not have changed.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"] != nil))
    func theCommittedVectorsMatchTheSDKToday() throws {
        let sdk = ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"]!
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = sdk
        let result = try Subprocess.run("python3", [
            Self.fixturesDirectory.appendingPathComponent("make-jwt-vectors.py").path,
            Self.fixturesDirectory.appendingPathComponent("test-key.pem").path], environment: environment)
        #expect(result.status == 0, "\(result.standardError)")
        let fresh = try Self.fixture(result.standardOutputData)
        #expect(fresh.vectors.map(\.token) == (try Self.fixture()).vectors.map(\.token))
    }
}
