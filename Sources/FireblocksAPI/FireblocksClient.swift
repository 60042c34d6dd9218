#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How the client behaves.
public struct ClientOptions: Sendable {
    /// Seconds to wait for each answer.
    public var timeout: TimeInterval
    /// The retry policy.
    public var retryPolicy: RetryPolicy
    /// Shift `iat`/`exp` by the offset measured from the server's `Date` header.
    public var compensateClockSkew: Bool
    /// The user agent.
    public var userAgent: String
    /// The local clock (tests fix it).
    public var now: @Sendable () -> Date
    /// Nonces (tests fix them).
    public var nonce: @Sendable () -> String
    /// Waiting between attempts (tests skip it).
    public var sleep: @Sendable (TimeInterval) async throws -> Void
    /// Told of every attempt (an audit trail records them); never given the bearer token.
    public var onExchange: @Sendable (APIExchange) -> Void = { _ in }
    /// A deadline for everything a call does, retries included: an attempt gets at most what is
    /// left, and a wait before the next attempt (backoff, `Retry-After`) that would end after it
    /// is not waited: the last failure is reported instead (what `api-user wait --timeout` sets).
    public var deadline: Date?

    /// Creates the value from its parts.
    public init(timeout: TimeInterval = 30, retryPolicy: RetryPolicy = RetryPolicy(), compensateClockSkew: Bool = true,
                userAgent: String = "fireblocks-hsm",
                now: @escaping @Sendable () -> Date = { Date() },
                nonce: @escaping @Sendable () -> String = { UUID().uuidString.lowercased() },
                sleep: @escaping @Sendable (TimeInterval) async throws -> Void = { try await Task.sleep(nanoseconds: UInt64($0 * 1_000_000_000)) }) {
        self.timeout = timeout
        self.retryPolicy = retryPolicy
        self.compensateClockSkew = compensateClockSkew
        self.userAgent = userAgent
        self.now = now
        self.nonce = nonce
        self.sleep = sleep
    }
}

/// Sends signed requests to the Fireblocks API: a fresh JWT per attempt (new nonce, new iat),
/// the same body bytes and idempotency key on every attempt, retries where safe, clock-skew
/// detection and compensation.
public final class FireblocksClient: Sendable {
    /// The base URL.
    public let baseURL: APIBaseURL
    /// The issuer.
    public let issuer: RequestTokenIssuer
    /// The options.
    public let options: ClientOptions
    /// The clock.
    public let clock: ClockSkewMonitor
    private let transport: any HTTPTransport
    private let diagnostics: @Sendable (String) -> Void

    /// Creates the value from its parts.
    public init(baseURL: APIBaseURL, issuer: RequestTokenIssuer, options: ClientOptions = ClientOptions(),
                transport: any HTTPTransport, clock: ClockSkewMonitor = ClockSkewMonitor(),
                diagnostics: @escaping @Sendable (String) -> Void = { _ in }) {
        self.baseURL = baseURL
        self.issuer = issuer
        self.options = options
        self.transport = transport
        self.clock = clock
        self.diagnostics = diagnostics
    }

    /// The bearer token for a request, issued now (for the `jwt` command).
    /// The same client (same clock, transport and diagnostics) with a deadline for everything it
    /// does (the earlier one when it already has one).
    public func within(deadline: Date) -> FireblocksClient {
        var bounded = options
        bounded.deadline = min(deadline, options.deadline ?? deadline)
        return FireblocksClient(baseURL: baseURL, issuer: issuer, options: bounded, transport: transport, clock: clock,
                                diagnostics: diagnostics)
    }

    /// Seconds left before the deadline (nil: none).
    private func remaining() -> TimeInterval? {
        options.deadline.map { $0.timeIntervalSince(options.now()) }
    }

    /// Whether a wait of `delay` before the next attempt still ends before the deadline.
    private func fitsDeadline(_ delay: TimeInterval) -> Bool {
        remaining().map { delay < $0 } ?? true
    }

    public func bearerToken(for request: APIRequest) throws -> String {
        let (_, uri) = try baseURL.resolve(path: request.path)
        return try issuer.token(uri: uri, body: request.body, issuedAt: issuedAt(), nonce: options.nonce())
    }

