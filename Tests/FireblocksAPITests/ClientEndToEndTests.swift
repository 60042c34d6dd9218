import AsyncHTTPTransport
import APITestSupport
import FireblocksAPI
import FireblocksHSM
import FireblocksSandbox
import SoftHSMTestSupport
import Foundation
import Testing
import TokenKeys

/// The client against the stand-in over real HTTP on loopback, every JWT signed on SoftHSM.
@Suite("API client over loopback")
struct ClientEndToEndTests {
    private func withSandbox<R>(_ admin: TokenAdmin, role: APIUserRole = .ADMIN, _ configure: (inout SandboxConfiguration) -> Void = { _ in },
                                _ body: (RunningSandbox) async throws -> R) async throws -> R {
        var configuration = SandboxConfiguration(trusted: [try admin.trusted(role: role)])
        configure(&configuration)
        let sandbox = try await RunningSandbox.start(configuration)
        do {
            let result = try await body(sandbox)
            try await sandbox.stop()
            return result
        } catch {
            try? await sandbox.stop()
            throw error
        }
    }

    /// A port nobody listens on: the refusal is a network error the client's own policy retries,
    /// named as such. (That an attempt does not wait for a connect timeout is checked on the
    /// command line, in a process of its own: here a starved test task would make any timing
    /// meaningless.)
    @Test func aRefusedConnectionFailsEachAttemptAtOnce() async throws {
        let port = try LoopbackPort.closed()

        let lines = Lines()
        let client = FireblocksClient(baseURL: try APIBaseURL(validating: "http://127.0.0.1:\(port)/v1"),
                                      issuer: try RequestTokenIssuer(apiKey: UUID().uuidString.lowercased(), signer: try SoftwareSigner()),
                                      options: RunningSandbox.fastOptions(attempts: 3, timeout: 2),
                                      transport: AsyncHTTPClientTransport(), diagnostics: { lines.append($0) })
        do {
            _ = try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
            Issue.record("a request to a closed port succeeded")
        } catch let error as APIClientError {
            #expect(error.code == .network)
            #expect(error.reason.contains("connection refused"), "\(error.reason)")
        }
        #expect(lines.all.count == 2 && lines.all.allSatisfy { $0.contains("connection refused") }, "\(lines.all)")
        #expect(lines.all.last?.contains("attempt 3 of 3") == true, "\(lines.all)")

        // Nothing left this host, so a POST without an Idempotency-Key is sent again as well.
        let before = lines.all.count
        do {
            _ = try await client.send(APIRequest(method: "POST", path: "/v1/vault/accounts", body: Array("{}".utf8)))
            Issue.record("a request to a closed port succeeded")
        } catch let error as APIClientError {
            #expect(error.code == .network && error.notSent && error.reason.hasSuffix("(after 3 attempts)"), "\(error.reason)")
        }
        #expect(lines.all.count - before == 2, "\(lines.all)")
    }

