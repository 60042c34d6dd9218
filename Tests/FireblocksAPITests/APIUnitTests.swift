import APITestSupport
import FireblocksAPI
import Foundation
import Testing

@Suite("Claims and base URLs")
struct ClaimsAndURLTests {
    @Test func claimsAreSerialisedInTheSDKsOrderWithoutEscapedSlashes() throws {
        let claims = RequestClaims(uri: "/v1/a/b?x=1&y=2", nonce: "n", iat: 10, exp: 65, sub: "k", bodyHash: "h")
        #expect(String(decoding: try claims.serialized(), as: UTF8.self)
            == #"{"uri":"/v1/a/b?x=1&y=2","nonce":"n","iat":10,"exp":65,"sub":"k","bodyHash":"h"}"#)
    }

    @Test func bodyHashOfNoBodyIsTheHashOfTheEmptyString() {
        #expect(RequestClaims.bodyHash(nil) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(RequestClaims.bodyHash([]) == RequestClaims.bodyHash(nil))
        #expect(RequestClaims.bodyHash(Array("{}".utf8)) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
    }

    @Test func lifetimeIsOneTo55Seconds() throws {
        let signer = try SoftwareSigner()
        #expect(throws: APIClientError(.badInput, "")) { try RequestTokenIssuer(apiKey: "k", signer: signer, lifetime: 56) }
        #expect(throws: APIClientError(.badInput, "")) { try RequestTokenIssuer(apiKey: "k", signer: signer, lifetime: 0) }
        let issuer = try RequestTokenIssuer(apiKey: "k", signer: signer, lifetime: 30)
        #expect(issuer.claims(uri: "/v1/x", body: nil, issuedAt: 100, nonce: "n").exp == 130)
    }

    @Test func documentedEnvironments() {
        #expect(FireblocksEnvironment.sandbox.baseURL.description == "https://sandbox-api.fireblocks.io/v1")
        #expect(FireblocksEnvironment.us.baseURL.description == "https://api.fireblocks.io/v1")
        #expect(FireblocksEnvironment.eu.baseURL.description == "https://eu-api.fireblocks.io/v1")
        #expect(FireblocksEnvironment.eu2.baseURL.description == "https://eu2-api.fireblocks.io/v1")
    }

    @Test(arguments: ["http://fireblocks.example.invalid/v1", "http://10.0.0.1:8088/v1", "http://127.example.invalid/v1", "http://[::2]/v1"])
    func plainHTTPToAnythingButLoopbackIsRefused(url: String) {
        #expect(throws: APIClientError(.insecureBaseURL, "")) { try APIBaseURL(validating: url) }
    }

    @Test(arguments: ["http://127.0.0.1:8088/v1", "http://localhost:1/v1", "http://[::1]:9/v1", "http://127.1.2.3/v1", "https://api.example.invalid/v1"])
    func httpsAndLoopbackHTTPAreAccepted(url: String) throws {
        _ = try APIBaseURL(validating: url)
    }

    @Test(arguments: ["ftp://api.fireblocks.io/v1", "not a url", "https:///v1", "https://user:pw@api.fireblocks.io/v1", "https://api.fireblocks.io/v1?x=1"])
    func badBaseURLsAreRefused(url: String) {
        #expect(throws: APIClientError(.badBaseURL, "")) { try APIBaseURL(validating: url) }
    }

    @Test func pathsGetTheBasePathOnce() throws {
        let base = try APIBaseURL(validating: "https://api.fireblocks.io/v1/")
        #expect(try base.resolve(path: "/workspace").uri == "/v1/workspace")
        #expect(try base.resolve(path: "/v1/workspace").uri == "/v1/workspace")
        #expect(try base.resolve(path: "/v1/vault/accounts_paged?limit=10&orderBy=DESC").uri == "/v1/vault/accounts_paged?limit=10&orderBy=DESC")
        #expect(try base.resolve(path: "/v1x").uri == "/v1/v1x")
        let resolved = try base.resolve(path: "/v1/vault/accounts_paged?name=a%20b")
        #expect(resolved.url.absoluteString == "https://api.fireblocks.io/v1/vault/accounts_paged?name=a%20b")
    }

