import AsyncHTTPClient
import AuditTrail
import Crypto
import _CryptoExtras
import FireblocksAPI
import FireblocksHSM
import Foundation
import HTTPTypes
import JOSE
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ProxySettings
import SigningProxy
import SoftHSMTestSupport
import Synchronization
import Testing
import TokenKeys

/// An upstream that records what reached it and answers with an X-Request-ID and the body it got.
final class RecordingUpstream: Sendable {
    struct Seen: Sendable {
        let method: String
        let target: String
        let headers: [String: String]
        let body: [UInt8]
    }

    private let seen = Mutex<[Seen]>([])
    /// Answer every request 401 (code -7), as Fireblocks does for a key it no longer accepts.
    let refusesCredentials = Mutex(false)
    private let bound = Mutex<Int?>(nil)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    var requests: [Seen] { seen.withLock { $0 } }
    var baseURL: String { "http://127.0.0.1:\(bound.withLock { $0 } ?? 0)/v1" }

    func start() async throws {
        let router = Router()
        router.on("**", method: .get) { request, _ in try await self.answer(request) }
        router.on("**", method: .post) { request, _ in try await self.answer(request) }
        let application = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                      onServerRunning: { channel in self.bound.withLock { $0 = channel.localAddress?.port } })
        task.withLock { $0 = Task { try await application.runService() } }
        // Polled with a deadline: the bound port is what the test waits for.
        for _ in 0..<500 where bound.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
        _ = try #require(bound.withLock { $0 }, "the upstream did not bind a port in 5 s")
    }

    func stop() { task.withLock { $0?.cancel() } }

    private func answer(_ request: Request) async throws -> Response {
        if let path = request.head.path, path.hasPrefix("/v1/stall") {
            // The head and a first part of the body, then nothing: sized (`/v1/stall`) or
            // chunked (`/v1/stall-chunked`).
            var headers: HTTPFields = [.contentType: "application/json"]
            if path == "/v1/stall" { headers[.contentLength] = "100" }
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await writer.write(ByteBuffer(bytes: Array("{\"partial\":".utf8)))
                // The stall is what these tests are about (an upstream that stops mid-answer), not a wait.
                try await Task.sleep(for: .seconds(600))
                try await writer.finish(nil)
            })
        }
        if request.head.path?.hasPrefix("/v1/unavailable") == true {
            return Response(status: .serviceUnavailable, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: Array(#"{"message":"busy"}"#.utf8))))
        }
        if refusesCredentials.withLock({ $0 }) {
            return Response(status: .unauthorized, headers: [HTTPField.Name("X-Request-ID")!: "refused", .contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: Array(#"{"message":"Unauthorized","code":-7}"#.utf8))))
        }
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let body = Array(buffer: try await request.body.collect(upTo: 1 << 22))
        seen.withLock { $0.append(Seen(method: request.method.rawValue, target: request.head.path ?? "", headers: headers, body: body)) }
        return Response(status: .created, headers: [HTTPField.Name("X-Request-ID")!: "upstream-\(seen.withLock { $0.count })",
                                                    .contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.isEmpty ? Array("{\"ok\":true}".utf8) : body)))
    }
}

@Suite("Signing proxy (library, in process)")
struct SigningProxyTests {
    /// A token with a key, a PIN file, an audit directory, an upstream and a proxy before it.
    final class Fixture {
        let token: TestToken
        let publicKey: _RSA.Signing.PublicKey
        let directory: URL
        let upstream = RecordingUpstream()
        var proxy: SigningProxy!
        /// A stalled answer fails the test after 25 s instead of hanging it.
        let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                configuration: .init(timeout: .init(read: .seconds(25))))
        let apiKey = UUID().uuidString.lowercased()

        init(_ prefix: String) throws {
            token = try TestToken(labelPrefix: prefix)
            let session = try token.userSession()
            let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "bot", bits: 2048), in: session)
            publicKey = try _RSA.Signing.PublicKey(derRepresentation: try #require(pair.publicKey).subjectPublicKeyInfoDER)
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-\(UUID())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try token.userPINString.write(to: directory.appendingPathComponent("pin"), atomically: true, encoding: .utf8)
        }

        var auditDirectory: URL { directory.appendingPathComponent("audit") }

        /// - Parameter log: receives the proxy's warnings (the connection policy's among them).
        func start(rules: [String], log: CapturedLog? = nil, configure: (inout ProxyConfiguration) throws -> Void = { _ in }) async throws {
            try await upstream.start()
            var configuration = ProxyConfiguration(listen: .loopback(host: "127.0.0.1", port: 0),
                                                   upstream: try APIBaseURL(validating: upstream.baseURL), apiKey: apiKey,
                                                   rules: try rules.map(AllowRule.init(parsing:)))
            try configure(&configuration)
            let target = TokenTarget(module: .path(SoftHSM.modulePath), token: .label(token.label), key: .label("bot"),
                                     pinSource: .file(directory.appendingPathComponent("pin").path))
            var logger = log.map { log in Logger(label: "test") { _ in log.handler() } } ?? Logger(label: "test")
            logger.logLevel = log == nil ? .critical : .warning
            proxy = try await SigningProxy.start(configuration: configuration, token: target, auditDirectory: auditDirectory,
                                                 poolSize: 2, observer: SilentObserver(), logger: logger)
        }

        var port: Int {
            if case .loopback(_, let port) = proxy.address { return port }
            return 0
        }

        func send(_ method: HTTPMethod, _ target: String, headers: [(String, String)] = [], body: [UInt8]? = nil) async throws
            -> (status: Int, headers: HTTPHeaders, body: [UInt8]) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(target)")
            request.method = method
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
            let response = try await client.execute(request, timeout: .seconds(30))
            return (Int(response.status.code), response.headers, Array(buffer: try await response.body.collect(upTo: 1 << 22)))
        }

        func records() throws -> [[String: Any]] {
            let files = try FileManager.default.contentsOfDirectory(atPath: auditDirectory.path).filter { $0.hasSuffix(".jsonl") }
            let text = try String(contentsOfFile: auditDirectory.appendingPathComponent(try #require(files.first)).path, encoding: .utf8)
            return try text.split(separator: "\n").map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        }

        /// The JWT's claims, after checking its signature with the token key's public half.
        func verifiedClaims(_ authorization: String?) throws -> [String: Any] {
            let jwt = try #require(authorization?.split(separator: " ").last.map(String.init))
            let parts = jwt.split(separator: ".").map(String.init)
            try #require(parts.count == 3)
            let signature = try #require(Base64URL.decode(parts[2]))
            let valid = publicKey.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature),
                                                   for: SHA256.hash(data: Array((parts[0] + "." + parts[1]).utf8)),
                                                   padding: .insecurePKCS1v1_5)
            #expect(valid, "the JWT must verify with the token key")
            let payload = try #require(Base64URL.decode(parts[1]))
            return try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        }

        private var stopped = false

        func stop() async {
            stopped = true
            await proxy?.shutdown()
            upstream.stop()
            try? await client.shutdown()
        }

        deinit {
            // A test that threw before stop(): the client is shut down all the same (its
            // deinit traps in debug builds otherwise, which ends the whole test run), and the
            // upstream closed; the proxy is left to the process's end.
            if !stopped {
                client.shutdown { _ in }
                upstream.stop()
            }
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func anAllowedRequestIsSignedForExactlyTheBytesForwardedAndTheAnswerComesBackUnchanged() async throws {
        let fixture = try Fixture("proxy-allow")
        try await fixture.start(rules: ["POST /v1/transactions", "GET /v1/vault/*"])
        let body = Array(#"{"amount":"1.5","note":"ünïcode ✓","assetId":"BTC"}"#.utf8)
        let answer = try await fixture.send(.POST, "/v1/transactions", headers: [
            ("Authorization", "Bearer placeholder.jwt.fromsdk"), ("X-API-Key", "placeholder"), ("Idempotency-Key", "k-1"),
            ("Content-Type", "application/json"),
        ], body: body)
        let listed = try await fixture.send(.GET, "/v1/vault/accounts_paged?limit=10&orderBy=DESC")
        await fixture.stop()

        #expect(answer.status == 201)
        #expect(answer.headers.first(name: "X-Request-ID") == "upstream-1")
        #expect(answer.body == body)
        #expect(listed.status == 201)
        let seen = fixture.upstream.requests
        try #require(seen.count == 2)
        #expect(seen[0].body == body)
        #expect(seen[0].headers["x-api-key"] == fixture.apiKey)
        #expect(seen[0].headers["idempotency-key"] == "k-1")
        let claims = try fixture.verifiedClaims(seen[0].headers["authorization"])
        #expect(claims["uri"] as? String == "/v1/transactions")
        #expect(claims["bodyHash"] as? String == SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined())
        #expect(claims["sub"] as? String == fixture.apiKey)
        #expect(seen[1].target == "/v1/vault/accounts_paged?limit=10&orderBy=DESC")
        #expect(try fixture.verifiedClaims(seen[1].headers["authorization"])["uri"] as? String == "/v1/vault/accounts_paged?limit=10&orderBy=DESC")

        let events = try fixture.records().compactMap { $0["event"] as? String }
        #expect(events.filter { $0 == "proxy.request" }.count == 2)
        #expect(events.filter { $0 == "proxy.response" }.count == 2)
        #expect(events.last == "proxy.stopped")
        let log = try fixture.records().map { "\($0)" }.joined()
        #expect(!log.contains("eyJ"), "no JWT in the audit log")
    }

    @Test(arguments: [
        ("GET", "/v1/management/api_users", 403),                // no rule
        ("POST", "/v1/vault/accounts", 403),                     // the rule is for GET
        ("GET", "/v1/vault/a/b", 403),                           // '*' is one segment
        ("GET", "/v1/vault/../management/api_users", 400),       // dot segments
        ("GET", "/v1/vault/a%2F..%2F..%2Fmanagement", 400),      // encoded slash
        ("GET", "/v1/vault//accounts", 400),                     // empty segment
    ])
    func whatNoRuleAllowsNeverReachesTheUpstream(method: String, target: String, status: Int) async throws {
        let fixture = try Fixture("proxy-deny")
        try await fixture.start(rules: ["GET /v1/vault/*"])
        let answer = try await fixture.send(HTTPMethod(rawValue: method), target)
        await fixture.stop()
        #expect(answer.status == status)
        #expect(answer.headers.first(name: "X-Fireblocks-HSM-Proxy") == "refused")
        #expect(fixture.upstream.requests.isEmpty)
        let refused = try fixture.records().filter { $0["event"] as? String == "proxy.request" }
        #expect(refused.count == 1)
        #expect((refused.first?["facts"] as? [String: Any])?["allowed"] as? Bool == false)
    }

    @Test func clientTokensAreRequiredComparedAndNeverForwarded() async throws {
        let fixture = try Fixture("proxy-clients")
        let secret = "tok-" + UUID().uuidString
        try await fixture.start(rules: ["GET /v1/**"]) {
            $0.clients = try ClientTokens(text: "# clients\ntrading-bot \(secret)\n", origin: "test")
        }
        let none = try await fixture.send(.GET, "/v1/workspace")
        let wrong = try await fixture.send(.GET, "/v1/workspace", headers: [("X-API-Key", "tok-wrong-0123456789")])
        let asAPIKey = try await fixture.send(.GET, "/v1/workspace", headers: [("X-API-Key", secret)])
        let asProxyAuthorization = try await fixture.send(.GET, "/v1/workspace", headers: [("Proxy-Authorization", "Bearer \(secret)")])
        await fixture.stop()
        #expect(none.status == 401 && wrong.status == 401)
        #expect(asAPIKey.status == 201 && asProxyAuthorization.status == 201)
        let seen = fixture.upstream.requests
        #expect(seen.count == 2)
        for request in seen {
            #expect(!request.headers.values.contains { $0.contains(secret) }, "a client token reached the upstream")
            #expect(request.headers["x-api-key"] == fixture.apiKey)
        }
        let clients = try fixture.records().filter { $0["event"] as? String == "proxy.request" }
            .compactMap { ($0["facts"] as? [String: Any])?["client"] as? String }
        #expect(clients.filter { $0 == "trading-bot" }.count == 2)
        #expect(!(try fixture.records().map { "\($0)" }.joined().contains(secret)))
    }

    @Test func anOversizedBodyIsRefused() async throws {
        let fixture = try Fixture("proxy-body")
        try await fixture.start(rules: ["POST /v1/transactions"]) { $0.maximumBodySize = 1024 }
        let big = try await fixture.send(.POST, "/v1/transactions", body: [UInt8](repeating: 0x41, count: 4096))
        let small = try await fixture.send(.POST, "/v1/transactions", body: [UInt8](repeating: 0x41, count: 1024))
        await fixture.stop()
        #expect(big.status == 413)
        #expect(small.status == 201)
        #expect(fixture.upstream.requests.map(\.body.count) == [1024])
    }

    @Test func requestsOverTheRateAreRefusedWithRetryAfter() async throws {
        let fixture = try Fixture("proxy-rate")
        try await fixture.start(rules: ["GET /v1/workspace"]) { $0.rate = try RateLimit(parsing: "2/m") }
        let first = try await fixture.send(.GET, "/v1/workspace")
        let second = try await fixture.send(.GET, "/v1/workspace")
        await fixture.stop()
        #expect(first.status == 201)
        #expect(second.status == 429)
        #expect(Int(second.headers.first(name: "Retry-After") ?? "") ?? 0 >= 20)
        #expect(fixture.upstream.requests.count == 1)
    }

    @Test func aRequestWhoseRecordCannotBeWrittenIsRefusedBeforeAnythingIsSigned() async throws {
        let fixture = try Fixture("proxy-failclosed")
        try await fixture.start(rules: ["GET /v1/workspace"])
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        // The log replaced by something no record can be appended to (root ignores modes).
        let files = try FileManager.default.contentsOfDirectory(atPath: fixture.auditDirectory.path).filter { $0.hasSuffix(".jsonl") }
        let log = fixture.auditDirectory.appendingPathComponent(try #require(files.first))
        try FileManager.default.removeItem(at: log)
        try FileManager.default.createDirectory(at: log, withIntermediateDirectories: false)
        let refused = try await fixture.send(.GET, "/v1/workspace")
        let health = try await fixture.send(.GET, "/healthz")
        await fixture.stop()
        #expect(refused.status == 503)
        #expect(String(decoding: refused.body, as: UTF8.self).contains("audit"))
        #expect(fixture.upstream.requests.count == 1, "the refused request must not be forwarded")
        #expect(health.status == 503)
    }

    /// An upstream that refuses the connection: the 502 says so in one readable line that
    /// names host and port, not with the HTTP client's dump of its error value.
    @Test func anUnreachableUpstreamGetsAReadable502NamingThePort() async throws {
        let fixture = try Fixture("proxy-refused")
        let closed = try LoopbackPort.closed()
        try await fixture.start(rules: ["GET /v1/**"]) {
            $0.upstream = try APIBaseURL(validating: "http://127.0.0.1:\(closed)/v1")
            $0.upstreamTimeout = .seconds(2)
        }
        let answer = try await fixture.send(.GET, "/v1/workspace")
        await fixture.stop()
        let message = (try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])?["message"] as? String ?? ""
        #expect([502, 504].contains(answer.status), "\(answer.status) \(message)")
        #expect(message.contains("127.0.0.1:\(closed)"), "\(message)")
        #expect(message.contains("connection refused") || message.contains("no connection"), "\(message)")
        for dump in ["NIOConnectionError", "IOError(", "SingleConnectionFailure", "HTTPClientError"] {
            #expect(!message.contains(dump), "\(message)")
        }
        #expect(message.count < 200, "\(message)")
    }

    @Test(arguments: ["/v1/stall", "/v1/stall-chunked"])
    func anUpstreamThatStallsMidAnswerDoesNotHoldTheRequest(path: String) async throws {
        let fixture = try Fixture("proxy-stall")
        try await fixture.start(rules: ["GET /v1/**"]) { $0.upstreamTimeout = .seconds(1) }
        let started = ContinuousClock.now
        do {
            let answer = try await fixture.send(.GET, path)
            // A sized answer is gathered before it is sent: the proxy answers 502 itself. On a
            // loaded machine the 1-second timeout can strike before the head arrives: 504, the
            // request not held either.
            #expect(answer.status == 504 || (path == "/v1/stall" && answer.status == 502),
                    "\(answer.status) \(String(decoding: answer.body, as: UTF8.self))")
        } catch {
            // A streamed one has already begun: the proxy breaks it off.
            #expect(path == "/v1/stall-chunked", "\(error)")
        }
        #expect(started.duration(to: .now) < .seconds(20), "the stalled answer held the request for \(started.duration(to: .now))")
        fixture.upstream.stop()   // first, so that a request still stuck upstream cannot hold the proxy's shutdown
        await fixture.stop()
    }

    @Test func healthAndMetricsAreAnsweredByTheProxy() async throws {
        let fixture = try Fixture("proxy-health")
        try await fixture.start(rules: ["GET /v1/workspace"])
        _ = try await fixture.send(.GET, "/v1/workspace")
        let health = try await fixture.send(.GET, "/healthz")
        let metrics = try await fixture.send(.GET, "/metrics")
        await fixture.stop()
        #expect(health.status == 200)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(health.body)) as? [String: Any])
        #expect(document["status"] as? String == "ok")
        #expect((document["signature"] as? [String: Any])?["ok"] as? Bool == true)
        #expect(document["clockOffsetSeconds"] is Double)
        let text = String(decoding: metrics.body, as: UTF8.self)
        for name in ["fireblocks_hsm_proxy_requests_total", "fireblocks_hsm_proxy_request_duration_seconds", "fireblocks_hsm_signatures_total",
                     "fireblocks_hsm_signature_duration_seconds", "fireblocks_hsm_pool_size", "fireblocks_hsm_pool_waits_total",
                     "fireblocks_hsm_relogins_total"] {
            #expect(text.contains(name), "\(name) missing from /metrics")
        }
        #expect(text.contains(#"route="GET /v1/workspace",status="201""#))
        #expect(fixture.upstream.requests.allSatisfy { $0.target != "/healthz" && $0.target != "/metrics" })
    }
}

@Suite("Signing proxy: targets and listeners")
struct ProxyTargetTests {
    @Test(arguments: ["/v1/transactions/%c0%ae?limit=1", "/v1/transactions/%ff", "/v1/transactions/a%80b", "/v1/x?q=%fe%ff",
                      "/v1/transactions/%zz", "/v1/transactions/%4", "/v1/x?q=%",
                      "/v1/vault/..;", "/v1/vault/.;", "/v1/vault/;", "/v1/vault/..;/..;/workspace", "/v1/vault/..%20", "/v1/vault/...",
                      "/v1/vault/%EF%BC%8E%EF%BC%8E", "/v1/vault/%E2%80%A5", "/v1/vault/a?%00", "/v1/vault/a%3Fb", "/v1/vault/a%23b",
                      "/v1/vault/a?x=%0d%0a"])
    func aTargetThatIsNotTextOnceDecodedIsRefused(target: String) {
        #expect(throws: ProxyConfigurationError.self) { try RequestPath(target) }
    }

    @Test(arguments: ["/v1/transactions/abc%20def?limit=1&x=%C3%A9", "/v1/vault/accounts_paged", "/v1/x/%E2%9C%93"])
    func textTargetsPass(target: String) throws {
        #expect(try RequestPath(target).target == target)
    }

    @Test(arguments: [("LOCALHOST:8787", false), ("Localhost:8787", false), ("localhost.:8787", false), ("127.0.0.010:8787", false),
                      ("0127.0.0.1:1", false), ("127.1:8787", false), ("example.invalid:8787", false), ("[::2]:1", false),
                      ("localhost:8787", true), ("127.0.0.1:0", true), ("127.3.2.1:9", true), ("[::1]:8787", true)])
    func listenAcceptsLoopbackLiteralsAndTheExactWordLocalhost(listen: String, accepted: Bool) throws {
        if accepted {
            guard case .loopback(let host, _) = try ListenAddress(parsing: listen) else { Issue.record("not loopback"); return }
            #expect(host.first?.isNumber == true || host == "::1", "bound by name: \(host)")
        } else {
            #expect(throws: ProxySettingError.self) { try ListenAddress(parsing: listen) }
        }
    }
}

@Suite("Signing proxy: one target, one meaning (over the wire)")
struct ProxyWireTests {
    /// curl sends the target byte for byte (an HTTP client library would rewrite it first).
    private func curl(_ port: Int, _ target: String, headers: [String] = []) throws -> Int {
        let result = try Subprocess.run("curl", ["-sS", "--path-as-is", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}"]
                                        + headers.flatMap { ["-H", $0] } + ["http://127.0.0.1:\(port)\(target)"])
        return Int(result.standardOutput) ?? 0
    }

    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func nonTextTargetsAndOverrideHeadersNeverReachTheUpstream() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-wire")
        try await fixture.start(rules: ["GET /v1/transactions/*", "GET /v1/vault/accounts_paged"])
        var statuses: [String: Int] = [:]
        for target in ["/v1/transactions/%c0%ae?limit=1", "/v1/transactions/%ff", "/v1/transactions/a%80b"] {
            statuses[target] = try curl(fixture.port, target)
        }
        for header in ["X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE", "X-Method-Override: DELETE",
                       "X-Original-URL: /v1/transactions/1/cancel", "X-Rewrite-URL: /v1/admin", "X-Forwarded-For: 10.0.0.1",
                       "Forwarded: for=10.0.0.1", "X_HTTP_Method_Override: DELETE", "x-http-method-override: DELETE",
                       "X-Original-URI: /v1/admin", "X-Envoy-Original-Path: /v1/admin", "X-Real-IP: 10.0.0.1", "Via: 1.1 front"] {
            statuses[header] = try curl(fixture.port, "/v1/vault/accounts_paged", headers: [header])
        }
        // What is allowed still passes, exactly as sent.
        let allowed = try curl(fixture.port, "/v1/transactions/abc%20def?limit=1")
        await fixture.stop()
        for (what, status) in statuses { #expect(status == 400, "\(what): \(status)") }
        #expect(allowed == 201)
        #expect(fixture.upstream.requests.map(\.target) == ["/v1/transactions/abc%20def?limit=1"], "\(fixture.upstream.requests.map(\.target))")
    }
}

@Suite("Signing proxy: client-token files as people write them")
struct ClientTokenFileTests {
    private let token = "0123456789abcdef0123456789abcdef"

    @Test(arguments: ["trading-bot TOKEN\r\n", "\u{FEFF}trading-bot TOKEN\n", "trading-bot TOKEN   \n", "# c\r\n\r\ntrading-bot\tTOKEN\t\r\n",
                      "  trading-bot TOKEN"])
    func crlfABOMAndBlanksAreReadAsMeant(text: String) throws {
        let clients = try ClientTokens(bytes: Array(text.replacingOccurrences(of: "TOKEN", with: token).utf8), origin: "test")
        #expect(clients.client(presenting: token) == "trading-bot")
    }

    @Test(arguments: [("trading-bot TOKEN\rother x\n", 1), ("a 0123456789abcdef0123\nb TOKEN\u{01}\n", 2), ("x TOKEN\n\u{FF}\n", 2)])
    func whatCannotBeMeantIsRefusedWithItsLineAndNotQuoted(text: String, line: Int) {
        // "\u{FF}" stands for a byte that is not UTF-8.
        let bytes = Array(text.replacingOccurrences(of: "TOKEN", with: token).utf8).map { $0 }
            .split(separator: 0xC3, omittingEmptySubsequences: false).map { Array($0) }.joined(separator: [0xFF]).map { $0 }
        do {
            _ = try ClientTokens(bytes: bytes, origin: "test")
            Issue.record("accepted \(text.debugDescription)")
        } catch {
            #expect("\(error)".contains("line \(line)"), "\(error)")
            #expect(!"\(error)".contains(token.prefix(8)))
        }
    }
}


@Suite("Signing proxy: /healthz tells the truth")
struct ProxyHealthTests {
    private func health(_ fixture: SigningProxyTests.Fixture) async throws -> (status: Int, failing: [String]) {
        let answer = try await fixture.send(.GET, "/healthz")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
        let failing = document["failing"] as? [String] ?? ["?"]
        #expect(document["status"] as? String == (failing.isEmpty ? "ok" : "degraded: " + failing.map { $0.replacingOccurrences(of: "-", with: " ") }.joined(separator: ", ")))
        return (answer.status, failing)
    }

    @Test func aFailedCheckpointIsFailingUntilACheckpointSucceeds() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-health-cp")
        try await fixture.start(rules: ["GET /v1/workspace"]) { $0.checkpointEvery = 1 }
        #expect(try await health(fixture).status == 200)
        let checkpoint = try #require(try FileManager.default.contentsOfDirectory(atPath: fixture.auditDirectory.path).first { $0.hasSuffix(".checkpoint") })
        let path = fixture.auditDirectory.appendingPathComponent(checkpoint).path
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        // The record is written (the request is served), its checkpoint is not.
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        let failing = try await health(fixture)
        #expect(failing.status == 503 && failing.failing == ["checkpoint"], "\(failing)")
        try FileManager.default.removeItem(atPath: path)
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        let recovered = try await health(fixture)
        await fixture.stop()
        #expect(recovered.status == 200, "\(recovered)")
    }

    @Test func anAuditDiskWithLessThanTheMinimumFreeIsFailingAndEveryRequestIsRefused() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-health-disk")
        let log = CapturedLog()
        // No filesystem in use has this much free: the proxy starts, and refuses every request.
        try await fixture.start(rules: ["GET /v1/workspace"], log: log) { $0.minimumFreeAudit = .percent(100) }
        let recordsBefore = try fixture.records().count
        let refused = try await fixture.send(.GET, "/v1/workspace")
        let low = try await health(fixture)
        let metrics = String(decoding: try await fixture.send(.GET, "/metrics").body, as: UTF8.self)
        let recordsAfter = try fixture.records()
        await fixture.stop()
        #expect(refused.status == 503)
        #expect(refused.headers.first(name: "Retry-After") == "60" && refused.headers.first(name: "X-Fireblocks-HSM-Proxy") == "refused")
        let message = String(decoding: refused.body, as: UTF8.self)
        #expect(message.contains("low on disk space") && !message.contains(fixture.auditDirectory.path), "no path for the client: \(message)")
        #expect(fixture.upstream.requests.isEmpty, "nothing forwarded")
        #expect(recordsAfter.count == recordsBefore, "nothing recorded (nor signed): \(recordsAfter.suffix(2))")
        #expect(low.status == 503 && low.failing == ["audit-disk"], "\(low)") // status: "degraded: audit disk"
        #expect(log.contains("the audit directory's filesystem is low on space"))
        // Prometheus text: the free bytes and the bytes kept free, the first under the second.
        func gauge(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        let free = try #require(gauge("fireblocks_hsm_audit_disk_free_bytes"), "\(metrics)")
        let minimum = try #require(gauge("fireblocks_hsm_audit_disk_min_free_bytes"), "\(metrics)")
        #expect(free > 0 && free < minimum)
        #expect(metrics.contains(#"fireblocks_hsm_proxy_requests_total{route="audit-disk",status="503"} 1"#), "\(metrics)")
    }

    @Test(.enabled(if: SmallFilesystem.isAvailable))
    func aFullAuditDiskRefusesRequestsUntilSpaceIsFreedWithoutARestart() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-disk-full")
        // The audit directory is a 4 MiB tmpfs; the standard threshold keeps 5 % of it free.
        let disk = try SmallFilesystem(at: fixture.auditDirectory.path, bytes: 4 << 20)
        defer { disk.unmount() }
        try await fixture.start(rules: ["GET /v1/workspace"]) { $0.auditDiskCheckInterval = .zero }
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        #expect(try await health(fixture).status == 200)

        try disk.fill(leaving: 64 << 10)
        func requestRecords() throws -> Int { try fixture.records().filter { $0["event"] as? String == "proxy.request" }.count }
        let (recordedBefore, forwardedBefore) = (try requestRecords(), fixture.upstream.requests.count)
        let refused = try await fixture.send(.GET, "/v1/workspace")
        let low = try await health(fixture)
        #expect(refused.status == 503)
        #expect(low.status == 503 && low.failing == ["audit-disk"], "\(low)")
        #expect(try requestRecords() == recordedBefore, "nothing recorded")
        #expect(fixture.upstream.requests.count == forwardedBefore, "nothing forwarded (nor probed)")

        // The file moved away: served again at once, no restart.
        try disk.empty()
        let served = try await fixture.send(.GET, "/v1/workspace")
        let recovered = try await health(fixture)
        await fixture.stop()
        let recordedAfter = try requestRecords()
        // Unmounted before the fixture removes its directory (the mount point is in it).
        withExtendedLifetime(fixture) { disk.unmount() }
        #expect(served.status == 201)
        #expect(recovered.status == 200, "\(recovered)")
        #expect(fixture.upstream.requests.last?.target == "/v1/workspace")
        #expect(recordedAfter == recordedBefore + 1)
    }

    @Test func anAPIKeyFireblocksRefusesIsFailingAndOnlyItsOwnAnswersSaySo() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-health-401")
        // No probe during the test: forwarded answers alone tell.
        try await fixture.start(rules: ["GET /v1/workspace", "GET /v1/unavailable"]) { $0.upstreamCheckInterval = .seconds(300) }
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        #expect(try await health(fixture).status == 200)
        fixture.upstream.refusesCredentials.withLock { $0 = true }
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 401)
        let refused = try await health(fixture)
        #expect(refused.status == 503 && refused.failing == ["upstream-credentials"], "\(refused)")
        // A 503 (a front end, before any authentication) says nothing of the key.
        #expect(try await fixture.send(.GET, "/v1/unavailable").status == 503)
        let still = try await health(fixture)
        #expect(still.status == 503 && still.failing == ["upstream-credentials"], "\(still)")
        fixture.upstream.refusesCredentials.withLock { $0 = false }
        #expect(try await fixture.send(.GET, "/v1/workspace").status == 201)
        let accepted = try await health(fixture)
        await fixture.stop()
        #expect(accepted.status == 200, "\(accepted)")
    }

    @Test func theProbeIsSignedRecordedAndTellsARefusedKey() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-health-probe")
        try await fixture.start(rules: ["GET /v1/workspace"]) { $0.upstreamCheckInterval = .milliseconds(1) }
        #expect(try await health(fixture).status == 200)
        fixture.upstream.refusesCredentials.withLock { $0 = true }
        let refused = try await health(fixture)
        fixture.upstream.refusesCredentials.withLock { $0 = false }
        let accepted = try await health(fixture)
        let probes = try fixture.records().filter { $0["event"] as? String == "proxy.health-probe" }
        await fixture.stop()
        #expect(refused.status == 503 && refused.failing == ["upstream-credentials"], "\(refused)")
        #expect(accepted.status == 200, "\(accepted)")
        #expect(probes.count >= 3, "every probe is signed, so it is recorded")
    }
}

