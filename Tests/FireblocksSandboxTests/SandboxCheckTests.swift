import APITestSupport
import FireblocksAPI
import FireblocksSandbox
import Foundation
import JOSE
import Testing

/// The stand-in's own checks: a valid request passes; a token wrong in each single way fails
/// with the documented error shape and code; every answer has an X-Request-ID.
@Suite("Stand-in checks")
struct SandboxCheckTests {
    let signer: SoftwareSigner
    let apiKey = "a1b2c3d4-0000-4000-8000-000000000001"
    let service: SandboxService

    init() throws {
        signer = try SoftwareSigner()
        service = try SandboxService(configuration: SandboxConfiguration(
            trusted: [try TrustedAPIUser(apiKey: apiKey, role: .ADMIN, publicKeyPEM: signer.publicKeyPEM)]))
    }

    /// A request with a token built from claims the test controls.
    private func request(method: String = "GET", target: String = "/v1/workspace", body: [UInt8] = [],
                         claims: RequestClaims? = nil, signWith: (any RS256Signer)? = nil, header: [UInt8]? = nil,
                         apiKey: String? = nil, authorization: String? = nil) throws -> SandboxRequest {
        let now = Int(service.now().timeIntervalSince1970)
        let claims = claims ?? RequestClaims(uri: target, nonce: UUID().uuidString, iat: now, exp: now + 55,
                                             sub: self.apiKey, bodyHash: RequestClaims.bodyHash(body))
        let jws = try CompactJWS.sign(header: header ?? CompactJWS.rs256JWTHeader, payload: try claims.serialized(),
                                      with: signWith ?? signer)
        var headers = ["X-API-Key": apiKey ?? self.apiKey, "Authorization": authorization ?? "Bearer \(jws.compact)"]
        if !body.isEmpty { headers["Content-Type"] = "application/json" }
        return SandboxRequest(method: method, target: target, headers: headers, body: body)
    }

    private func claims(uri: String = "/v1/workspace", nonce: String = UUID().uuidString, iatShift: Int = 0,
                        lifetime: Int = 55, sub: String? = nil, bodyHash: String? = nil) -> RequestClaims {
        let iat = Int(service.now().timeIntervalSince1970) + iatShift
        return RequestClaims(uri: uri, nonce: nonce, iat: iat, exp: iat + lifetime, sub: sub ?? apiKey,
                             bodyHash: bodyHash ?? RequestClaims.bodyHash(nil))
    }

