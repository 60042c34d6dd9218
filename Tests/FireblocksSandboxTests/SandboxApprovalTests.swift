import _CryptoExtras
import APITestSupport
import Crypto
import FireblocksAPI
@testable import FireblocksSandbox
import Foundation
import JOSE
import Testing
import X509

/// The Approvals API of the stand-in: approval keys of the caller's own user, approval requests,
/// signatures over the exact `requestPayload` for every algorithm, expiry, quorum counting.
@Suite("Stand-in approvals")
struct SandboxApprovalTests {
    let signer: SoftwareSigner
    let otherSigner: SoftwareSigner
    let apiKey = "a1b2c3d4-0000-4000-8000-00000000000a"
    let otherKey = "a1b2c3d4-0000-4000-8000-00000000000c"

    init() throws {
        signer = try SoftwareSigner()
        otherSigner = try SoftwareSigner()
    }

    private func service(activeAtOnce: Bool = true, limit: Int? = nil) throws -> SandboxService {
        var configuration = SandboxConfiguration(trusted: [
            try TrustedAPIUser(apiKey: apiKey, role: .SIGNER, publicKeyPEM: signer.publicKeyPEM),
            try TrustedAPIUser(apiKey: otherKey, role: .APPROVER, publicKeyPEM: otherSigner.publicKeyPEM),
        ])
        configuration.approvalKeysActiveAtOnce = activeAtOnce
        if let limit { configuration.limits.approvals = limit }
        return try SandboxService(configuration: configuration)
    }

