import APITestSupport
import FireblocksAPI
@testable import FireblocksSandbox
import Foundation
import JOSE
import Testing

/// The routes an SDK's smoke test calls: vault accounts (paged), creating a transaction and
/// reading it back while its status moves on, with Fireblocks' role rule and externalTxId rule.
@Suite("Stand-in vault accounts and transactions")
struct SandboxTransactionTests {
    let signer: SoftwareSigner
    let viewerSigner: SoftwareSigner
    let apiKey = "a1b2c3d4-0000-4000-8000-00000000000a"
    let viewerKey = "a1b2c3d4-0000-4000-8000-00000000000b"

    init() throws {
        signer = try SoftwareSigner()
        viewerSigner = try SoftwareSigner()
    }

    private func service(step: TimeInterval = 1) throws -> SandboxService {
        var configuration = SandboxConfiguration(trusted: [
            try TrustedAPIUser(apiKey: apiKey, role: .SIGNER, publicKeyPEM: signer.publicKeyPEM),
            try TrustedAPIUser(apiKey: viewerKey, role: .VIEWER, publicKeyPEM: viewerSigner.publicKeyPEM),
        ])
        configuration.transactionStep = step
        return try SandboxService(configuration: configuration)
    }

    private func call(_ service: SandboxService, _ method: String, _ target: String, body: String? = nil,
                      viewer: Bool = false, headers extra: [String: String] = [:]) throws -> (status: Int, json: [String: Any]) {
        let bytes = Array((body ?? "").utf8)
        let now = Int(service.now().timeIntervalSince1970)
        let key = viewer ? viewerKey : apiKey
        let claims = RequestClaims(uri: target, nonce: UUID().uuidString, iat: now, exp: now + 55, sub: key,
                                   bodyHash: RequestClaims.bodyHash(bytes))
        let jws = try CompactJWS.sign(header: CompactJWS.rs256JWTHeader, payload: try claims.serialized(),
                                      with: viewer ? viewerSigner : signer)
        var headers = ["X-API-Key": key, "Authorization": "Bearer \(jws.compact)"].merging(extra) { $1 }
        if body != nil { headers["Content-Type"] = "application/json" }
        guard case .respond(let status, _, let answer) = service.handle(SandboxRequest(method: method, target: target, headers: headers, body: bytes)) else {
            Issue.record("the connection was dropped")
            return (0, [:])
        }
        let json = answer.isEmpty ? [:] : (try JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any] ?? [:])
        return (status, json)
    }

    private let transfer = #"{"assetId":"BTC_TEST","amount":"0.001","source":{"type":"VAULT_ACCOUNT","id":"0"},"destination":{"type":"VAULT_ACCOUNT","id":"1"},"note":"smoke","externalTxId":"ext-1"}"#

    /// Queries no client would send are read as nothing, never a crash of the stand-in.
    @Test(arguments: ["?=", "?&=x&", "?==", "?limit=&=", "?%=1"])
    func oddQueriesAreHarmless(query: String) throws {
        let service = try service()
        let reply = try call(service, "GET", "/v1/vault/accounts_paged" + query)
        #expect(reply.status == 200 || reply.status == 400, "\(reply)")
    }

    /// A tiny step and a creation far in the past are clamped, not trapped on.
    @Test func aTinyStepIsClampedNotTrappedOn() throws {
        let service = try service(step: 1e-30)   // elapsed ÷ step is beyond any Int
        let created = try call(service, "POST", "/v1/transactions", body: transfer)
        #expect(created.status == 200, "\(created)")
        let id = try #require(created.json["id"] as? String)
        let read = try call(service, "GET", "/v1/transactions/\(id)")
        #expect(read.json["status"] as? String == "COMPLETED", "\(read)")
    }

    @Test func vaultAccountsArePagedWithStringAmounts() throws {
        let service = try service()
        let all = try call(service, "GET", "/v1/vault/accounts_paged")
        #expect(all.status == 200)
        let accounts = try #require(all.json["accounts"] as? [[String: Any]])
        #expect(accounts.map { $0["id"] as? String } == ["0", "1"])
        #expect(accounts[0]["hiddenOnUI"] as? Bool == false && accounts[1]["autoFuel"] as? Bool == true)
        let asset = try #require((accounts[0]["assets"] as? [[String: Any]])?.first)
        for field in ["id", "total", "available", "pending", "lockedAmount"] {
            #expect(asset[field] is String, "\(field) is a string in VaultAsset")
        }
        #expect(asset["total"] as? String == "1.5")
        #expect((all.json["paging"] as? [String: Any])?.isEmpty == true, "one page: no cursors")

        let first = try call(service, "GET", "/v1/vault/accounts_paged?limit=1")
        #expect((first.json["accounts"] as? [[String: Any]])?.map { $0["id"] as? String } == ["0"])
        let after = try #require((first.json["paging"] as? [String: Any])?["after"] as? String)
        let second = try call(service, "GET", "/v1/vault/accounts_paged?limit=1&after=\(after)")
        #expect((second.json["accounts"] as? [[String: Any]])?.map { $0["id"] as? String } == ["1"])
        #expect((second.json["paging"] as? [String: Any])?["after"] == nil)
        #expect((second.json["paging"] as? [String: Any])?["before"] as? String == "1")
        #expect(try call(service, "GET", "/v1/vault/accounts_paged?limit=0").status == 400)
        #expect(try call(service, "GET", "/v1/vault/accounts_paged", viewer: true).status == 200, "a viewer reads")
    }

    @Test func aTransactionIsCreatedReadAndMovesOnToCompleted() throws {
        let service = try service(step: 0.05)
        let created = try call(service, "POST", "/v1/transactions", body: transfer)
        #expect(created.status == 200, "\(created.json)")
        #expect(created.json["status"] as? String == "SUBMITTED")
        let id = try #require(created.json["id"] as? String)

        var seen: [String] = []
        let deadline = Date().addingTimeInterval(10)
        var last: [String: Any] = [:]
        while Date() < deadline {
            let read = try call(service, "GET", "/v1/transactions/\(id)")
            #expect(read.status == 200)
            last = read.json
            if let status = read.json["status"] as? String, seen.last != status { seen.append(status) }
            if seen.last == "COMPLETED" { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(seen.last == "COMPLETED", "\(seen)")
        let order = SandboxState.transactionStatuses
        #expect(seen.compactMap { order.firstIndex(of: $0) } == seen.compactMap { order.firstIndex(of: $0) }.sorted(), "never backwards: \(seen)")
        #expect(last["assetId"] as? String == "BTC_TEST" && last["note"] as? String == "smoke" && last["externalTxId"] as? String == "ext-1")
        #expect((last["source"] as? [String: Any])?["id"] as? String == "0")
        #expect((last["destination"] as? [String: Any])?["name"] as? String == "Treasury")
        #expect((last["amountInfo"] as? [String: Any])?["amount"] as? String == "0.001")
        let createdAt = try #require(last["createdAt"] as? Int)
        let updated = try #require(last["lastUpdated"] as? Int)
        #expect(createdAt > 1_600_000_000_000 && updated >= createdAt, "milliseconds since the epoch")
        #expect(last["txHash"] is String)
        #expect(try call(service, "GET", "/v1/transactions/\(UUID().uuidString.lowercased())").status == 404)
    }

    @Test func statusesFollowTheStandInsClock() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var state = SandboxState.empty()
        state.transactions = [SandboxState.Transaction(
            id: "t", externalTxId: nil, operation: "TRANSFER", assetId: "BTC_TEST", amount: "1",
            source: .init(type: "VAULT_ACCOUNT", id: "0", address: nil), destination: .init(type: "VAULT_ACCOUNT", id: "1", address: nil),
            destinations: nil, note: nil, createdBy: apiKey, createdAt: start, status: "SUBMITTED", lastUpdated: start)]
        let early = state.advanceTransactions(now: start.addingTimeInterval(9), step: 10)
        #expect(!early)
        let moved = state.advanceTransactions(now: start.addingTimeInterval(25), step: 10)
        #expect(moved)
        #expect(state.transactions?.first?.status == "QUEUED")
        #expect(state.transactions?.first?.lastUpdated == start.addingTimeInterval(20))
        let done = state.advanceTransactions(now: start.addingTimeInterval(3600), step: 10)
        #expect(done && state.transactions?.first?.status == "COMPLETED")
        let after = state.advanceTransactions(now: start.addingTimeInterval(7200), step: 10)
        #expect(!after)
    }

    @Test func aViewerMayNotCreateATransaction() throws {
        let service = try service()
        let refused = try call(service, "POST", "/v1/transactions", body: transfer, viewer: true)
        #expect(refused.status == 403)
        #expect((refused.json["error"] as? [String: Any])?["type"] as? String == "AUTHORIZATION")
        #expect(service.snapshot.transactions == nil)
    }

    @Test func aSecondTransactionWithTheSameExternalTxIdIsRefused() throws {
        let service = try service()
        let first = try call(service, "POST", "/v1/transactions", body: transfer)
        #expect(first.status == 200)
        let second = try call(service, "POST", "/v1/transactions", body: transfer)
        #expect(second.status == 400)
        let error = try #require(second.json["error"] as? [String: Any])
        #expect(error["type"] as? String == "VALIDATION" && (error["message"] as? String)?.contains("externalTxId") == true)
        #expect(service.snapshot.transactions?.count == 1)
        // The same Idempotency-Key and body replay the first answer instead.
        let body = transfer.replacingOccurrences(of: "ext-1", with: "ext-2")
        let keyed = try call(service, "POST", "/v1/transactions", body: body, headers: ["Idempotency-Key": "k-1"])
        let replay = try call(service, "POST", "/v1/transactions", body: body, headers: ["Idempotency-Key": "k-1"])
        #expect(keyed.status == 200 && replay.status == 200)
        #expect(keyed.json["id"] as? String == replay.json["id"] as? String)
        #expect(service.snapshot.transactions?.count == 2)
    }

    @Test(arguments: [
        (#""amount":0.1"#, "0.1"), (#""amount":"12.50""#, "12.50"), (#""amount":3"#, "3"),
    ])
    func amountsAreExactDecimals(field: String, expected: String) throws {
        let service = try service()
        let body = #"{"assetId":"ETH_TEST5",\#(field),"source":{"type":"VAULT_ACCOUNT","id":"0"},"destination":{"type":"ONE_TIME_ADDRESS","oneTimeAddress":{"address":"0xabc"}}}"#
        let created = try call(service, "POST", "/v1/transactions", body: body)
        #expect(created.status == 200, "\(created.json)")
        #expect(service.snapshot.transactions?.first?.amount == expected)
    }

    @Test(arguments: [
        #"{"assetId":"BTC_TEST","amount":true,"destination":{"type":"VAULT_ACCOUNT","id":"1"}}"#,
        #"{"assetId":"BTC_TEST","amount":"-1","destination":{"type":"VAULT_ACCOUNT","id":"1"}}"#,
        #"{"assetId":"BTC_TEST","amount":"0","destination":{"type":"VAULT_ACCOUNT","id":"1"}}"#,
        #"{"assetId":"BTC_TEST","amount":"1"}"#,
        #"{"amount":"1","destination":{"type":"VAULT_ACCOUNT","id":"1"}}"#,
        #"{"assetId":"DOGE","amount":"1","destination":{"type":"VAULT_ACCOUNT","id":"1"}}"#,
        #"{"assetId":"BTC_TEST","amount":"1","destination":{"type":"VAULT_ACCOUNT","id":"99"}}"#,
        #"{"assetId":"BTC_TEST","amount":"1","destination":{"type":"MOON","id":"1"}}"#,
        #"[1]"#,
    ])
    func badTransactionRequestsAreRefused(body: String) throws {
        let service = try service()
        let refused = try call(service, "POST", "/v1/transactions", body: body)
        #expect(refused.status == 400)
        #expect((refused.json["error"] as? [String: Any])?["type"] as? String == "VALIDATION")
        #expect(service.snapshot.transactions == nil)
    }
}