@Suite("Signing proxy: nobody locks others out")
struct ProxyAvailabilityTests {
    @Test func idleAndTricklingConnectionsDoNotKeepAClientWithATokenOut() async throws {
        let fixture = try SigningProxyTests.Fixture("proxy-abuse")
        let secret = "client-" + UUID().uuidString
        let log = CapturedLog()
        try await fixture.start(rules: ["GET /v1/workspace"], log: log) {
            $0.clients = try ClientTokens(text: "payouts \(secret)\n", origin: "test")
        }
        // Normal latency, before.
        let calm = ContinuousClock.now
        #expect(try await fixture.send(.GET, "/v1/workspace", headers: [("Proxy-Authorization", "Bearer \(secret)")]).status == 201)
        let normal = calm.duration(to: .now)
        // One local process: 300 idle connections and 50 that trickle a head, all without a
        // token, and 100 that send whole requests without one, every second, kept alive.
        let abuse = LocalAbuse(port: fixture.port, idle: 300, trickling: 50, requesting: 100)
        defer { abuse.stop() }
        // The abuse holds every place: the proxy said so when it paused its listener.
        let deadline = ContinuousClock.now + .seconds(30)
        while !log.contains("the connection cap is reached"), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(log.contains("the connection cap is reached"), "the abuse never filled the proxy's connections")
        // A client that connects now (its own connection pool: one new connection, kept alive).
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(timeout: .init(read: .seconds(60))))
        let started = ContinuousClock.now
        var statuses: [Int] = []
        for _ in 0..<20 {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(fixture.port)/v1/workspace")
            request.headers.add(name: "Proxy-Authorization", value: "Bearer \(secret)")
            let status = (try? await client.execute(request, timeout: .seconds(60)))
            statuses.append(Int(status?.status.code ?? 0))
            _ = try? await status?.body.collect(upTo: 1 << 20)
        }
        let took = started.duration(to: .now)
        try? await client.shutdown()
        abuse.stop()
        await fixture.stop()
        #expect(statuses.allSatisfy { $0 == 201 }, "\(statuses)")
        // The head deadline (5 s) frees the places the idle ones took; the client's connection
        // waits in the backlog meanwhile instead of being refused.
        #expect(took < .seconds(5) + normal * 20 + .seconds(5), "20 requests took \(took)")
    }
}

/// What a proxy logged, for tests that wait for a line instead of for a while.
final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])

    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }

    func handler() -> some LogHandler { Handler(log: self) }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.lines.withLock { $0.append(event.message.description) }
        }
    }
}