    @discardableResult
    private func call(_ service: SandboxService, _ method: String, _ target: String, body: String? = nil,
                      other: Bool = false) throws -> (status: Int, json: [String: Any]) {
        let bytes = Array((body ?? "").utf8)
        let now = Int(service.now().timeIntervalSince1970)
        let key = other ? otherKey : apiKey
        let claims = RequestClaims(uri: target, nonce: UUID().uuidString, iat: now, exp: now + 55, sub: key,
                                   bodyHash: RequestClaims.bodyHash(bytes))
        let jws = try CompactJWS.sign(header: CompactJWS.rs256JWTHeader, payload: try claims.serialized(), with: other ? otherSigner : signer)
        var headers = ["X-API-Key": key, "Authorization": "Bearer \(jws.compact)"]
        if body != nil { headers["Content-Type"] = "application/json" }
        guard case .respond(let status, _, let answer) = service.handle(SandboxRequest(method: method, target: target, headers: headers, body: bytes)) else {
            Issue.record("the connection was dropped")
            return (0, [:])
        }
        let json = answer.isEmpty ? [:] : (try JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any] ?? [:])
        return (status, json)
    }

    /// A software key of each algorithm: its PEM and how it signs.
    struct SoftwareApprovalKey {
        let algorithm: String
        let pem: String
        let sign: ([UInt8]) throws -> [UInt8]

        static func make(_ algorithm: ApprovalKeyAlgorithm) throws -> SoftwareApprovalKey {
            switch algorithm {
            case .ECDSA_SECP256R1:
                let key = P256.Signing.PrivateKey()
                return .init(algorithm: algorithm.rawValue, pem: key.publicKey.pemRepresentation) { Array(try key.signature(for: $0).derRepresentation) }
            case .ECDSA_SECP384R1:
                let key = P384.Signing.PrivateKey()
                return .init(algorithm: algorithm.rawValue, pem: key.publicKey.pemRepresentation) { Array(try key.signature(for: $0).derRepresentation) }
            case .EDDSA_ED25519:
                let key = Curve25519.Signing.PrivateKey()
                let pem = try Certificate.PublicKey(key.publicKey).serializeAsPEM().pemString
                return .init(algorithm: algorithm.rawValue, pem: pem) { Array(try key.signature(for: $0)) }
            case .RSA_PS256:
                let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
                return .init(algorithm: algorithm.rawValue, pem: key.publicKey.pemRepresentation) { Array(try key.signature(for: $0, padding: .PSS).rawRepresentation) }
            }
        }
    }

    private func register(_ service: SandboxService, _ key: SoftwareApprovalKey, name: String = "approver") throws -> (status: Int, json: [String: Any]) {
        let body = try JSONSerialization.data(withJSONObject: ["name": name, "approvalApiPublicKey": ["algorithm": key.algorithm, "publicKeyPem": key.pem]])
        return try call(service, "POST", "/v1/management/api_users/\(apiKey)/approval_keys", body: String(decoding: body, as: UTF8.self))
    }

    private func approve(_ service: SandboxService, _ id: String, signature: [UInt8], keyID: String? = nil, other: Bool = false) throws -> Int {
        var body: [String: Any] = ["signature": Base64URL.encode(signature)]
        if let keyID { body["keyId"] = keyID }
        let data = try JSONSerialization.data(withJSONObject: body)
        return try call(service, "POST", "/v1/approvals/\(id)/approve", body: String(decoding: data, as: UTF8.self), other: other).status
    }

    @Test(arguments: ApprovalKeyAlgorithm.allCases)
    func eachAlgorithmApprovesOverTheExactPayload(algorithm: ApprovalKeyAlgorithm) throws {
        let service = try service()
        let key = try SoftwareApprovalKey.make(algorithm)
        let registered = try register(service, key)
        #expect(registered.status == 200, "\(registered.json)")
        let keyID = try #require(registered.json["keyId"] as? String)
        #expect(registered.json["ccrIdPendingRegistration"] as? String == "")

        let data = "{ \"tagId\" :\"t-1\",\n  \"name\": \"hot\" }"
        let record = try #require(service.addApproval(type: "TAG_UPDATE", requestDataJSON: data, lifetime: 600))
        let listed = try call(service, "GET", "/v1/approvals")
        let items = try #require(listed.json["data"] as? [[String: Any]])
        let payload = try #require(items.first?["requestPayload"] as? String)
        #expect(payload == record.payload && payload.contains(data), "requestData is kept byte for byte")
        #expect(items.first?["userStatus"] as? String == "USER_NOT_APPROVED")

        // The same document re-serialized (sorted keys, no spaces) is other bytes: refused.
        let object = try JSONSerialization.jsonObject(with: Data(payload.utf8))
        let reserialized = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        #expect(Array(reserialized) != Array(payload.utf8))
        #expect(try approve(service, record.id, signature: try key.sign(Array(reserialized))) == 400)
        // Another key of the same algorithm: refused.
        #expect(try approve(service, record.id, signature: try SoftwareApprovalKey.make(algorithm).sign(Array(payload.utf8))) == 400)
        // The exact bytes: approved, and the one-approval quorum is met.
        #expect(try approve(service, record.id, signature: try key.sign(Array(payload.utf8)), keyID: keyID) == 204)
        let read = try call(service, "GET", "/v1/approvals/\(record.id)?quorumStatusMode=SUMMARY")
        let quorum = try #require(read.json["quorumStatus"] as? [String: Any])
        #expect(quorum["requestStatus"] as? String == "APPROVED")
        #expect((quorum["quorum"] as? [String: Any])?["currentApprovalCount"] as? Int == 1)
        #expect(try approve(service, record.id, signature: try key.sign(Array(payload.utf8))) == 409, "no longer pending")
        let keys = try call(service, "GET", "/v1/management/api_users/\(apiKey)/approval_keys")
        let listedKey = try #require((keys.json["data"] as? [[String: Any]])?.first)
        #expect(listedKey["status"] as? String == "APPROVAL_API_KEY_STATUS_ENABLED")
        #expect(listedKey["lastUsedAt"] as? String != "0", "its use is recorded")
    }

    @Test func expiredRequestsAreRefusedAndNotListed() throws {
        let service = try service()
        let key = try SoftwareApprovalKey.make(.ECDSA_SECP256R1)
        #expect(try register(service, key).status == 200)
        let record = try #require(service.addApproval(type: "TAG_DELETE", requestDataJSON: "{}", lifetime: 0))
        #expect((try call(service, "GET", "/v1/approvals").json["data"] as? [[String: Any]])?.isEmpty == true)
        #expect(try approve(service, record.id, signature: try key.sign(Array(record.payload.utf8))) == 400)
        let read = try call(service, "GET", "/v1/approvals/\(record.id)?quorumStatusMode=SUMMARY")
        #expect((read.json["quorumStatus"] as? [String: Any])?["requestStatus"] as? String == "TIMED_OUT")
    }

    @Test func aQuorumOfTwoNeedsTwoUsersAndARejectionEndsIt() throws {
        let service = try service()
        let mine = try SoftwareApprovalKey.make(.ECDSA_SECP256R1)
        let theirs = try SoftwareApprovalKey.make(.EDDSA_ED25519)
        #expect(try register(service, mine).status == 200)
        let body = try JSONSerialization.data(withJSONObject: ["name": "theirs", "approvalApiPublicKey": ["algorithm": theirs.algorithm, "publicKeyPem": theirs.pem]])
        #expect(try call(service, "POST", "/v1/management/api_users/\(otherKey)/approval_keys", body: String(decoding: body, as: UTF8.self), other: true).status == 200)
        #expect(try call(service, "POST", "/v1/management/api_users/\(otherKey)/approval_keys", body: String(decoding: body, as: UTF8.self)).status == 403,
                "only the caller's own user")

        let record = try #require(service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{\"a\":1}", lifetime: 600, threshold: 2))
        let payload = Array(record.payload.utf8)
        #expect(try approve(service, record.id, signature: try mine.sign(payload)) == 204)
        var read = try call(service, "GET", "/v1/approvals/\(record.id)?quorumStatusMode=SUMMARY")
        #expect((read.json["quorumStatus"] as? [String: Any])?["requestStatus"] as? String == "PENDING")
        #expect(read.json["userStatus"] as? String == "USER_APPROVED")
        #expect((try call(service, "GET", "/v1/approvals").json["data"] as? [[String: Any]])?.isEmpty == true, "approved by me: not listed by default")
        #expect((try call(service, "GET", "/v1/approvals?includeUserApproved=true").json["data"] as? [[String: Any]])?.count == 1)
        #expect(try approve(service, record.id, signature: try mine.sign(payload)) == 409, "one user counts once")
        #expect(try approve(service, record.id, signature: try mine.sign(payload), other: true) == 400, "my key is not theirs")
        #expect(try approve(service, record.id, signature: try theirs.sign(payload), other: true) == 204)
        read = try call(service, "GET", "/v1/approvals/\(record.id)?quorumStatusMode=SUMMARY")
        #expect((read.json["quorumStatus"] as? [String: Any])?["requestStatus"] as? String == "APPROVED")

        let second = try #require(service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{}", lifetime: 600, threshold: 2))
        #expect(try call(service, "POST", "/v1/approvals/\(second.id)/reject").status == 204)
        #expect(try approve(service, second.id, signature: try theirs.sign(Array(second.payload.utf8)), other: true) == 409)
    }

    @Test func pendingRegistrationAndTheLastKeysDeletionWaitForApproval() throws {
        let service = try service(activeAtOnce: false)
        let key = try SoftwareApprovalKey.make(.ECDSA_SECP384R1)
        let registered = try register(service, key)
        let ccr = try #require(registered.json["ccrIdPendingRegistration"] as? String)
        #expect(!ccr.isEmpty)
        let record = try #require(service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{}", lifetime: 600))
        #expect(try approve(service, record.id, signature: try key.sign(Array(record.payload.utf8))) == 400, "a pending key cannot sign")
        #expect((try call(service, "GET", "/v1/approvals").json["data"] as? [[String: Any]])?.count == 1, "its own registration is not mine to approve")
        #expect(service.approveFromConsole(ccr) != nil)
        #expect(try approve(service, record.id, signature: try key.sign(Array(record.payload.utf8))) == 204)

        let keyID = try #require(registered.json["keyId"] as? String)
        let deleted = try call(service, "DELETE", "/v1/management/api_users/\(apiKey)/approval_keys/\(keyID)")
        let deletion = try #require(deleted.json["ccrIdPendingDeletion"] as? String)
        #expect(!deletion.isEmpty)
        #expect(service.snapshot.keys.first?.status == "APPROVAL_API_KEY_STATUS_PENDING_DELETION")
        #expect(service.approveFromConsole(deletion) != nil)
        #expect(service.snapshot.keys.isEmpty)
    }

    @Test func keysAreBoundedAndMalformedOnesRefused() throws {
        let service = try service()
        #expect(try register(service, try SoftwareApprovalKey.make(.ECDSA_SECP256R1)).status == 200)
        #expect(try register(service, try SoftwareApprovalKey.make(.RSA_PS256)).status == 200)
        #expect(try register(service, try SoftwareApprovalKey.make(.ECDSA_SECP256R1)).status == 400, "at most two")
        let service2 = try self.service()
        let p256 = try SoftwareApprovalKey.make(.ECDSA_SECP256R1)
        #expect(try register(service2, SoftwareApprovalKey(algorithm: "ECDSA_SECP384R1", pem: p256.pem, sign: p256.sign)).status == 400, "algorithm and key must agree")
        #expect(try register(service2, SoftwareApprovalKey(algorithm: "ES256", pem: p256.pem, sign: p256.sign)).status == 400)
        #expect(try register(service2, SoftwareApprovalKey(algorithm: "ECDSA_SECP256R1", pem: "not a pem", sign: p256.sign)).status == 400)
    }

    @Test func requestsAreBoundedAndPaged() throws {
        let service = try service(limit: 3)
        let ids = (0..<3).compactMap { _ in service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{}", lifetime: 600)?.id }
        #expect(ids.count == 3)
        #expect(service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{}", lifetime: 600) == nil, "every one open: refused")
        #expect(try call(service, "POST", "/v1/approvals/\(ids[0])/reject").status == 204)
        #expect(service.addApproval(type: "TAG_UPDATE", requestDataJSON: "{}", lifetime: 600) != nil, "the finished one made room")
        #expect(service.snapshot.approvalRequests.count == 3)
        let first = try call(service, "GET", "/v1/approvals?pageSize=2")
        #expect((first.json["data"] as? [[String: Any]])?.count == 2)
        let next = try #require(first.json["next"] as? String)
        let second = try call(service, "GET", "/v1/approvals?pageSize=2&pageCursor=\(next)")
        #expect((second.json["data"] as? [[String: Any]])?.count == 1 && second.json["next"] == nil)
        #expect(try call(service, "GET", "/v1/approvals?quorumStatusMode=FULL").status == 400)
    }
}
