import AsyncHTTPClient
import Foundation
import NIOCore
import PolicyLimits
import ProxySettings
import SigningProxy
import SQLiteNIO
import Testing
import TransactionPolicy

/// The proxy reads what it signs: a policy denial signs nothing, forwards nothing and is
/// audited; window limits hold under concurrency and are released when the upstream refuses.
@Suite("Signing proxy: policy before signature")
struct ProxyPolicyTests {
    static let policy = """
    version: 1
    default:
      routes: [POST /v1/transactions, GET /v1/vault/*]
      transactions:
        - name: usdc-payouts
          assets: [USDC]
          maxAmount: "100"
          window: { period: 24h, maxTotal: "1000" }
          destinationTypes: [EXTERNAL_WALLET, VAULT_ACCOUNT]
          externalTxId: required

    """

    static func transaction(_ amount: String, asset: String = "USDC", destination: String = #"{"type":"EXTERNAL_WALLET","id":"w-1"}"#,
                            externalTxId: String? = UUID().uuidString) -> [UInt8] {
        let external = externalTxId.map { #","externalTxId":"\#($0)""# } ?? ""
        return Array(#"{"assetId":"\#(asset)","amount":"\#(amount)","source":{"type":"VAULT_ACCOUNT","id":"0"},"destination":\#(destination)\#(external)}"#.utf8)
    }

    func start(_ fixture: SigningProxyTests.Fixture) async throws -> PolicyGate {
        let path = fixture.directory.appendingPathComponent("policy.yaml").path
        try Self.policy.write(toFile: path, atomically: true, encoding: .utf8)
        let gate = PolicyGate(file: try PolicyFile(path: path),
                              store: try await SQLiteLimitStore.open(path: fixture.directory.appendingPathComponent("limits.sqlite").path))
        try await fixture.start(rules: []) { $0.policy = gate }
        return gate
    }

    @Test func aDenialNamesTheRuleSignsNothingForwardsNothingAndIsAudited() async throws {
        let fixture = try SigningProxyTests.Fixture("policy-deny")
        let gate = try await start(fixture)
        let within = try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("99.99"))
        let denied = [
            (try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100.01")), "usdc-payouts", "maxAmount"),
            (try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("1", asset: "BTC")), "transactions", "asset"),
            (try await fixture.send(.POST, "/v1/transactions",
                                    body: Self.transaction("1", destination: #"{"type":"ONE_TIME_ADDRESS","oneTimeAddress":{"address":"0xabc"}}"#)),
             "usdc-payouts", "destinationType"),
            (try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("1", externalTxId: nil)), "usdc-payouts", "externalTxId"),
            (try await fixture.send(.DELETE, "/v1/vault/accounts/1"), "routes", "route"),
        ]
        await fixture.stop()
        await gate.close()

        #expect(within.status == 201)
        for (answer, rule, check) in denied {
            #expect(answer.status == 403)
            let document = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
            #expect(document["rule"] as? String == rule, "\(document)")
            #expect(document["check"] as? String == check, "\(document)")
        }
        #expect(fixture.upstream.requests.count == 1, "only the allowed request was forwarded")
        let records = try fixture.records()
        #expect(records.filter { $0["event"] as? String == "proxy.request" }.count == 1, "one request recorded and signed")
        let denials = records.filter { $0["event"] as? String == "proxy.denied" }
        #expect(denials.count == 5)
        let first = try #require(denials.first?["facts"] as? [String: Any])
        #expect(first["rule"] as? String == "usdc-payouts")
        #expect(first["check"] as? String == "maxAmount")
        #expect(first["amount"] as? String == "100.01")
        #expect(first["assetId"] as? String == "USDC")
        #expect(first["destinationId"] as? String == "w-1")
        #expect(first["policySHA256"] as? String == gate.file.sha256)
        #expect(first["body"] == nil && !String(describing: first).contains("\"source\""), "the facts, never the body")
        let started = try #require(records.first { $0["event"] as? String == "proxy.started" }?["facts"] as? [String: Any])
        #expect(started["policySHA256"] as? String == gate.file.sha256, "the policy in force is recorded at start")
    }

    @Test func fiftyConcurrentRequestsNeverPassTheWindow() async throws {
        let fixture = try SigningProxyTests.Fixture("policy-window")
        let gate = try await start(fixture)
        // 50 × 30.01 against 1000 a day: 33 fit (990.33). Fifty connections at once (not the
        // client's usual eight, where a loaded machine left requests waiting for one past
        // their timeout), and time enough for the token to sign them one after another.
        let port = fixture.port
        let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                configuration: .init(timeout: .init(connect: .seconds(120), read: .seconds(120)),
                                                     connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 50)))
        var statuses: [Int] = []
        var failure: (any Error)?
        do {
            statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/transactions")
                        request.method = .POST
                        request.body = .bytes(ByteBuffer(bytes: Self.transaction("30.01")))
                        return Int(try await client.execute(request, timeout: .seconds(300)).status.code)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
        } catch {
            failure = error
        }
        try? await client.shutdown()
        if let failure { throw failure }
        await fixture.stop()
        await gate.close()
        #expect(statuses.filter { $0 == 201 }.count == 33)
        #expect(statuses.filter { $0 == 403 }.count == 17)
        #expect(fixture.upstream.requests.count == 33)
    }