    /// Status, decoded JSON and headers of a reply.
    private func answer(_ reply: SandboxReply) throws -> (status: Int, json: [String: Any], headers: [String: String]) {
        guard case .respond(let status, let headers, let body) = reply else {
            Issue.record("the connection was dropped")
            return (0, [:], [:])
        }
        let json = body.isEmpty ? [:] : (try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] ?? [:])
        let fields = Dictionary(headers.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { first, _ in first })
        #expect(fields["x-request-id"]?.isEmpty == false, "every answer has an X-Request-ID")
        #expect(fields["date"] != nil)
        return (status, json, fields)
    }

    private func expectRefusal(_ request: SandboxRequest, code: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reply = try answer(service.handle(request))
        #expect(reply.status == 401, sourceLocation: sourceLocation)
        #expect(reply.json["code"] as? Int == code, "\(reply.json)", sourceLocation: sourceLocation)
        #expect(reply.json["message"] is String, sourceLocation: sourceLocation)
    }

    @Test func aValidRequestPasses() throws {
        let reply = try answer(service.handle(try request()))
        #expect(reply.status == 200)
        #expect(reply.json["name"] as? String == "fireblocks-hsm sandbox")
    }

    @Test func badSignature() throws {
        try expectRefusal(try request(signWith: try SoftwareSigner()), code: -1)
    }

    @Test func wrongURI() throws {
        try expectRefusal(try request(target: "/v1/workspace", claims: claims(uri: "/v1/management/api_users")), code: -4)
    }

    @Test func queryIsPartOfTheURI() throws {
        try expectRefusal(try request(target: "/v1/workspace?x=1", claims: claims(uri: "/v1/workspace")), code: -4)
        let signed = try request(target: "/v1/workspace?x=1", claims: claims(uri: "/v1/workspace?x=1"))
        #expect(try answer(service.handle(signed)).status == 200)
    }

    @Test func wrongBodyHash() throws {
        let body = Array(#"{"role":"SIGNER"}"#.utf8)
        try expectRefusal(try request(method: "POST", target: "/v1/management/api_users", body: body,
                                      claims: claims(uri: "/v1/management/api_users", bodyHash: RequestClaims.bodyHash(Array("{}".utf8)))), code: -1)
    }

    @Test func expired() throws {
        try expectRefusal(try request(claims: claims(iatShift: -120)), code: -10)
    }

    @Test func iatInTheFuture() throws {
        try expectRefusal(try request(claims: claims(iatShift: 30)), code: -12)
    }

    @Test func aSmallFutureIatIsTolerated() throws {
        #expect(try answer(service.handle(try request(claims: claims(iatShift: 2)))).status == 200)
    }

    @Test func lifetimeOverSixtySeconds() throws {
        try expectRefusal(try request(claims: claims(lifetime: 61)), code: -5)
    }

    @Test func reusedNonce() throws {
        let once = claims(nonce: "same-nonce")
        #expect(try answer(service.handle(try request(claims: once))).status == 200)
        try expectRefusal(try request(claims: once), code: -7)
    }

    @Test func wrongSubject() throws {
        try expectRefusal(try request(claims: claims(sub: "someone-else")), code: -6)
    }

    @Test func unknownAPIKey() throws {
        try expectRefusal(try request(apiKey: "not-registered"), code: -7)
    }

    @Test func missingJWT() throws {
        try expectRefusal(try request(authorization: "Basic abc"), code: -3)
    }

    @Test func malformedToken() throws {
        try expectRefusal(try request(authorization: "Bearer not.a-token"), code: -5)
    }

    @Test func algorithmMustBeRS256() throws {
        try expectRefusal(try request(header: Array(#"{"alg":"none","typ":"JWT"}"#.utf8)), code: -5)
    }

    @Test func aCritHeaderIsRefused() throws {
        // RFC 7515 §4.1.11: extensions the recipient does not understand make the JWS invalid.
        let header = Array(#"{"alg":"RS256","crit":["exp"],"typ":"JWT"}"#.utf8)
        try expectRefusal(try request(header: header), code: -5)
    }

    @Test(arguments: [(-1, Int.max), (Int.min, Int.max), (Int.max, Int.min), (0, Int.max), (Int.max - 1, Int.max)])
    func extremeTimesAreRefusedNotTrapped(iat: Int, exp: Int) throws {
        let claims = RequestClaims(uri: "/v1/workspace", nonce: UUID().uuidString, iat: iat, exp: exp, sub: apiKey,
                                   bodyHash: RequestClaims.bodyHash(nil))
        let reply = try answer(service.handle(try request(claims: claims)))
        #expect(reply.status == 401)
    }

    @Test func unknownRouteIs404WithTheErrorResponseShape() throws {
        let reply = try answer(service.handle(try request(target: "/v1/nothing", claims: claims(uri: "/v1/nothing"))))
        #expect(reply.status == 404)
        #expect((reply.json["error"] as? [String: Any])?["type"] as? String == "NOT_FOUND")
    }
}

@Suite("Stand-in API users and faults")
struct SandboxAPIUserTests {
    let signer: SoftwareSigner
    let adminKey = "a1b2c3d4-0000-4000-8000-00000000000a"
    let signerKey = "a1b2c3d4-0000-4000-8000-00000000000b"

    init() throws { signer = try SoftwareSigner() }

    private func service(_ configure: (inout SandboxConfiguration) -> Void = { _ in }) throws -> SandboxService {
        var configuration = SandboxConfiguration(trusted: [
            try TrustedAPIUser(apiKey: adminKey, role: .ADMIN, publicKeyPEM: signer.publicKeyPEM),
            try TrustedAPIUser(apiKey: signerKey, role: .SIGNER, publicKeyPEM: signer.publicKeyPEM),
        ])
        configure(&configuration)
        return try SandboxService(configuration: configuration)
    }

    private func post(_ service: SandboxService, path: String = "/v1/management/api_users", body: [UInt8], as apiKey: String? = nil,
                      idempotencyKey: String? = nil) throws -> SandboxRequest {
        let now = Int(service.now().timeIntervalSince1970)
        let claims = RequestClaims(uri: path, nonce: UUID().uuidString, iat: now, exp: now + 55, sub: apiKey ?? adminKey,
                                   bodyHash: RequestClaims.bodyHash(body))
        let token = try CompactJWS.sign(payload: try claims.serialized(), with: signer).compact
        var headers = ["X-API-Key": apiKey ?? adminKey, "Authorization": "Bearer \(token)", "Content-Type": "application/json"]
        if let idempotencyKey { headers["Idempotency-Key"] = idempotencyKey }
        return SandboxRequest(method: "POST", target: path, headers: headers, body: body)
    }

    private func status(_ reply: SandboxReply) -> (Int, [String: Any], [(String, String)]) {
        guard case .respond(let status, let headers, let body) = reply else { return (0, [:], []) }
        let json = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:]
        return (status, json, headers)
    }

    /// A real CSR (software key) for bodies.
    private func body(name: String = "ci-bot", role: String = "SIGNER", csr: String? = nil) throws -> [UInt8] {
        let csrPEM = try csr ?? SoftwareCSR.make(commonName: name)
        let object: [String: Any] = ["role": role, "name": name, "csrPem": csrPEM]
        return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    @Test func createsAUserPendingActivation() throws {
        let sandbox = try service()
        let (code, json, _) = status(sandbox.handle(try post(sandbox, body: try body())))
        #expect(code == 200)
        #expect(json.isEmpty, "200 has no body")
        #expect(sandbox.snapshot.users.map(\.name) == ["ci-bot"])
        #expect(sandbox.snapshot.users.first?.status == "PENDING_ACTIVATION")
    }

    @Test func refusesABadCSR() throws {
        let sandbox = try service()
        let (code, json, _) = status(sandbox.handle(try post(sandbox, body: try body(csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))))
        #expect(code == 400)
        #expect((json["error"] as? [String: Any])?["type"] as? String == "VALIDATION")
        #expect(sandbox.snapshot.users.isEmpty)
    }

    @Test func refusesAnUnknownRole() throws {
        let sandbox = try service()
        #expect(status(sandbox.handle(try post(sandbox, body: try body(role: "SUPERUSER")))).0 == 400)
    }

    @Test func aSignerMayNotCreateUsers() throws {
        let sandbox = try service()
        let (code, json, _) = status(sandbox.handle(try post(sandbox, body: try body(), as: signerKey)))
        #expect(code == 403)
        #expect((json["error"] as? [String: Any])?["type"] as? String == "AUTHORIZATION")
    }

    @Test func idempotencyKeyReplaysTheFirstAnswer() throws {
        let sandbox = try service()
        let payload = try body()
        let first = status(sandbox.handle(try post(sandbox, body: payload, idempotencyKey: "k1")))
        let second = status(sandbox.handle(try post(sandbox, body: payload, idempotencyKey: "k1")))
        #expect(first.0 == 200 && second.0 == 200)
        let firstID = first.2.first { $0.0 == "X-Request-ID" }?.1
        #expect(second.2.first { $0.0 == "X-Request-ID" }?.1 == firstID)
        #expect(second.2.contains { $0 == ("Idempotent-Replay", "true") })
        #expect(sandbox.snapshot.users.count == 1)
        let other = status(sandbox.handle(try post(sandbox, body: try body(name: "other"), idempotencyKey: "k1")))
        #expect(other.0 == 400)
        #expect(sandbox.snapshot.users.count == 1)
    }

    @Test func pairingTokenThen409() throws {
        let sandbox = try service()
        _ = sandbox.handle(try post(sandbox, body: try body()))
        let id = try #require(sandbox.snapshot.users.first?.id)
        let path = "/v1/management/api_users/\(id)/pairing_token"
        let first = status(sandbox.handle(try post(sandbox, path: path, body: [])))
        #expect(first.0 == 201)
        #expect(first.1["pairingToken"] is String)
        let second = status(sandbox.handle(try post(sandbox, path: path, body: [])))
        #expect(second.0 == 409)
        #expect((second.1["error"] as? [String: Any])?["type"] as? String == "CONFLICT")
    }

    @Test func faultsComeInTheirOrderAndThenStop() throws {
        let sandbox = try service { $0.dropFirst = 1; $0.rateLimitFirst = 1; $0.failFirst = 1 }
        let payload = try body()
        if case .respond = sandbox.handle(try post(sandbox, body: payload)) { Issue.record("first should be dropped") }
        let limited = status(sandbox.handle(try post(sandbox, body: payload)))
        #expect(limited.0 == 429)
        #expect(limited.2.contains { $0 == ("Retry-After", "1") })
        #expect(status(sandbox.handle(try post(sandbox, body: payload))).0 == 503)
        #expect(status(sandbox.handle(try post(sandbox, body: payload))).0 == 200)
        #expect(sandbox.snapshot.users.count == 1)
    }

    @Test func aLostResponseStillCreatedTheUser() throws {
        let sandbox = try service { $0.loseResponseFirst = 1 }
        if case .respond = sandbox.handle(try post(sandbox, body: try body(), idempotencyKey: "k")) { Issue.record("expected no answer") }
        #expect(sandbox.snapshot.users.count == 1)
    }

    @Test func stateIsWrittenAndReadBack() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sandbox-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        let sandbox = try service { $0.stateFile = file }
        _ = sandbox.handle(try post(sandbox, body: try body(), idempotencyKey: "k"))
        let reloaded = try SandboxState.load(from: file)
        #expect(reloaded.users.map(\.name) == ["ci-bot"])
        #expect(reloaded.idempotency.map(\.key) == ["k"])
        let again = try service { $0.stateFile = file }
        #expect(again.snapshot == reloaded)
    }
}