    /// Sends the request; returns a 2xx answer or throws ``FireblocksAPIError`` (an HTTP error
    /// answer) or ``APIClientError`` (no usable answer).
    public func send(_ request: APIRequest) async throws -> APIResponse {
        let (url, uri) = try baseURL.resolve(path: request.path)
        let policy = request.isIdempotent ? options.retryPolicy : .never
        var attempt = 0
        var compensatedRetryDone = false
        var warnedAboutSkew = false
        while true {
            attempt += 1
            let claims = issuer.claims(uri: uri, body: request.body, issuedAt: issuedAt(), nonce: options.nonce())
            let token = try await issuer.token(claims: claims)
            func report(_ status: Int?, _ requestID: String?, _ failure: String?) {
                options.onExchange(APIExchange(method: request.method, uri: uri, status: status, requestID: requestID,
                                               idempotencyKey: request.idempotencyKey, attempt: attempt, claims: claims,
                                               failure: failure))
            }
            var headers = [
                "X-API-Key": issuer.apiKey,
                "Authorization": "Bearer \(token)",
                "User-Agent": options.userAgent,
                "Accept": "application/json",
            ]
            if request.body != nil { headers["Content-Type"] = "application/json" }
            if let key = request.idempotencyKey { headers["Idempotency-Key"] = key }

            let sentAt = options.now()
            var timeout = options.timeout
            if let left = remaining() {
                guard left > 0 else { throw APIClientError(.timeout, "the deadline passed before \(request.method) \(uri) could be sent") }
                timeout = min(timeout, left)
            }
            let response: APIResponse
            do {
                response = try await transport.send(url: url, method: request.method, headers: headers, body: request.body,
                                                    timeout: timeout).with(attempts: attempt)
            } catch let error as APIClientError where error.code == .network || error.code == .timeout {
                report(nil, nil, error.reason)
                // A request that never left (a refused connection) may be sent again whatever it is.
                let retries = error.notSent ? options.retryPolicy : policy
                guard attempt < retries.maximumAttempts else {
                    throw APIClientError(error.code, error.reason + (attempt > 1 ? " (after \(attempt) attempts)" : ""),
                                         notSent: error.notSent)
                }
                let delay = retries.delay(afterAttempt: attempt, retryAfter: nil)
                guard fitsDeadline(delay) else { throw error }
                diagnostics("\(error.reason); retrying in \(DecimalText.fixed(delay, places: 1)) s (attempt \(attempt + 1) of \(retries.maximumAttempts))")
                try await options.sleep(delay)
                continue
            }

            if let serverDate = response.date,
               let offset = clock.record(serverDate: serverDate, sentAt: sentAt, receivedAt: options.now()),
               !warnedAboutSkew {
                warnedAboutSkew = true
                let direction = offset > 0 ? "behind" : "ahead of"
                let action = options.compensateClockSkew ? "later requests shift iat/exp to match" : "compensation is off"
                diagnostics("warning: this host's clock runs \(direction) the API's by ~\(Int(abs(offset).rounded())) s (from its Date header); \(action); sync the clock (NTP)")
            }

            report(response.status, response.requestID, nil)
            if (200...299).contains(response.status) { return response }

            let error = FireblocksAPIError(response: response, clockOffset: clock.lastOffset, uri: uri)
            if RetryPolicy.isRetryable(status: response.status), attempt < policy.maximumAttempts {
                let delay = policy.delay(afterAttempt: attempt, retryAfter: response.retryAfter(now: options.now()))
                guard fitsDeadline(delay) else { throw error }
                diagnostics("HTTP \(response.status) [X-Request-ID: \(response.requestID ?? "none")]; retrying in \(DecimalText.fixed(delay, places: 1)) s (attempt \(attempt + 1) of \(policy.maximumAttempts))")
                try await options.sleep(delay)
                continue
            }
            // A token refused for its times while the clock is measurably off: one more try with
            // compensated iat/exp (a fresh JWT either way; safe even without an idempotency key,
            // since the API refused the request before acting on it).
            if response.status == 401, error.errorCode == -10 || error.errorCode == -12, options.compensateClockSkew,
               clock.significantOffset != nil, !compensatedRetryDone {
                compensatedRetryDone = true
                diagnostics("HTTP 401 (code \(error.errorCode.map(String.init) ?? "?")) [X-Request-ID: \(response.requestID ?? "none")]; retrying once with iat shifted by the measured clock offset")
                continue
            }
            throw error
        }
    }

    private func issuedAt() -> Int {
        var now = options.now()
        if options.compensateClockSkew, let offset = clock.significantOffset {
            now = now.addingTimeInterval(offset)
        }
        return Int(now.timeIntervalSince1970)
    }
}