    @Test func aTransactionTheUpstreamRefusesIsReleased() async throws {
        let fixture = try SigningProxyTests.Fixture("policy-release")
        let gate = try await start(fixture)
        fixture.upstream.refusesCredentials.withLock { $0 = true }
        for _ in 0..<5 { #expect(try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100")).status == 401) }
        fixture.upstream.refusesCredentials.withLock { $0 = false }
        var statuses: [Int] = []
        for _ in 0..<11 { statuses.append(try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100")).status) }
        await fixture.stop()
        await gate.close()
        #expect(statuses.prefix(10).allSatisfy { $0 == 201 }, "the refused ones no longer count: \(statuses)")
        #expect(statuses.last == 403, "the window is then full")
    }

    /// The window's reservation is decided before the record and the signature and committed
    /// while they are made; a commit that fails (its insert refused by a trigger another
    /// connection put on the store's table) fails the request closed: 503, nothing forwarded,
    /// the signed JWT thrown away, the failure recorded, and the amount not counted.
    @Test func aReservationThatCannotBeCommittedForwardsNothing() async throws {
        let fixture = try SigningProxyTests.Fixture("policy-commit")
        let gate = try await start(fixture)
        let limits = fixture.directory.appendingPathComponent("limits.sqlite").path
        func onTheStore(_ sql: String) async throws {
            let connection = try await SQLiteConnection.open(storage: .file(path: limits))
            _ = try? await connection.query("PRAGMA busy_timeout = 10000")
            do {
                _ = try await connection.query(sql)
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        }
        let first = try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100"))
        try await onTheStore("CREATE TRIGGER refuse BEFORE INSERT ON window_reservations BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        let refused = try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100"))
        try await onTheStore("DROP TRIGGER refuse")
        var statuses: [Int] = []
        for _ in 0..<10 { statuses.append(try await fixture.send(.POST, "/v1/transactions", body: Self.transaction("100")).status) }
        await fixture.stop()
        await gate.close()

        #expect(first.status == 201)
        #expect(refused.status == 503)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("forwards nothing"))
        #expect(statuses.prefix(9).allSatisfy { $0 == 201 } && statuses.last == 403, "the refused amount does not count: \(statuses)")
        #expect(fixture.upstream.requests.count == 10, "the request whose reservation failed was not forwarded")
        let records = try fixture.records()
        #expect(records.filter { $0["event"] as? String == "proxy.request" }.count == 11, "recorded and signed, then thrown away")
        let failures = records.filter { $0["event"] as? String == "proxy.response" && String(describing: $0).contains("limit store") }
        #expect(failures.count == 1, "the failure is recorded")
    }

    @Test func aReloadThatFailsKeepsThePolicyInForce() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("policy-reload-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("policy.yaml").path
        try Self.policy.write(toFile: path, atomically: true, encoding: .utf8)
        let gate = PolicyGate(file: try PolicyFile(path: path),
                              store: try await SQLiteLimitStore.open(path: directory.appendingPathComponent("limits.sqlite").path))
        let before = gate.file.sha256
        try Self.policy.replacingOccurrences(of: "maxAmount: \"100\"", with: "maxAmount: 100.5").write(toFile: path, atomically: true, encoding: .utf8)
        guard case .failure(let error) = await gate.reload() else {
            Issue.record("a policy with a float amount was put in force")
            return
        }
        #expect(error.line == 7)
        #expect(gate.file.sha256 == before)
        try Self.policy.replacingOccurrences(of: "maxAmount: \"100\"", with: "maxAmount: \"200\"").write(toFile: path, atomically: true, encoding: .utf8)
        guard case .success(let fresh) = await gate.reload() else {
            Issue.record("a valid policy was refused")
            return
        }
        #expect(fresh.sha256 != before && gate.file.sha256 == fresh.sha256)
        #expect(gate.file.policy.client(named: nil)?.transactions?.first?.maximumAmount == ExactDecimal("200"))
        await gate.close()
    }
}
