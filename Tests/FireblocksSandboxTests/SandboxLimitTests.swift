import APITestSupport
import FireblocksAPI
@testable import FireblocksSandbox
import Foundation
import JOSE
import Testing

/// Every collection that requests make grow is bounded, each as its purpose asks: users are
/// refused (never forgotten), completed transactions make room (in-flight ones are waited for),
/// idempotency answers are forgotten oldest first (and after a day), live nonces are never
/// forgotten (the request waits).
@Suite("Stand-in: bounded state")
struct SandboxLimitTests {
    let signer: SoftwareSigner
    let adminKey = "a1b2c3d4-0000-4000-8000-00000000000c"

    init() throws { signer = try SoftwareSigner() }

    private func service(_ configure: (inout SandboxConfiguration) -> Void) throws -> SandboxService {
        var configuration = SandboxConfiguration(trusted: [try TrustedAPIUser(apiKey: adminKey, role: .ADMIN, publicKeyPEM: signer.publicKeyPEM)])
        configure(&configuration)
        try configuration.validate()
        return try SandboxService(configuration: configuration)
    }

    private func call(_ service: SandboxService, _ method: String, _ target: String, body: String? = nil,
                      idempotencyKey: String? = nil) throws -> (status: Int, json: [String: Any], headers: [String: String]) {
        let bytes = Array((body ?? "").utf8)
        let now = Int(service.now().timeIntervalSince1970)
        let claims = RequestClaims(uri: target, nonce: UUID().uuidString, iat: now, exp: now + 55, sub: adminKey,
                                   bodyHash: RequestClaims.bodyHash(bytes))
        let jws = try CompactJWS.sign(header: CompactJWS.rs256JWTHeader, payload: try claims.serialized(), with: signer)
        var headers = ["X-API-Key": adminKey, "Authorization": "Bearer \(jws.compact)", "Content-Type": "application/json"]
        if let idempotencyKey { headers["Idempotency-Key"] = idempotencyKey }
        guard case .respond(let status, let answerHeaders, let answer) = service.handle(SandboxRequest(method: method, target: target, headers: headers, body: bytes)) else {
            Issue.record("the connection was dropped")
            return (0, [:], [:])
        }
        let json = answer.isEmpty ? [:] : ((try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any] ?? [:])
        return (status, json, Dictionary(answerHeaders, uniquingKeysWith: { first, _ in first }))
    }

    private func user(_ name: String) throws -> String {
        let object: [String: Any] = ["role": "SIGNER", "name": name, "csrPem": try SoftwareCSR.make(commonName: name)]
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    private func transfer(_ external: String) -> String {
        #"{"assetId":"BTC_TEST","amount":"0.001","source":{"type":"VAULT_ACCOUNT","id":"0"},"destination":{"type":"VAULT_ACCOUNT","id":"1"},"externalTxId":"\#(external)"}"#
    }

    private func message(_ json: [String: Any]) -> String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }

    @Test func theDefaultBoundsAreDocumented() throws {
        let limits = SandboxLimits()
        let bounds: [Int] = [limits.users, limits.transactions, limits.idempotencyAnswers, limits.nonces]
        #expect(bounds == [1_000, 5_000, 5_000, 100_000])
        let page = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/sandbox.md").path, encoding: .utf8)
        for bound in ["1,000 created API users", "5,000 transactions", "5,000 Idempotency-Keys", "100,000 nonces"] {
            #expect(page.contains(bound), "docs/sandbox.md does not say \(bound)")
        }
        var zero = SandboxConfiguration(trusted: [])
        zero.limits.nonces = 0
        #expect(throws: SandboxError.self) { try zero.validate() }
    }

