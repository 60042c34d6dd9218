#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

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
        // RFC 9110 §5.6.3: optional whitespace is spaces and tabs.
        guard let raw = headers["retry-after"] else { return nil }
        let value = String(raw.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
        if let seconds = Int(value), seconds >= 0 { return TimeInterval(seconds) }
        return HTTPDate.parse(value).map { max(0, $0.timeIntervalSince(now)) }
    }

    func with(attempts: Int) -> APIResponse {
        APIResponse(status: status, headers: headers, body: body, attempts: attempts)
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), the form of `Date` and `Retry-After`: fixed-width English names
/// and digits, converted with the C library's `timegm`/`gmtime_r`.
public enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The date an IMF-fixdate names (`Sun, 06 Nov 1994 08:49:37 GMT`); nil for anything else,
    /// including a date that does not exist or a weekday that does not match it.
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count == 29 else { return nil }
        func name(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int32(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard name(3..<5) == ", ", bytes[7] == UInt8(ascii: " "), bytes[11] == UInt8(ascii: " "),
              bytes[16] == UInt8(ascii: " "), bytes[19] == UInt8(ascii: ":"), bytes[22] == UInt8(ascii: ":"),
              name(25..<29) == " GMT",
              let weekday = days.firstIndex(of: name(0..<3)), let month = months.firstIndex(of: name(8..<11)),
              let day = number(5..<7), let year = number(12..<16), let hour = number(17..<19),
              let minute = number(20..<22), let second = number(23..<25),
              (1...31).contains(day), year >= 1970, hour < 24, minute < 60, second < 61 else { return nil }
        var fields = tm()
        fields.tm_year = year - 1900
        fields.tm_mon = Int32(month)
        fields.tm_mday = day
        fields.tm_hour = hour
        fields.tm_min = minute
        fields.tm_sec = second
        let seconds = timegm(&fields)
        // timegm normalises (31 Feb becomes 3 Mar): a date that moved did not exist.
        guard seconds != -1, fields.tm_mday == day, fields.tm_mon == Int32(month), fields.tm_wday == Int32(weekday) else {
            return nil
        }
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// The IMF-fixdate of a date (years 1970 to 9999).
    public static func format(_ date: Date) -> String {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        var clock = time_t(seconds.isFinite ? min(max(seconds, 0), 253_402_300_799) : 0)
        var fields = tm()
        guard gmtime_r(&clock, &fields) != nil else { return "" }
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(fields.tm_wday)]), \(two(fields.tm_mday)) \(months[Int(fields.tm_mon)]) \(fields.tm_year + 1900) "
            + "\(two(fields.tm_hour)):\(two(fields.tm_min)):\(two(fields.tm_sec)) GMT"
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
