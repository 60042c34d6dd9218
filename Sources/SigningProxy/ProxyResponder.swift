import ProxySettings
import PolicyLimits
import AsyncHTTPClient
import AsyncHTTPTransport
import AuditTrail
import CoreMetrics
import FireblocksAPI
import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import Synchronization
import TokenKeys

/// The request context: Hummingbird's, plus the connection (for the client's address).
struct ProxyRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remote: String

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        if let address = source.channel.remoteAddress, let ip = address.ipAddress, let port = address.port {
            remote = "\(ip):\(port)"
        } else {
            remote = "unix"
        }
    }
}

/// Every request: `/healthz` and `/metrics` answered here; everything else judged, recorded,
/// signed and forwarded.
struct ProxyResponder: HTTPResponder {
    typealias Context = ProxyRequestContext

    let configuration: ProxyConfiguration
    let issuer: RequestTokenIssuer
    let pool: SigningPool
    let auditor: ProxyAuditor
    let httpClient: HTTPClient
    let metrics: ProxyMetrics
    let health: HealthCheck
    let logger: Logger

    /// Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1), what the client must not
    /// choose (its own credentials, which the proxy replaces), and what the client recomputes.
    static let droppedRequestHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length", "expect", "x-api-key", "authorization",
    ]
    /// Request headers that ask a server or a front end to act on another method or target than
    /// the request line's (which is what the allowlist judged and the JWT signs), or that claim
    /// where the request came from: refused with 400, never forwarded.
    static let refusedRequestHeaders: Set<String> = [
        "x-http-method-override", "x-http-method", "x-method-override", "x-method", "x-original-method",
        "x-original-url", "x-original-uri", "x-rewrite-url", "x-override-url", "x-envoy-original-path",
        "forwarded", "x-forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip", "x-host",
        "x-original-host", "via",
    ]

    /// Whether a request header is one of ``refusedRequestHeaders`` or an `X-Forwarded-*`, in
    /// any spelling a front end might read the same (case; `_` for `-`, as CGI and some proxies
    /// treat them); any name with an underscore is refused for that reason alone.
    static func isRefused(_ name: String) -> Bool {
        let lowered = name.lowercased()
        if lowered.contains("_") { return true }
        return refusedRequestHeaders.contains(lowered) || lowered.hasPrefix("x-forwarded-")
    }

    /// The target AsyncHTTPClient puts on the request line for `url` (it parses the URL with
    /// Foundation and sends its decoded path re-encoded, and its query): a target that does not
    /// come out as it went in would be forwarded as another one than was judged and signed.
    static func wireTarget(_ url: String) -> String? {
        guard let parsed = URL(string: url) else { return nil }
        let path = parsed.path.isEmpty ? "/" : (URLComponents(url: parsed, resolvingAgainstBaseURL: true)?.percentEncodedPath ?? parsed.path)
        return path + (parsed.query.map { "?" + $0 } ?? "")
    }

    /// Answers up to this size (with a Content-Length) are sent back in one write.
    static let bufferedAnswerLimit = 64 << 10

    /// Response headers not relayed (hop-by-hop; the length is set from the body).
    static let droppedResponseHeaders: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    ]

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let method = request.method.rawValue
        let rawTarget = request.head.path ?? "/"
        // Who is asking (a client token, when the proxy requires them). A connection whose
        // requests carry none is closed after each answer: kept alive, it would hold a place
        // that authenticated clients need.
        let authenticated = configuration.clients.map { clients in
            Self.presentedToken(request.headers).flatMap { clients.client(presenting: $0) }
        }
        let anonymous = authenticated.map { $0 == nil } ?? false
        func closingIfAnonymous(_ response: Response) -> Response {
            guard anonymous else { return response }
            var response = response
            response.headers[ConnectionPolicy.closeAfterAnswer] = "1"
            return response
        }
        if method == "GET", rawTarget == "/healthz" { return closingIfAnonymous(await healthResponse()) }
        if method == "GET", rawTarget == "/metrics" {
            return closingIfAnonymous(Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                                               body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.exposition(pool: pool, disk: auditor.diskReading)))))
        }
        // Too little room for the audit trail: nothing is recorded (a refusal's record would
        // use the room kept), signed or forwarded. The client learns only that; the operator
        // finds the directory, the space and the threshold in the log (said once per change).
        if auditor.diskReading.isLow {
            var response = Self.errorResponse(503, "the proxy's audit log is low on disk space, so it takes no request it might not be able to record (fail closed); its operator finds why in the proxy's log")
            response.headers[.retryAfter] = "60"
            return closingIfAnonymous(finish(response, route: "audit-disk", started: started))
        }

        var client = context.remote
        if let authenticated {
            guard let name = authenticated else {
                let presented = Self.presentedToken(request.headers)
                return closingIfAnonymous(deny(401, presented == nil ? "no client token" : "unknown client token", method: method,
                                               target: rawTarget, client: client, started: started,
                                               extraHeaders: [.wwwAuthenticate: "Bearer"]))
            }
            client = name
        }

        // What is asked: a path the allowlist and the server read alike, and a rule allowing it.
        let path: RequestPath
        let uri: String
        guard rawTarget.hasPrefix("/") else {
            // `*` (or anything else that is not a path). An absolute-form target (`GET
            // http://host/…`) reaches here already cut to its path by SwiftNIO's HTTP/1
            // conversion: the proxy has one upstream, so its scheme and host change nothing.
            return deny(400, "the request target must be a path (origin-form)",
                        method: method, target: rawTarget, client: client, started: started)
        }
        do {
            uri = try configuration.upstream.resolve(path: rawTarget).uri
            path = try RequestPath(uri)
        } catch {
            return deny(400, "\(error)", method: method, target: rawTarget, client: client, started: started)
        }
        guard Self.wireTarget(configuration.upstream.origin + uri) == uri else {
            return deny(400, "the target would not reach Fireblocks as it was sent (the HTTP client would rewrite it): refused",
                        method: method, target: rawTarget, client: client, started: started)
        }
        if let override = request.headers.first(where: { Self.isRefused($0.name.canonicalName) }) {
            return deny(400, "the header \(Self.printable(override.name.canonicalName)) asks for another method or target than the request line's, claims where the request came from, or has an underscore a front end could read as a dash: refused",
                        method: method, target: rawTarget, client: client, started: started)
        }
        // With a policy, its routes and rules decide once the body is read (below).
        var route = "policy"
        if configuration.policy == nil {
            guard let rule = configuration.rules.first(where: { $0.allows(method: method, segments: path.segments) }) else {
                return deny(403, "no rule of this proxy permits \(method) \(Self.pathOnly(uri))", method: method, target: uri,
                            client: client, started: started)
            }
            route = rule.description
        }
        if let wait = configuration.rate?.take() {
            let seconds = max(1, Int(wait.rounded(.up)))
            return deny(429, "over the rate limit", method: method, target: uri, client: client, started: started,
                        route: route, extraHeaders: [.retryAfter: "\(seconds)"])
        }
        let body: [UInt8]
        do {
            body = Array(buffer: try await request.body.collect(upTo: configuration.maximumBodySize))
        } catch {
            return deny(413, "the body is over \(configuration.maximumBodySize) bytes", method: method, target: uri,
                        client: client, started: started, route: route)
        }

        // The policy reads what the token would sign, before it signs: a denial signs nothing
        // and forwards nothing (PolicyGate.swift).
        var reservation: ReservationID?
        var reservationCommit = PendingCommit.done
        if let policy = configuration.policy {
            let judged = await judge(policy, method: method, uri: uri, path: path, client: authenticated.flatMap { $0 }, body: body,
                                     started: started)
            switch judged {
            case .answer(let response): return response
            case .proceed(let rule, let held, let commit):
                route = rule
                reservation = held
                reservationCommit = commit
            }
        }

        // Recorded (and on disk) before anything is forwarded: a request whose record cannot be
        // written is refused. The record and the token's signature are made at the same time
        // (the fdatasync hides behind C_Sign); a JWT whose record failed is thrown away unsent.
        // iat on Fireblocks' clock when this host's is measurably off (from the last Date header).
        let claims = issuer.claims(uri: uri, body: body, issuedAt: Int(Date().addingTimeInterval(configuration.compensateClockSkew ? health.clockCompensation : 0).timeIntervalSince1970),
                                   nonce: UUID().uuidString.lowercased())
        let entry = AuditEntry(event: "proxy.request", facts: [
            "method": .string(method), "uri": .string(uri), "client": .string(client), "allowed": .bool(true),
            "route": .string(route), "bodyHash": .string(claims.bodyHash), "nonce": .string(claims.nonce),
            "iat": .integer(claims.iat), "exp": .integer(claims.exp),
        ])
        async let recorded = Result(catching: { try await auditor.record(entry, sync: true) })
        async let signed = Result(catching: { try await issuer.token(claims: claims) })
        let (record, signature) = await (recorded, signed)
        let seq: Int
        switch record {
        case .success(let value):
            seq = value
        case .failure(let error):
            logger.error("request refused: its audit record cannot be written", metadata: ["error": "\(error)", "uri": "\(uri)"])
            await releaseUnsent(reservation)
            return finish(Self.errorResponse(503, "the proxy cannot record this request in its audit log, so it forwards nothing (fail closed); its operator finds why in the proxy's log"),
                          route: route, started: started)
        }
        let jwt: String
        switch signature {
        case .success(let value):
            jwt = value
        case .failure(let error):
            logger.error("cannot sign the request's JWT", metadata: ["error": "\(error)", "uri": "\(uri)"])
            await releaseUnsent(reservation)
            recordOutcome(seq: seq, status: 503, requestID: nil, started: started, failure: "signing: \(error)")
            return finish(Self.errorResponse(503, "the proxy could not sign this request on its token; its operator finds why in the proxy's log"), route: route, started: started)
        }
        // The window's reservation was decided before the record and the signature; its commit
        // (and fsync) ran while they were made. Nothing goes upstream before it is durable: when
        // it failed, the signed JWT is thrown away unsent and the failure recorded.
        do {
            try await reservationCommit.wait()
        } catch {
            logger.error("request refused: its reservation against the policy's limits could not be committed", metadata: [
                "error": "\(error.reason)", "uri": "\(uri)",
            ])
            recordOutcome(seq: seq, status: 503, requestID: nil, started: started, failure: "limit store: \(Self.printable(error.reason))")
            return finish(Self.errorResponse(503, "the proxy cannot reserve this transaction against its policy's limits, so it forwards nothing (fail closed); its operator finds why in the proxy's log"),
                          route: route, started: started)
        }

        var outgoing = HTTPClientRequest(url: configuration.upstream.origin + uri)
        outgoing.method = HTTPMethod(rawValue: method)
        let dropped = Self.droppedRequestHeaders.union(Self.connectionTokens(request.headers))
        for field in request.headers where !dropped.contains(field.name.canonicalName) {
            outgoing.headers.add(name: field.name.rawName, value: field.value)
        }
        outgoing.headers.add(name: "X-API-Key", value: configuration.apiKey)
        outgoing.headers.add(name: "Authorization", value: "Bearer \(jwt)")
        if !body.isEmpty || ["POST", "PUT", "PATCH"].contains(method) {
            outgoing.body = .bytes(ByteBuffer(bytes: body))
        }

        let forwarded = ContinuousClock.now
        metrics.overhead.recordNanoseconds(started.duration(to: forwarded).nanoseconds)
        let answer: HTTPClientResponse
        do {
            answer = try await httpClient.execute(outgoing, timeout: TimeAmount.nanoseconds(configuration.upstreamTimeout.nanoseconds))
        } catch {
            let timedOut = (error as? HTTPClientError).map { [.deadlineExceeded, .readTimeout, .connectTimeout].contains($0) } ?? false
            let status = timedOut ? 504 : 502
            logger.warning("upstream failed", metadata: ["error": "\(error)", "uri": "\(uri)"])
            recordOutcome(seq: seq, status: status, requestID: nil, started: started,
                          failure: "upstream: \(AsyncHTTPClientTransport.describe(error, host: upstreamHost))")
            // One readable line (host:port and what went wrong), not the client library's dump.
            return finish(Self.errorResponse(status, "no answer from the API: \(AsyncHTTPClientTransport.describe(error, host: upstreamHost))"),
                          route: route, started: started)
        }

        let status = Int(answer.status.code)
        let requestID = answer.headers.first(name: "X-Request-ID")
        if let date = answer.headers.first(name: "Date").flatMap(HTTPDate.parse) {
            health.recordServerDate(date, sentAt: forwarded, receivedAt: .now)
        }
        recordOutcome(seq: seq, status: status, requestID: requestID, started: started, failure: nil)
        if (400..<500).contains(status) { await releaseUnsent(reservation) }  // refused: no transaction was made
        // What Fireblocks just said of the proxy's own credentials (a 401 is about them).
        health.recordUpstreamAnswer(status: status, detail: "a forwarded request got HTTP \(status) [X-Request-ID: \(requestID ?? "none")]")
        logger.info("\(method) \(Self.pathOnly(uri)) -> \(status)", metadata: [
            "client": "\(client)", "x-request-id": "\(requestID ?? "-")", "route": "\(route)",
            "latency.ms": "\(Self.milliseconds(since: started))",
        ])

        var headers = HTTPFields()
        let droppedAnswer = Self.droppedResponseHeaders.union(Self.connectionTokens(answer.headers))
        for (name, value) in answer.headers where !droppedAnswer.contains(name.lowercased()) {
            if name.lowercased() == "date" {
                headers.append(HTTPField(name: ConnectionPolicy.originalDate, value: value))
            } else if let fieldName = HTTPField.Name(name) {
                headers.append(HTTPField(name: fieldName, value: value))
            }
        }
        // A small answer of known length goes back in one write (the bytes are the same); a
        // large or unsized one is streamed as it arrives.
        let answerBody: ResponseBody
        var collected: ByteBuffer?
        if let length = answer.headers.first(name: "Content-Length").flatMap(Int.init), (0...Self.bufferedAnswerLimit).contains(length) {
            do {
                // A small answer is read whole before it is sent on: within --request-timeout,
                // however slowly the upstream trickles it.
                let bytes = try await AsyncHTTPClientTransport.collect(answer.body, upTo: length,
                                                                        by: .now() + .nanoseconds(configuration.upstreamTimeout.nanoseconds))
                collected = bytes
                answerBody = ResponseBody(byteBuffer: bytes)
            } catch {
                logger.warning("the upstream answer broke off", metadata: ["error": "\(error)", "uri": "\(uri)"])
                return finish(Self.errorResponse(502, "the answer from the API broke off: \(AsyncHTTPClientTransport.describe(error, host: upstreamHost))"),
                              route: route, started: started)
            }
        } else {
            answerBody = ResponseBody(asyncSequence: answer.body)
        }
        if method == "POST", Self.pathOnly(uri) == "/v1/management/api_users", (200..<300).contains(status) {
            // Who was made, with which key: from the body this proxy signed and the answer.
            auditor.recordAPIUserCreated(requestBody: body, answer: collected.map { Array(buffer: $0) }, request: seq,
                                         requestID: requestID, client: client)
        }
        return finish(Response(status: HTTPResponse.Status(code: status), headers: headers, body: answerBody),
                      route: route, started: started)
    }

    // MARK: Outcomes

    private func deny(_ status: Int, _ reason: String, method: String, target: String, client: String,
                      started: ContinuousClock.Instant, route: String = "denied",
                      extraHeaders: HTTPFields = [:]) -> Response {
        let path = Self.pathOnly(target)
        // The reason may quote what the client sent: printable ASCII only in logs and records.
        let reason = Self.printable(reason)
        logger.notice("\(Self.printable(method)) \(path) -> \(status) refused", metadata: ["client": "\(client)", "reason": "\(reason)"])
        auditor.recordLater(AuditEntry(event: "proxy.request", outcome: .failed(reason), facts: [
            "method": .string(Self.printable(method)), "uri": .string(Self.printable(target)), "client": .string(client),
            "allowed": .bool(false), "httpStatus": .integer(status),
            "latencyMs": .integer(Self.milliseconds(since: started)),
        ]))
        var response = Self.errorResponse(status, reason)
        response.headers.append(contentsOf: extraHeaders)
        return finish(response, route: route, started: started)
    }

    /// One authenticated call upstream, signed and recorded like any other: its HTTP status, or
    /// nil when there was no answer.
    private func probeUpstream() async -> (status: Int, detail: String)? {
        guard let uri = try? configuration.upstream.resolve(path: configuration.upstreamCheckPath).uri else { return nil }
        let claims = issuer.claims(uri: uri, body: nil, issuedAt: Int(Date().addingTimeInterval(configuration.compensateClockSkew ? health.clockCompensation : 0).timeIntervalSince1970),
                                   nonce: UUID().uuidString.lowercased())
        do {
            _ = try await auditor.record(AuditEntry(event: "proxy.health-probe", facts: [
                "method": .string("GET"), "uri": .string(uri), "nonce": .string(claims.nonce), "iat": .integer(claims.iat),
                "exp": .integer(claims.exp)]), sync: true)
            let jwt = try await issuer.token(claims: claims)
            var request = HTTPClientRequest(url: configuration.upstream.origin + uri)
            request.headers.add(name: "X-API-Key", value: configuration.apiKey)
            request.headers.add(name: "Authorization", value: "Bearer \(jwt)")
            let answer = try await httpClient.execute(request, timeout: .seconds(10))
            let body = try await answer.body.collect(upTo: 64 << 10)
            let code = (try? JSONDecoder().decode(APIErrorCode.self, from: Data(buffer: body)))?.code
            let status = Int(answer.status.code)
            return (status, "HTTP \(status)" + (code.map { " code \($0)" } ?? "") + " [X-Request-ID: \(answer.headers.first(name: "X-Request-ID") ?? "none")]")
        } catch {
            return nil
        }
    }

    private struct APIErrorCode: Decodable { let code: Int? }

    private func recordOutcome(seq: Int, status: Int, requestID: String?, started: ContinuousClock.Instant, failure: String?) {
        var facts: [String: AuditValue] = [
            "request": .integer(seq), "httpStatus": .integer(status), "latencyMs": .integer(Self.milliseconds(since: started)),
        ]
        if let requestID { facts["xRequestID"] = .string(requestID) }
        // The request happened; its answer goes back without waiting for this record.
        auditor.recordLater(AuditEntry(event: "proxy.response", outcome: failure.map { .failed($0) } ?? .ok, facts: facts))
    }

    func finish(_ response: Response, route: String, started: ContinuousClock.Instant) -> Response {
        metrics.request(route: route, status: Int(response.status.code), duration: started.duration(to: .now))
        return response
    }

    private func healthResponse() async -> Response {
        let signature = await health.signatureCheck()
        let disk = auditor.diskReading
        // The probe is a signed, recorded request: none while the audit disk is low.
        let upstream = await health.upstreamCheck(probing: !disk.isLow) { await self.probeUpstream() }
        let audit = auditor.status
        var failing: [String] = []
        if !signature.ok { failing.append("signature") }
        if audit.failure != nil { failing.append("audit") }
        if audit.checkpointFailure != nil { failing.append("checkpoint") }
        if upstream.refused { failing.append("upstream-credentials") }
        if disk.isLow { failing.append("audit-disk") }
        let healthy = failing.isEmpty
        var document: [String: Any] = [
            // What a person reads first: "ok", or "degraded: audit disk, signature" (the
            // checks that fail, in words); `failing` has their names for monitors.
            "status": healthy ? "ok" : "degraded: " + failing.map { $0.replacingOccurrences(of: "-", with: " ") }.joined(separator: ", "),
            "failing": failing,
            "signature": ["ok": signature.ok, "checkedSecondsAgo": signature.age, "detail": signature.detail as Any],
            "audit": ["records": audit.records, "lastCheckpoint": audit.checkpoint, "failure": audit.failure as Any,
                      "checkpointFailure": audit.checkpointFailure as Any, "freeBytes": disk.space?.availableBytes as Any,
                      "minimumFreeBytes": disk.minimumFreeBytes as Any, "diskFailure": disk.failure as Any],
            "upstream": ["credentialsAccepted": upstream.known ? (!upstream.refused as Any) : (NSNull() as Any), "checkedSecondsAgo": upstream.age as Any,
                         "detail": upstream.detail as Any],
            "pool": ["size": pool.size, "open": pool.statistics.open, "relogins": pool.statistics.relogins],
        ]
        document["clockOffsetSeconds"] = health.clockOffset.map { ($0 * 1000).rounded() / 1000 } as Any
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{}".utf8)
        return Response(status: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: Helpers

    /// An answer in the API's error shape (`message`, `code`), so SDKs show it; code -1 and the
    /// header `X-Fireblocks-HSM-Proxy` say the proxy answered, not Fireblocks.
    /// The upstream as messages name it: `host:port` when the base URL gives a port.
    var upstreamHost: String {
        let upstream = configuration.upstream
        let host = upstream.host.contains(":") ? "[\(upstream.host)]" : upstream.host
        return host + (upstream.port.map { ":\($0)" } ?? "")
    }

    static func errorResponse(_ status: Int, _ message: String) -> Response {
        let document: [String: Any] = ["message": "fireblocks-hsm proxy: \(message)", "code": -1]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return Response(status: HTTPResponse.Status(code: status),
                        headers: [.contentType: "application/json", HTTPField.Name("X-Fireblocks-HSM-Proxy")!: "refused"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A client token: `Proxy-Authorization: Bearer T`, else the `X-API-Key` an SDK sends (its
    /// placeholder API key is where an unmodified SDK can carry one).
    static func presentedToken(_ headers: HTTPFields) -> String? {
        if let value = headers[.proxyAuthorization] {
            let parts = value.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
            return nil
        }
        return headers[HTTPField.Name("X-API-Key")!]
    }

    static func connectionTokens(_ headers: HTTPFields) -> Set<String> {
        Set(headers[values: .connection].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
    }

    static func connectionTokens(_ headers: HTTPHeaders) -> Set<String> {
        Set(headers[canonicalForm: "connection"].map { $0.lowercased() })
    }

    static func pathOnly(_ target: String) -> String {
        printable(String(target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""))
    }

    /// Request text for logs and records: printable ASCII, at most 512 characters.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(512).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? Character($0) : "?" })
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        Int(start.duration(to: .now).nanoseconds / 1_000_000)
    }
}

extension Duration {
    /// Whole nanoseconds (saturating).
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max : product.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}

/// The live health check: a test signature on the token (cached a few seconds) verified with
/// the key's public half, and the clock offset to Fireblocks from the last `Date` header.
final class HealthCheck: Sendable {
    private let pool: SigningPool
    private let cacheDuration: Duration
    private let last = Mutex<(at: ContinuousClock.Instant, ok: Bool, detail: String?)?>(nil)
    private let skew = ClockSkewMonitor()

    func signatureCheck() async -> (ok: Bool, age: Int, detail: String?) {
        if let cached = last.withLock({ $0 }), cached.at.duration(to: .now) < cacheDuration {
            return (cached.ok, Int(cached.at.duration(to: .now).components.seconds), cached.detail)
        }
        let message = Array("fireblocks-hsm health check \(UUID().uuidString)".utf8)
        let result: (Bool, String?)
        do {
            let signature = try await pool.signRS256(message)
            result = pool.key.publicKey.isValidRS256Signature(signature, for: message)
                ? (true, nil) : (false, "the token's signature does not verify with the key's public half")
        } catch {
            result = (false, "\(error)")
        }
        last.withLock { $0 = (.now, result.0, result.1) }
        return (result.0, 0, result.1)
    }

    /// Whether Fireblocks accepts the proxy's API key: the last authenticated call's answer
    /// (a probe at most every `upstreamInterval`, or any forwarded request's), refused when it was
    /// 401. Unknown until the first answer; a call that got no answer changes nothing.
    private let upstream = Mutex<(at: ContinuousClock.Instant, refused: Bool, detail: String)?>(nil)
    private let upstreamInterval: Duration
    private let upstreamChecks: (accepted: CoreMetrics.Counter, refused: CoreMetrics.Counter, unanswered: CoreMetrics.Counter)

    init(pool: SigningPool, cacheDuration: Duration, upstreamInterval: Duration, factory: any MetricsFactory) {
        self.pool = pool
        self.cacheDuration = cacheDuration
        self.upstreamInterval = upstreamInterval
        func counter(_ result: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: "fireblocks_hsm_upstream_credential_checks_total", dimensions: [("result", result)], factory: factory)
        }
        upstreamChecks = (counter("accepted"), counter("refused"), counter("unanswered"))
    }

    /// An answer says something of the credentials only when it is 401 (refused) or one the
    /// API gives after authenticating (2xx, and 4xx but 401, 408 and 429: permissions, not
    /// found, bad input). A 5xx, 429 or redirect may come from a front end before any
    /// authentication: it changes nothing.
    func recordUpstreamAnswer(status: Int, detail: String) {
        let refused: Bool
        switch status {
        case 401: refused = true
        case 200...299: refused = false
        case 400...499 where status != 408 && status != 429: refused = false
        default: return
        }
        upstream.withLock { $0 = (.now, refused, detail) }
    }

    /// - Parameter probing: false: no probe now, whatever the age of the last answer.
    func upstreamCheck(probing: Bool = true, probe: () async -> (status: Int, detail: String)?) async -> (known: Bool, refused: Bool, age: Int?, detail: String?) {
        if let last = upstream.withLock({ $0 }), last.at.duration(to: .now) < upstreamInterval {
            return (true, last.refused, Int(last.at.duration(to: .now).components.seconds), last.detail)
        }
        if !probing {
            // Nothing asked: the last answer, however old.
        } else if let answer = await probe() {
            switch answer.status {
            case 401: upstreamChecks.refused.increment()
            case 200...299: upstreamChecks.accepted.increment()
            case 400...499 where answer.status != 408 && answer.status != 429: upstreamChecks.accepted.increment()
            default: upstreamChecks.unanswered.increment()
            }
            recordUpstreamAnswer(status: answer.status, detail: answer.detail)
        } else {
            upstreamChecks.unanswered.increment()
        }
        guard let last = upstream.withLock({ $0 }) else { return (false, false, nil, "no answer from Fireblocks yet") }
        return (true, last.refused, Int(last.at.duration(to: .now).components.seconds), last.detail)
    }

    func recordServerDate(_ date: Date, sentAt: ContinuousClock.Instant, receivedAt: ContinuousClock.Instant) {
        let now = Date()
        let elapsed = Double(sentAt.duration(to: receivedAt).nanoseconds) / 1e9
        skew.record(serverDate: date, sentAt: now.addingTimeInterval(-elapsed), receivedAt: now)
    }

    var clockOffset: Double? { skew.lastOffset }

    /// Seconds to add to this host's clock for a JWT's iat: the measured offset when it is
    /// beyond the threshold (Date has one-second resolution), else none.
    var clockCompensation: Double { skew.significantOffset ?? 0 }
}

/// The proxy's metrics (swift-metrics into its own Prometheus registry), and the text of
/// `/metrics`.
final class ProxyMetrics: Sendable {
    let factory: PrometheusMetricsFactory
    let registry: PrometheusCollectorRegistry
    let overhead: CoreMetrics.Timer
    private let poolSize: CoreMetrics.Gauge

    init(factory: PrometheusMetricsFactory, registry: PrometheusCollectorRegistry, poolSize: Int) {
        self.factory = factory
        self.registry = registry
        overhead = CoreMetrics.Timer(label: "fireblocks_hsm_proxy_overhead_seconds", factory: factory)
        self.poolSize = CoreMetrics.Gauge(label: "fireblocks_hsm_pool_size", factory: factory)
        self.poolSize.record(poolSize)
    }

    /// The metric objects per route and status, made once (routes are the allowlist's, so few).
    private let byRoute = Mutex<[String: (requests: [Int: CoreMetrics.Counter], duration: CoreMetrics.Timer)]>([:])

    func request(route: String, status: Int, duration: Duration) {
        let (counter, timer) = byRoute.withLock { table -> (CoreMetrics.Counter, CoreMetrics.Timer) in
            var entry = table[route] ?? ([:], CoreMetrics.Timer(label: "fireblocks_hsm_proxy_request_duration_seconds",
                                                                dimensions: [("route", route)], factory: factory))
            let counter = entry.requests[status] ?? CoreMetrics.Counter(label: "fireblocks_hsm_proxy_requests_total",
                                                                        dimensions: [("route", route), ("status", "\(status)")], factory: factory)
            entry.requests[status] = counter
            table[route] = entry
            return (counter, entry.duration)
        }
        counter.increment()
        timer.recordNanoseconds(duration.nanoseconds)
    }

    func exposition(pool: SigningPool, disk: AuditDiskMonitor.Reading) -> [UInt8] {
        let statistics = pool.statistics
        CoreMetrics.Gauge(label: "fireblocks_hsm_pool_sessions_open", factory: factory).record(statistics.open)
        CoreMetrics.Gauge(label: "fireblocks_hsm_pool_sessions_idle", factory: factory).record(statistics.idle)
        // Free bytes and the bytes kept free: alert well before the first falls under the
        // second (-1 when the filesystem cannot be measured, which refuses requests too).
        CoreMetrics.Gauge(label: "fireblocks_hsm_audit_disk_free_bytes", factory: factory).record(disk.space?.availableBytes ?? -1)
        CoreMetrics.Gauge(label: "fireblocks_hsm_audit_disk_min_free_bytes", factory: factory).record(disk.minimumFreeBytes ?? -1)
        return registry.emitToBuffer()
    }
}

extension Result where Failure == any Error {
    /// The outcome of an asynchronous throwing call.
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