    /// A user is never forgotten to make room: the creation is refused, and the refusal is not
    /// remembered under its Idempotency-Key (a retry once there is room goes through).
    @Test func usersAreRefusedAtTheBound() throws {
        let sandbox = try service { $0.limits.users = 2 }
        for name in ["first", "second"] { #expect(try call(sandbox, "POST", "/v1/management/api_users", body: try user(name)).status == 200) }
        let refused = try call(sandbox, "POST", "/v1/management/api_users", body: try user("third"), idempotencyKey: "third-key")
        #expect(refused.status == 409, "\(refused)")
        #expect((refused.json["error"] as? [String: Any])?["type"] as? String == "CONFLICT")
        #expect(message(refused.json).contains("at most 2 API users"), "\(refused.json)")
        #expect(sandbox.snapshot.users.map(\.name) == ["first", "second"])
        #expect(!sandbox.snapshot.idempotency.contains { $0.key == "third-key" })
    }

    /// Completed transactions make room, oldest first (the oldest then answers 404); while none
    /// has completed, a creation is refused with a Retry-After of one status step.
    @Test func completedTransactionsMakeRoomInFlightOnesAreWaitedFor() throws {
        let finishing = try service { $0.limits.transactions = 2; $0.transactionStep = 0 }
        var ids: [String] = []
        for number in 1...3 {
            let created = try call(finishing, "POST", "/v1/transactions", body: transfer("ext-\(number)"))
            #expect(created.status == 200, "\(created)")
            ids.append(try #require(created.json["id"] as? String))
        }
        #expect(finishing.snapshot.transactions?.map(\.id) == Array(ids.dropFirst()))
        #expect(try call(finishing, "GET", "/v1/transactions/\(ids[0])").status == 404)
        #expect(try call(finishing, "GET", "/v1/transactions/\(ids[2])").status == 200)

        let slow = try service { $0.limits.transactions = 2; $0.transactionStep = 600 }
        for number in 1...2 { #expect(try call(slow, "POST", "/v1/transactions", body: transfer("ext-\(number)")).status == 200) }
        let waiting = try call(slow, "POST", "/v1/transactions", body: transfer("ext-3"))
        #expect(waiting.status == 429 && waiting.headers["Retry-After"] == "600", "\(waiting)")
        #expect(message(waiting.json).contains("at most 2"), "\(waiting.json)")
        #expect(slow.snapshot.transactions?.count == 2)
    }

    /// Idempotency answers: the oldest is forgotten at the bound; any older than a day (the
    /// API's retention) goes first.
    @Test func idempotencyAnswersAreForgottenOldestFirstAndAfterADay() throws {
        let sandbox = try service { $0.limits.idempotencyAnswers = 2; $0.transactionStep = 0 }
        for number in 1...3 {
            #expect(try call(sandbox, "POST", "/v1/transactions", body: transfer("ext-\(number)"), idempotencyKey: "key-\(number)").status == 200)
        }
        #expect(sandbox.snapshot.idempotency.map(\.key) == ["POST /v1/transactions key-2", "POST /v1/transactions key-3"])
        let replay = try call(sandbox, "POST", "/v1/transactions", body: transfer("ext-3"), idempotencyKey: "key-3")
        #expect(replay.status == 200, "the newest are still replayed")

        var state = SandboxState.empty()
        let now = Date()
        func answer(_ key: String, age: TimeInterval) -> SandboxState.IdempotentAnswer {
            SandboxState.IdempotentAnswer(key: key, apiKey: "k", bodySHA256: "", status: 200, body: "", requestID: key,
                                          createdAt: now.addingTimeInterval(-age))
        }
        state.remember(answer("stale", age: IdempotencyStore.serverRetention + 1), limit: 10, now: now)
        state.remember(answer("fresh", age: 60), limit: 10, now: now)
        state.remember(answer("new", age: 0), limit: 10, now: now)
        #expect(state.idempotency.map(\.key) == ["fresh", "new"])
    }

    /// Live nonces are never forgotten (a replay would pass): at the bound the request is
    /// refused with 429 and a Retry-After until the oldest may be forgotten, and the refused
    /// request's nonce is not kept.
    @Test func liveNoncesAreKeptAndTheRequestWaits() throws {
        let sandbox = try service { $0.limits.nonces = 2 }
        #expect(try call(sandbox, "GET", "/v1/workspace").status == 200)
        #expect(try call(sandbox, "GET", "/v1/workspace").status == 200)
        let waiting = try call(sandbox, "GET", "/v1/workspace")
        #expect(waiting.status == 429, "\(waiting)")
        #expect((waiting.json["error"] as? [String: Any])?["type"] as? String == "RATE_LIMIT")
        let after = try #require(waiting.headers["Retry-After"].flatMap(Int.init))
        #expect((1...(55 + 120 + 1)).contains(after), "\(after)")
    }
}
