import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The API answered with an error. Carries everything a user (and Fireblocks support) needs:
/// HTTP status, error type or code, message, advice, and always the `X-Request-ID`.
public struct FireblocksAPIError: LibraryError {
    /// What kind of refusal, from the status.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// 401 or 403: the credentials or their permissions.
        public static let authentication = Code("authentication")
        /// Another 4xx: the request.
        public static let refused = Code("refused")
        /// 5xx, or 429 once retries are spent: the service.
        public static let unavailable = Code("unavailable")
        /// Any other status (a 3xx the client does not follow).
        public static let unexpected = Code("unexpected")
    }

    /// The class of the status.
    public var code: Code {
        if isAuthenticationFailure { return .authentication }
        if isServerSide { return .unavailable }
        if (400...499).contains(status) { return .refused }
        return .unexpected
    }
    /// The status, type, code, message and advice in one line.
    public var reason: String { description }
    public var facts: ErrorFacts { ErrorFacts(httpStatus: status, requestID: requestID) }
    public let location: ErrorLocation

    /// The status.
    public let status: Int
    /// The request id.
    public let requestID: String?
    /// `ErrorResponse.error.type` (`{"error":{"type","message"}}`).
    public let type: String?
    /// `ErrorSchema.code` (`{"message","code"}`), e.g. -12: Fireblocks' own error number.
    public let errorCode: Int?
    /// The message.
    public let message: String?
    /// One line on what to do.
    public let advice: String?
    /// How many sends it took.
    public let attempts: Int
    /// The answer's body as the server sent it (UTF-8, undecodable bytes replaced), for
    /// machine-readable output; nil when empty.
    public let body: String?

    /// Decodes either error shape from a response.
    /// - Parameter clockOffset: the measured server-minus-local offset, for clock advice.
    /// - Parameter uri: the path and query the request went to, when known (a 404 for a path
    ///   outside `/v1` says the base URL probably lacks it).
    public init(response: APIResponse, clockOffset: TimeInterval?, uri: String? = nil, file: String = #fileID, line: UInt = #line) {
        location = ErrorLocation(file: file, line: line)
        self.uri = uri
        status = response.status
        requestID = response.requestID
        body = response.body.isEmpty ? nil : String(decoding: response.body, as: UTF8.self)
        attempts = response.attempts
        var type: String?
        var code: Int?
        var message: String?
        if let shape = try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body)) {
            if let error = shape.error {
                type = error.type
                message = error.message
            } else {
                message = shape.message
                code = shape.code.flatMap { $0.isFinite && $0 == $0.rounded() && abs($0) < 1e15 ? Int($0) : nil }
            }
        }
        if message == nil, !response.body.isEmpty {
            // Not one of the documented shapes (a proxy's HTML page, say): show a little of it.
            let text = String(String(decoding: response.body.prefix(200), as: UTF8.self).map { $0 == "\n" ? " " : $0 })
            message = text.count < response.body.count ? text + "…" : text
        }
        self.type = type
        self.errorCode = code
        self.message = message
        if status == 404, let uri, Self.isOutsideV1(uri) {
            self.advice = "no such endpoint at \(uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri): the path is not under /v1, so the base URL probably lacks its /v1 (https://api.fireblocks.io/v1, http://127.0.0.1:PORT/v1 for the stand-in)"
        } else {
            self.advice = Self.advice(status: status, code: code, clockOffset: clockOffset)
        }
    }

    /// The path and query the request went to, when known.
    public let uri: String?

    /// Whether `uri` is outside the API's `/v1` (every documented endpoint is under it).
    public static func isOutsideV1(_ uri: String) -> Bool {
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        return !(path == "/v1" || path.hasPrefix("/v1/"))
    }

    /// The two documented error bodies, `{"message", "code"}` and `{"error": {"type", "message"}}`;
    /// a field of another type reads as absent.
    private struct ErrorBody: Decodable {
        struct Nested: Decodable {
            let type: String?
            let message: String?
            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                type = try? container.decodeIfPresent(String.self, forKey: .type)
                message = try? container.decodeIfPresent(String.self, forKey: .message)
            }
            enum CodingKeys: String, CodingKey { case type, message }
        }
        let error: Nested?
        let message: String?
        let code: Double?
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            error = try? container.decodeIfPresent(Nested.self, forKey: .error)
            message = try? container.decodeIfPresent(String.self, forKey: .message)
            code = try? container.decodeIfPresent(Double.self, forKey: .code)
        }
        enum CodingKeys: String, CodingKey { case error, message, code }
    }

    /// How it reads in messages.
    public var description: String {
        var text = "HTTP \(status)"
        if let type { text += " \(type)" }
        if let errorCode { text += " (code \(errorCode))" }
        if let message, !message.isEmpty { text += ": \(message)" }
        if let advice { text += " — \(advice)" }
        text += " [X-Request-ID: \(requestID ?? "none received")]"
        if attempts > 1 { text += " after \(attempts) attempts" }
        return text
    }

    /// 401 or 403: the credentials or their permissions.
    public var isAuthenticationFailure: Bool { status == 401 || status == 403 }
    /// 5xx (and 429 once retries are spent): the service, not the request.
    public var isServerSide: Bool { status >= 500 || status == 429 }

    /// One line of advice per documented code (-1…-12) and for the common statuses.
    static func advice(status: Int, code: Int?, clockOffset: TimeInterval?) -> String? {
        let skew = clockOffset.map { Int(abs($0).rounded()) }
        switch code {
        case -1: return "the signature does not verify with this API user's key: is the signing key the one whose CSR was uploaded for this API key?"
        case -2: return "the JWT carries no API key (sub claim); this is a client bug, please report it"
        case -3: return "no bearer token reached the API: is a proxy stripping the Authorization header?"
        case -4: return "the signed uri differs from the path received: check the base URL's path and the query's percent-encoding"
        case -5: return "the token was malformed or the API user's certificate has expired: onboard a new key if it has"
        case -6: return "the API key in the JWT is not this key's API user: check the API key"
        case -7: return "the token was not accepted: wrong key for this API key, or the wrong environment (base URL)"
        case -8: return "this API user's role may not call the endpoint (creating API users needs Admin or Non-Signing Admin)"
        case -10:
            if let skew, let offset = clockOffset, offset > 0 {
                return "request expired: this host's clock runs behind Fireblocks by ~\(skew) s; sync it (NTP)"
            }
            return "request expired: check this host's clock (NTP) and that requests are sent right after signing"
        case -12:
            if let skew, let offset = clockOffset, offset < 0 {
                return "iat in the future: this host's clock runs ahead of Fireblocks by ~\(skew) s; sync it (NTP)"
            }
            return "iat in the future: this host's clock runs ahead of Fireblocks; sync it (NTP)"
        case let other? where other < 0:
            return "authentication was refused (code \(other)): check the API key, the signing key and the environment"
        default:
            break
        }
        switch status {
        case 400: return "the API refused the request as invalid; fix the input named in the message"
        case 401: return "authentication failed: check the API key, the signing key and the environment"
        case 403: return "this API user lacks the permission (creating API users needs Admin or Non-Signing Admin)"
        case 404: return "no such endpoint or object: check the path and the environment"
        case 409: return "the object is not in a state that allows this (e.g. a pairing token for a user not pending activation)"
        case 429: return "rate limited; retries were spent, wait and run again"
        case 500...599: return "the service failed; retries were spent, run again later (an idempotent request is safe to repeat)"
        default: return nil
        }
    }
}