    @Test(arguments: ["workspace", "/v1/vault?name=a b", "/v1/x#frag", "/v1/x%zz", "/v1/x%2", "/v1/é"])
    func pathsThatWouldNotBeSentAsSignedAreRefused(path: String) throws {
        let base = try APIBaseURL(validating: "https://api.fireblocks.io/v1")
        #expect(throws: APIClientError(.badPath, "")) { try base.resolve(path: path) }
    }
}

@Suite("API errors and advice")
struct APIErrorTests {
    private func response(_ status: Int, _ body: String, requestID: String? = "req-1") -> APIResponse {
        APIResponse(status: status, headers: requestID.map { ["X-Request-ID": $0] } ?? [:], body: Array(body.utf8))
    }

    @Test func decodesTheErrorResponseShape() {
        let error = FireblocksAPIError(response: response(403, #"{"error":{"type":"AUTHORIZATION","message":"nope"}}"#), clockOffset: nil)
        #expect(error.type == "AUTHORIZATION")
        #expect(error.message == "nope")
        #expect(error.errorCode == nil)
        #expect(error.description.contains("HTTP 403 AUTHORIZATION: nope"))
        #expect(error.description.contains("[X-Request-ID: req-1]"))
    }

    @Test func decodesTheErrorSchemaShape() {
        let error = FireblocksAPIError(response: response(401, #"{"message":"Unauthorized","code":-7}"#), clockOffset: nil)
        #expect(error.errorCode == -7)
        #expect(error.message == "Unauthorized")
        #expect(error.description.contains("(code -7)"))
    }

    @Test func alwaysSaysWhetherThereWasARequestID() {
        let error = FireblocksAPIError(response: response(502, "<html>bad gateway</html>", requestID: nil), clockOffset: nil)
        #expect(error.description.contains("[X-Request-ID: none received]"))
        #expect(error.message == "<html>bad gateway</html>")
    }

    @Test(arguments: Array(-12 ... -1))
    func everyCodeGetsOneLineOfAdvice(code: Int) throws {
        let error = FireblocksAPIError(response: response(401, #"{"message":"m","code":\#(code)}"#), clockOffset: nil)
        let advice = try #require(error.advice)
        #expect(!advice.contains("\n"))
        #expect(!advice.isEmpty)
    }

    @Test func clockAdviceNamesTheMeasuredOffset() {
        let ahead = FireblocksAPIError(response: response(401, #"{"message":"m","code":-12}"#), clockOffset: -42.4)
        #expect(ahead.advice?.contains("runs ahead of Fireblocks by ~42 s") == true)
        let behind = FireblocksAPIError(response: response(401, #"{"message":"m","code":-10}"#), clockOffset: 90)
        #expect(behind.advice?.contains("runs behind Fireblocks by ~90 s") == true)
    }

    @Test func classifiesStatuses() {
        #expect(FireblocksAPIError(response: response(401, "{}"), clockOffset: nil).isAuthenticationFailure)
        #expect(FireblocksAPIError(response: response(403, "{}"), clockOffset: nil).isAuthenticationFailure)
        #expect(FireblocksAPIError(response: response(503, "{}"), clockOffset: nil).isServerSide)
        #expect(FireblocksAPIError(response: response(429, "{}"), clockOffset: nil).isServerSide)
        #expect(!FireblocksAPIError(response: response(409, "{}"), clockOffset: nil).isServerSide)
    }
}

@Suite("Retry policy")
struct RetryPolicyTests {
    @Test func retriesOnlyWhatMayChange() {
        for status in [429, 500, 502, 503, 504] { #expect(RetryPolicy.isRetryable(status: status)) }
        for status in [400, 401, 403, 404, 409, 501, 505] { #expect(!RetryPolicy.isRetryable(status: status)) }
    }

    @Test func backoffGrowsIsJitteredAndBounded() {
        let policy = RetryPolicy(maximumAttempts: 6, initialDelay: 1, maximumDelay: 8)
        for attempt in 1...6 {
            let step = min(8, pow(2, Double(attempt - 1)))
            for _ in 0..<50 {
                let delay = policy.delay(afterAttempt: attempt, retryAfter: nil)
                #expect(delay >= step / 2 && delay <= step)
            }
        }
    }

    @Test func retryAfterIsHonouredAndCapped() {
        let policy = RetryPolicy(maximumRetryAfter: 30)
        #expect(policy.delay(afterAttempt: 1, retryAfter: 3) == 3)
        #expect(policy.delay(afterAttempt: 1, retryAfter: 3600) == 30)
    }

    @Test func readsRetryAfterInBothForms() {
        let now = Date(timeIntervalSince1970: 1_764_000_000)
        let seconds = APIResponse(status: 429, headers: ["Retry-After": "7"], body: [])
        #expect(seconds.retryAfter(now: now) == 7)
        let date = APIResponse(status: 429, headers: ["Retry-After": HTTPDate.format(now.addingTimeInterval(12))], body: [])
        #expect(date.retryAfter(now: now) == 12)
        #expect(APIResponse(status: 429, headers: ["Retry-After": "soon"], body: []).retryAfter(now: now) == nil)
        #expect(APIResponse(status: 429, headers: [:], body: []).retryAfter(now: now) == nil)
    }

    @Test func imfFixdatesRoundTripAndNothingElseParses() {
        let date = Date(timeIntervalSince1970: 784_111_777)
        #expect(HTTPDate.format(date) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == date)
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        for rejected in ["Mon, 06 Nov 1994 08:49:37 GMT",   // the weekday of another day
                         "Tue, 31 Feb 2026 00:00:00 GMT",   // no such day
                         "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:37 GMT",
                         "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 GMT ",
                         "Sun, 06 Nov 1994 08:49:3x GMT", "Sun, 06 Xyz 1994 08:49:37 GMT", "Sun, ٠٦ Nov 1994 08:49:37 GMT", ""] {
            #expect(HTTPDate.parse(rejected) == nil, "\(rejected)")
        }
        var seconds = 0.0
        while seconds < 4_000_000_000 {
            let instant = Date(timeIntervalSince1970: seconds)
            #expect(HTTPDate.parse(HTTPDate.format(instant)) == Date(timeIntervalSince1970: seconds.rounded(.down)))
            seconds += 12_345_678.9
        }
    }

    @Test func decimalsAreWrittenWithAFixedNumberOfPlaces() {
        #expect(DecimalText.fixed(3.14159, places: 2) == "3.14")
        #expect(DecimalText.fixed(12, places: 2) == "12.00")
        #expect(DecimalText.fixed(9.999, places: 2) == "10.00")
        #expect(DecimalText.fixed(0.05, places: 2) == "0.05")
        #expect(DecimalText.fixed(0.001, places: 2) == "0.00")
        #expect(DecimalText.fixed(-2.25, places: 1) == "-2.3")
        #expect(DecimalText.fixed(-0.04, places: 1) == "0.0")
        #expect(DecimalText.fixed(1_234.5, places: 0) == "1235")
        #expect(DecimalText.fixed(.infinity, places: 1) == "inf")
        #expect(DecimalText.fixed(.nan, places: 1) == "nan")
        #expect(DecimalText.fixed(1e300, places: 1) == "1e+300")
    }

    @Test func rolesAreTheSDKsEnum() throws {
        #expect(try APIUserRole(validating: "signer") == .SIGNER)
        #expect(throws: APIClientError(.badInput, "")) { try APIUserRole(validating: "SUPERUSER") }
        #expect(APIUserRole.ADMIN.mayCreateAPIUsers && APIUserRole.NON_SIGNING_ADMIN.mayCreateAPIUsers)
        #expect(!APIUserRole.SIGNER.mayCreateAPIUsers && !APIUserRole.VIEWER.mayCreateAPIUsers)
    }
}

@Suite("Idempotency records")
struct IdempotencyStoreTests {
    let store = IdempotencyStore(fileURL: FileManager.default.temporaryDirectory
        .appendingPathComponent("fbhsm-idem-\(UUID().uuidString)").appendingPathComponent("idempotency.json"))

    private func begin(_ body: String, key: String? = nil, now: Date = Date()) throws -> IdempotencyStore.Decision {
        try store.begin(method: "POST", url: "https://x.invalid/v1/management/api_users", apiKey: "k", body: Array(body.utf8),
                        explicitKey: key, now: now)
    }

    private func record(_ decision: IdempotencyStore.Decision) -> IdempotencyRecord {
        switch decision {
        case .send(let record), .alreadyCompleted(let record): return record
        }
    }

    @Test func theRecordIsOnDiskBeforeAnythingIsSent() throws {
        let decision = try begin(#"{"a":1}"#)
        guard case .send(let record) = decision else { Issue.record("expected send"); return }
        let onDisk = try IdempotencyStore(fileURL: store.fileURL).records()
        #expect(onDisk.map(\.idempotencyKey) == [record.idempotencyKey])
        #expect(onDisk.first?.state == .pending)
        #expect(onDisk.first?.body == #"{"a":1}"#)
        let mode = try FileManager.default.attributesOfItem(atPath: store.fileURL.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func theSameIntentReusesKeyAndBytes() throws {
        let first = record(try begin(#"{"a":1}"#))
        let second = record(try begin(#"{"a":1}"#))
        #expect(first.idempotencyKey == second.idempotencyKey)
        #expect(first.bodyBytes == second.bodyBytes)
        let other = record(try begin(#"{"a":2}"#))
        #expect(other.idempotencyKey != first.idempotencyKey)
    }

    @Test func aCompletedIntentIsNotSentAgain() throws {
        let first = record(try begin(#"{"a":1}"#))
        try store.finish(key: first.idempotencyKey, state: .completed, httpStatus: 200, requestID: "r1")
        guard case .alreadyCompleted(let done) = try begin(#"{"a":1}"#) else { Issue.record("sent twice"); return }
        #expect(done.requestIDs == ["r1"])
    }

    @Test func aRejectedIntentStartsAfresh() throws {
        let first = record(try begin(#"{"a":1}"#))
        try store.finish(key: first.idempotencyKey, state: .rejected, httpStatus: 400, requestID: "r1")
        #expect(record(try begin(#"{"a":1}"#)).idempotencyKey != first.idempotencyKey)
    }

    @Test func theSameKeyWithAnotherBodyIsRefusedLocally() throws {
        _ = try begin(#"{"a":1}"#, key: "my-key")
        #expect(throws: APIClientError(.idempotencyConflict, "")) { try begin(#"{"a":2}"#, key: "my-key") }
        #expect(record(try begin(#"{"a":1}"#, key: "my-key")).idempotencyKey == "my-key")
    }

    /// Records others could have written are neither read nor sent again: a directory group or
    /// others can write, a file another user owns, a file that is a symbolic link (each with
    /// what fixes it). A missing directory is made private; private again, the records are read.
    @Test func recordsOthersCouldHaveWrittenAreRefused() throws {
        let directory = store.fileURL.deletingLastPathComponent().path
        let file = store.fileURL.path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = record(try begin(#"{"a":1}"#))
        #expect(try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int == 0o700)
        func refusal(_ fix: String?, sourceLocation: SourceLocation = #_sourceLocation) {
            let error = #expect(throws: APIClientError.self, sourceLocation: sourceLocation) { try begin(#"{"a":1}"#) }
            #expect(error?.code == .untrustedState, sourceLocation: sourceLocation)
            #expect(error?.reason.contains("nothing was read or sent") == true, sourceLocation: sourceLocation)
            if let fix { #expect(error?.reason.contains("fix it with: \(fix)") == true, "\(String(describing: error))", sourceLocation: sourceLocation) }
            #expect(throws: APIClientError(.untrustedState, ""), sourceLocation: sourceLocation) { try store.requireTrusted() }
        }

        chmod(directory, 0o777)
        refusal("chmod go-w '\(directory)'")
        chmod(directory, 0o700)

        #expect(chown(file, 65534, 65534) == 0, "the tests run as root")
        refusal("chown \(getuid()) '\(file)'")
        #expect(chown(file, getuid(), getgid()) == 0)

        let elsewhere = directory + "/../" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        #expect(rename(file, elsewhere) == 0)
        try FileManager.default.createSymbolicLink(atPath: file, withDestinationPath: elsewhere)
        refusal(nil)
        try FileManager.default.removeItem(atPath: file)
        #expect(rename(elsewhere, file) == 0)

        #expect(record(try begin(#"{"a":1}"#)).idempotencyKey == first.idempotencyKey, "private again: the same record")
    }

    @Test func aPendingRecordOlderThanTheServersMemoryIsNotResentBlindly() throws {
        let old = Date().addingTimeInterval(-IdempotencyStore.serverRetention)
        _ = try begin(#"{"a":1}"#, now: old)
        #expect(throws: APIClientError(.idempotencyConflict, "")) { try begin(#"{"a":1}"#) }
    }
}

/// A transport that answers every request with one canned answer.
private struct CannedTransport: HTTPTransport {
    let status: Int
    let body: [UInt8]
    func send(url: URL, method: String, headers: [String: String], body _: [UInt8]?, timeout: TimeInterval) async throws -> APIResponse {
        APIResponse(status: status, headers: ["X-Request-ID": "canned"], body: body)
    }
}

@Suite("Pairing tokens from the server")
struct PairingTokenAnswerTests {
    private func issue(_ token: String) async throws -> String {
        let body = try JSONSerialization.data(withJSONObject: ["id": "u", "name": "bot", "status": "PENDING_DEVICE_PAIRING", "pairingToken": token])
        let client = FireblocksClient(baseURL: try APIBaseURL(validating: "http://127.0.0.1:9/v1"),
                                      issuer: try RequestTokenIssuer(apiKey: "k", signer: try SoftwareSigner(), lifetime: 30),
                                      transport: CannedTransport(status: 201, body: Array(body)))
        return try await client.issuePairingToken(userID: "0b9f0b9f-aaaa-bbbb-cccc-0123456789ab", idempotencyKey: "pair-1").answer.pairingToken
    }

    @Test(arguments: ["\u{1B}]52;c;ZWNobyBvd25lZA==\u{07}", "\u{1B}[2J\u{1B}[H", "ok\u{1B}]0;pwned\u{07}", "two words", "tab\there", "ünïcode",
                      String(repeating: "A", count: 50_000), ""])
    func aTokenThatIsNotPrintableASCIIIsRefusedUnquoted(token: String) async throws {
        do {
            _ = try await issue(token)
            Issue.record("accepted \(token.debugDescription.prefix(40))")
        } catch let error as APIClientError {
            #expect(error.code == .invalidResponse)
            #expect(!token.isEmpty ? !error.reason.contains(token.prefix(12)) : true, "the refusal quotes the token")
            #expect(!error.reason.unicodeScalars.contains { $0.value < 0x20 }, "\(error.reason.debugDescription)")
        }
    }

    @Test func anOrdinaryTokenIsAccepted() async throws {
        let token = UUID().uuidString.lowercased() + "." + UUID().uuidString
        #expect(try await issue(token) == token)
    }
}
