import Foundation

/// A request to the API.
public struct APIRequest: Sendable {
    /// The method.
    public var method: String
    /// `/v1/...` or `/...` (the base path is added), with `?query`, percent-encoded.
    public var path: String
    /// The exact bytes to send (and hash); nil for none.
    public var body: [UInt8]?
    /// The idempotency key.
    public var idempotencyKey: String?

    /// Creates the value from its parts.
    public init(method: String, path: String, body: [UInt8]? = nil, idempotencyKey: String? = nil) {
        self.method = method.uppercased()
        self.path = path
        self.body = body
        self.idempotencyKey = idempotencyKey
    }

    /// Safe to send again without an idempotency key.
    var isIdempotent: Bool { ["GET", "HEAD", "OPTIONS"].contains(method) || idempotencyKey != nil }
}

/// An HTTP answer from the API.
public struct APIResponse: Sendable {
    /// The status.
    public let status: Int
    /// Header names lower-cased.
    public let headers: [String: String]
    /// The body.
    public let body: [UInt8]
    /// How many sends it took.
    public let attempts: Int

    /// Creates the value from its parts.
    public init(status: Int, headers: [String: String], body: [UInt8], attempts: Int = 1) {
        self.status = status
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        self.body = body
        self.attempts = attempts
    }

    /// `X-Request-ID`: what Fireblocks support asks for.
    public var requestID: String? { headers["x-request-id"] }

    /// The server's `Date` header.
    public var date: Date? { headers["date"].flatMap(HTTPDate.parse) }

    /// `Retry-After`, in seconds (delta-seconds or an HTTP date).
    public func retryAfter(now: Date) -> TimeInterval? {
        guard let value = headers["retry-after"]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Int(value), seconds >= 0 { return TimeInterval(seconds) }
        return HTTPDate.parse(value).map { max(0, $0.timeIntervalSince(now)) }
    }

    func with(attempts: Int) -> APIResponse {
        APIResponse(status: status, headers: headers, body: body, attempts: attempts)
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), the form of `Date` and `Retry-After`.
public enum HTTPDate {
    /// The date an IMF-fixdate names; nil for anything else.
    public static func parse(_ text: String) -> Date? {
        formatter().date(from: text)
    }

    /// The IMF-fixdate of a date.
    public static func format(_ date: Date) -> String {
        formatter().string(from: date)
    }

    private static func formatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter
    }
}

/// One attempt of a request, as an audit trail records it: what was sent and what came back,
/// with the JWT's claims but never the token itself.
public struct APIExchange: Sendable, Equatable {
    /// The HTTP method.
    public let method: String
    /// The path and query sent (the JWT's `uri`).
    public let uri: String
    /// The answer's status; nil when there was none.
    public let status: Int?
    /// The answer's X-Request-ID.
    public let requestID: String?
    /// The Idempotency-Key sent.
    public let idempotencyKey: String?
    /// Which attempt, from 1.
    public let attempt: Int
    /// The JWT's claims (nonce, iat, exp, bodyHash, …).
    public let claims: RequestClaims
    /// Why there was no answer.
    public let failure: String?
}