    @Test func createsWithAndWithoutCoSignerFieldsAndLists() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let plain = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "ci-bot"))
            guard case .submitted(let requestID, _, let attempts) = try await client.createAPIUser(plain, store: sandbox.store, idempotencyKey: nil) else {
                Issue.record("expected a submission")
                return
            }
            #expect(requestID != nil)
            #expect(attempts == 1)
            let cosigner = try CreateAPIUser(role: .ADMIN, name: "cosigner-admin", csrPem: try admin.csr(label: "co"),
                                             coSignerSetupType: "SGX_MACHINE", coSignerSetupIsFirstUser: true)
            _ = try await client.createAPIUser(cosigner, store: sandbox.store, idempotencyKey: nil)

            let users = sandbox.service.snapshot.users
            #expect(users.map(\.name) == ["ci-bot", "cosigner-admin"])
            #expect(users[0].coSignerSetupType == nil && users[0].coSignerSetupIsFirstUser == nil)
            #expect(users[1].coSignerSetupType == "SGX_MACHINE" && users[1].coSignerSetupIsFirstUser == true)

            let (listed, response) = try await client.listAPIUsers()
            #expect(listed.map(\.name).contains("ci-bot"))
            #expect(listed.first { $0.name == "ci-bot" }?.status == "PENDING_ACTIVATION")
            #expect(response.requestID != nil)
        }
    }

    @Test func theSameIntentIsSentOnce() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let user = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "k"))
            let first = try await client.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
            let second = try await client.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
            guard case .alreadySubmitted(let record) = second else { Issue.record("sent twice"); return }
            #expect(record.idempotencyKey == first.idempotencyKey)
            #expect(sandbox.service.snapshot.users.count == 1)
            #expect(sandbox.service.snapshot.idempotency.map(\.key) == [first.idempotencyKey])
        }
    }

    @Test func theServerReplaysTheFirstAnswerForTheSameKey() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let user = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "k"))
            // Two machines with their own local records, one explicit key.
            let one = IdempotencyStore(fileURL: sandbox.stateDirectory.appendingPathComponent("one.json"))
            let two = IdempotencyStore(fileURL: sandbox.stateDirectory.appendingPathComponent("two.json"))
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let first = try await client.createAPIUser(user, store: one, idempotencyKey: "shared-key")
            let second = try await client.createAPIUser(user, store: two, idempotencyKey: "shared-key")
            #expect(first.requestID == second.requestID)
            #expect(sandbox.service.snapshot.users.count == 1)
        }
    }

    @Test func theSameKeyWithAnotherBodyIsRefusedBeforeSending() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let csr = try admin.csr(label: "k")
            _ = try await client.createAPIUser(try CreateAPIUser(role: .SIGNER, name: "a", csrPem: csr), store: sandbox.store, idempotencyKey: "key-1")
            await #expect(throws: APIClientError(.idempotencyConflict, "")) {
                try await client.createAPIUser(try CreateAPIUser(role: .SIGNER, name: "b", csrPem: csr), store: sandbox.store, idempotencyKey: "key-1")
            }
            #expect(sandbox.service.snapshot.users.map(\.name) == ["a"])
        }
    }

    @Test func retriesUnder503CreateExactlyOneUserWithFreshTokens() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.failFirst = 2 }) { sandbox in
            let lines = Lines()
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, diagnostics: lines)
            let user = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "k"))
            guard case .submitted(_, _, let attempts) = try await client.createAPIUser(user, store: sandbox.store, idempotencyKey: nil) else {
                Issue.record("expected a submission")
                return
            }
            // A reused nonce would have been refused (-7): each attempt carried a fresh JWT.
            #expect(attempts == 3)
            #expect(sandbox.service.snapshot.users.count == 1)
            #expect(lines.all.filter { $0.hasPrefix("HTTP 503") }.count == 2)
            #expect(lines.all.allSatisfy { $0.contains("X-Request-ID") })
        }
    }

    @Test func aLostAnswerIsRetriedWithTheSameKeyAndCreatesOneUser() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.loseResponseFirst = 1 }) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let user = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "k"))
            _ = try await client.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
            #expect(sandbox.service.snapshot.users.count == 1)
            #expect(try sandbox.store.records().map(\.state) == [.completed])
        }
    }

    @Test func aReRunAfterACrashReusesTheKeyAndBytes() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.loseResponseFirst = 1 }) { sandbox in
            let user = try CreateAPIUser(role: .SIGNER, name: "ci-bot", csrPem: try admin.csr(label: "k"))
            // First run: one attempt only, and the answer is lost (the process might as well have died).
            let once = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, options: RunningSandbox.fastOptions(attempts: 1))
            await #expect(throws: APIClientError.self) {
                try await once.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
            }
            let pending = try sandbox.store.records()
            #expect(pending.map(\.state) == [.pending])
            // Second run, a new process: same key and bytes; the API answers with the first result.
            let again = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let outcome = try await again.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
            #expect(outcome.idempotencyKey == pending[0].idempotencyKey)
            #expect(sandbox.service.snapshot.users.count == 1)
        }
    }

    @Test func aDroppedConnectionIsRetried() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.dropFirst = 1 }) { sandbox in
            let lines = Lines()
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, diagnostics: lines)
            let response = try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
            #expect(response.status == 200)
            #expect(response.attempts == 2)
            #expect(lines.all.first?.contains("retrying") == true)
        }
    }

    @Test func aPOSTWithoutIdempotencyKeyIsNotRetried() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.failFirst = 1 }) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            do {
                _ = try await client.send(APIRequest(method: "POST", path: "/v1/management/api_users", body: Array("{}".utf8)))
                Issue.record("expected 503")
            } catch let error as FireblocksAPIError {
                #expect(error.status == 503)
                #expect(error.attempts == 1)
            }
        }
    }

    @Test func rateLimitHonoursRetryAfter() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.rateLimitFirst = 1 }) { sandbox in
            let waits = Lines()
            var options = RunningSandbox.fastOptions()
            options.sleep = { waits.append(String($0)) }
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, options: options)
            #expect(try await client.send(APIRequest(method: "GET", path: "/v1/workspace")).status == 200)
            #expect(waits.all == ["1.0"])
        }
    }

    @Test(arguments: [
        (ServerFault.none, "/v1/nothing", 404, "NOT_FOUND"),
        (ServerFault.failAlways, "/v1/workspace", 503, "INTERNAL"),
        (ServerFault.rateLimitAlways, "/v1/workspace", 429, "RATE_LIMIT"),
    ])
    func errorAnswersCarryStatusTypeAndRequestID(fault: ServerFault, path: String, status: Int, type: String) async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { fault.apply(&$0) }) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            do {
                _ = try await client.send(APIRequest(method: "GET", path: path))
                Issue.record("expected HTTP \(status)")
            } catch let error as FireblocksAPIError {
                #expect(error.status == status)
                #expect(error.type == type)
                #expect(error.requestID != nil)
                #expect(error.description.contains("X-Request-ID: \(error.requestID!)"))
                #expect(error.attempts == (status == 404 ? 1 : 4))
            }
        }
    }

    @Test func unauthorisedAnswersCarryTheCodeAndAdvice() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let stranger = try sandbox.client(signer: admin.signer, apiKey: UUID().uuidString.lowercased())
            do {
                _ = try await stranger.send(APIRequest(method: "GET", path: "/v1/workspace"))
                Issue.record("expected 401")
            } catch let error as FireblocksAPIError {
                #expect(error.status == 401)
                #expect(error.errorCode == -7)
                #expect(error.advice?.contains("wrong key for this API key") == true)
            }
        }
    }

    @Test func aSignerRoleGets403() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, role: .SIGNER) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            let user = try CreateAPIUser(role: .SIGNER, name: "x", csrPem: try admin.csr(label: "k"))
            do {
                _ = try await client.createAPIUser(user, store: sandbox.store, idempotencyKey: nil)
                Issue.record("expected 403")
            } catch let error as FireblocksAPIError {
                #expect(error.status == 403)
                #expect(error.type == "AUTHORIZATION")
                #expect(try sandbox.store.records().map(\.state) == [.rejected])
            }
        }
    }

    @Test func aBadRequestIs400WithTheMessage() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            do {
                _ = try await client.send(APIRequest(method: "POST", path: "/v1/management/api_users",
                                                     body: Array(#"{"role":"SIGNER","name":"x","csrPem":"nope"}"#.utf8), idempotencyKey: "k"))
                Issue.record("expected 400")
            } catch let error as FireblocksAPIError {
                #expect(error.status == 400)
                #expect(error.type == "VALIDATION")
                #expect(error.message?.contains("csrPem") == true)
            }
        }
    }

    @Test func pairingTwiceIs409() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey)
            _ = try await client.createAPIUser(try CreateAPIUser(role: .SIGNER, name: "p", csrPem: try admin.csr(label: "k")),
                                               store: sandbox.store, idempotencyKey: nil)
            let id = try #require(sandbox.service.snapshot.users.first?.id)
            let path = "/v1/management/api_users/\(id)/pairing_token"
            #expect(try await client.send(APIRequest(method: "POST", path: path, idempotencyKey: "p1")).status == 201)
            await #expect(throws: FireblocksAPIError.self) {
                try await client.send(APIRequest(method: "POST", path: path, idempotencyKey: "p2"))
            }
        }
    }

    @Test func clockSkewIsWarnedAboutAndCompensated() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.clockOffset = 120 }) { sandbox in
            let lines = Lines()
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, diagnostics: lines)
            let started = Date()
            let response = try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
            let elapsed = Date().timeIntervalSince(started)
            #expect(response.status == 200)
            #expect(response.attempts == 2)
            let warning = try #require(lines.all.first { $0.hasPrefix("warning: this host's clock runs behind the API's by ~") })
            // Date has whole seconds, and the local time is taken as the middle of the request:
            // off by up to a second plus half the round trip (seconds on a loaded machine).
            let bound = Int((1.5 + elapsed / 2).rounded(.up))
            #expect(abs(Self.seconds(in: warning) - 120) <= bound, "\(warning) (the request took \(elapsed) s)")
            // Once measured, later requests are right the first time.
            #expect(try await client.send(APIRequest(method: "GET", path: "/v1/workspace")).attempts == 1)
        }
    }

    @Test func withoutCompensationTheAdviceNamesTheSkew() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.clockOffset = -90 }) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, options: RunningSandbox.fastOptions(compensate: false))
            do {
                _ = try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
                Issue.record("expected -12")
            } catch let error as FireblocksAPIError {
                #expect(error.errorCode == -12)
                let advice = try #require(error.advice)
                #expect(advice.contains("runs ahead of Fireblocks by ~"))
                // Date has one-second resolution and a loaded machine adds latency: within a few seconds.
                #expect(abs(Self.seconds(in: advice) - 90) <= 3, "\(advice)")
            }
        }
    }

    /// The N of the first "~N s" in a message (the Date header has one-second resolution).
    static func seconds(in text: String) -> Int {
        guard let range = text.range(of: "~") else { return -1 }
        return Int(text[range.upperBound...].prefix { $0.isNumber }) ?? -1
    }

    @Test func aSlowAnswerTimesOut() async throws {
        let admin = try TokenAdmin()
        try await withSandbox(admin, { $0.delay = 3 }) { sandbox in
            let client = try sandbox.client(signer: admin.signer, apiKey: admin.apiKey, options: RunningSandbox.fastOptions(attempts: 1, timeout: 1))
            await #expect(throws: APIClientError(.timeout, "")) {
                try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
            }
        }
    }
}

enum ServerFault: Sendable, CustomTestStringConvertible {
    case none, failAlways, rateLimitAlways

    func apply(_ configuration: inout SandboxConfiguration) {
        switch self {
        case .none: break
        case .failAlways: configuration.failFirst = 100
        case .rateLimitAlways: configuration.rateLimitFirst = 100
        }
    }

    var testDescription: String { "\(self)" }
}
