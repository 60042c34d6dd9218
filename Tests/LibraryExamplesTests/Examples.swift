// The ```swift examples of docs/library.md, each verbatim (unindented, so that the text is the
// doc's byte for byte) in the body of a function whose parameters are what the example takes
// from its context; an example's `import` lines are this file's. They are compiled with the
// tests, and LibraryExamplesTests checks that every block of the doc is here: an example that no
// longer compiles fails the build, one edited in the doc but not here fails the test.
import AsyncHTTPTransport
import FireblocksAPI
import FireblocksHSM
import Foundation
import PKCS11
import TokenKeys

enum LibraryExamples {
    /// "Calling the Fireblocks API with a key on the token".
    static func callingTheAPI(apiKey: String) async throws {
// The module, the token and the key; the PIN from a secret file.
let module = try PKCS11Module.load(.path("/usr/lib/softhsm/libsofthsm2.so"))
let token = try TokenLocator.locate(.label("fb"), in: module)
let session = try token.slot.openSession(readWrite: false)
try TokenLogin.logIn(session, source: .file("/run/secrets/hsm-pin"), prompter: nil, warn: { print($0) })

// Checked once for use (policy: made on the token, sign-only, sensitive, private, never
// extractable; CKM_SHA256_RSA_PKCS offered), then a signer with a session of its own.
let pair = try KeyStore.findUsable(.label("trading-bot"), in: session)
let signer = try TokenSigner(key: try UsableKey(pair, slot: token.slot))

// Every request gets a fresh RS256 JWT signed on the token; the key never leaves it.
let issuer = try RequestTokenIssuer(apiKey: apiKey, signer: TokenJWTSigner(signer))
let client = FireblocksClient(baseURL: FireblocksEnvironment.sandbox.baseURL, issuer: issuer,
                              transport: AsyncHTTPClientTransport())
let (users, response) = try await client.listAPIUsers()
print(users.count, response.requestID ?? "-")
    }

    /// "Onboarding from code".
    static func onboarding(adminAPIKey: String, stateURL: URL, auditURL: URL) async throws {
let target = TokenTarget(module: .registeredName("softhsm2"), token: .label("fb"), key: nil,
                         pinSource: .environment("HSM_PIN"))
let api = APITarget(baseURL: FireblocksEnvironment.sandbox.baseURL, apiKey: adminAPIKey,
                    options: ClientOptions(), jwtLifetime: 55, stateDirectory: stateURL,
                    transport: AsyncHTTPClientTransport())
let request = OnboardRequest(
    keyLabel: "ci-bot", bits: 4096, subject: try CSRSubject(commonName: "ci-bot", organization: "Acme"),
    csrPath: "ci-bot.csr", overwriteCSR: false, name: "ci-bot", role: .SIGNER,
    coSignerSetupType: nil, coSignerSetupIsFirstUser: nil,
    submission: .init(adminKey: .label("admin"), api: api, idempotencyKey: nil))
let report = try await Onboarding.run(token: target, request: request, stateDirectory: stateURL,
                                      auditDirectory: auditURL, observer: SilentObserver())
print(report.submission?.userID ?? "not identified yet")
    }

    /// "Signing many requests: the session pool".
    static func signingThroughThePool(pair: TokenKeyPair, slot: Slot, apiKey: String) async throws {
let pool = try SigningPool(key: try UsableKey(pair, slot: slot), pinSource: .file("/run/secrets/hsm-pin"), size: 4)
let issuer = try RequestTokenIssuer(apiKey: apiKey, signer: PoolJWTSigner(pool))
let jwt = try await issuer.token(uri: "/v1/vault/accounts_paged", body: nil,
                                 issuedAt: Int(Date().timeIntervalSince1970), nonce: UUID().uuidString.lowercased())
print(pool.statistics)   // open sessions, signatures, waits, re-logins, reopened sessions
    }
}
