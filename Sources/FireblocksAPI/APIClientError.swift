/// A request that could not be made or did not get an HTTP answer: bad base URL or path,
/// a refused insecure URL, network failure, timeout.
public struct APIClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, for matching.
    public enum Code: String, Hashable, Sendable {
        /// Not a usable base URL.
        case badBaseURL
        /// `http://` to something that is not a loopback address.
        case insecureBaseURL
        /// A request path that cannot be sent exactly as signed.
        case badPath
        /// No environment or base URL given.
        case noEnvironment
        /// Connection refused, dropped, DNS failure…
        case network
        /// No answer in time.
        case timeout
        /// An answer that is not HTTP, or a redirect (never followed: it would carry the JWT elsewhere).
        case invalidResponse
        /// A bad request body or input file.
        case badInput
        /// The local idempotency record forbids the send (same key, other body; stale record).
        case idempotencyConflict
        /// The CSR's public key already backs another API user created from this machine.
        case keyReuse
    }

    /// The code.
    public let code: Code
    /// The reason.
    public let reason: String
    /// The request never left this host: the connection was refused or never completed. Sending
    /// it again is safe whatever its method, so the client retries it even without an
    /// `Idempotency-Key`.
    public let notSent: Bool

    /// Creates the value from its parts.
    public init(_ code: Code, _ reason: String, notSent: Bool = false) {
        self.code = code
        self.reason = reason
        self.notSent = notSent
    }

    /// How it reads in messages.
    public var description: String { reason }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
