import ErrorShape
/// A request that could not be made or did not get an HTTP answer: bad base URL or path,
/// a refused insecure URL, network failure, timeout.
public struct APIClientError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// Not a usable base URL.
        public static let badBaseURL = Code("badBaseURL")
        /// `http://` to something that is not a loopback address.
        public static let insecureBaseURL = Code("insecureBaseURL")
        /// A request path that cannot be sent exactly as signed.
        public static let badPath = Code("badPath")
        /// No environment or base URL given.
        public static let noEnvironment = Code("noEnvironment")
        /// Connection refused, dropped, DNS failure…
        public static let network = Code("network")
        /// No answer in time.
        public static let timeout = Code("timeout")
        /// An answer that is not HTTP, or a redirect (never followed: it would carry the JWT elsewhere).
        public static let invalidResponse = Code("invalidResponse")
        /// A bad request body or input file.
        public static let badInput = Code("badInput")
        /// The local idempotency record forbids the send (same key, other body; stale record).
        public static let idempotencyConflict = Code("idempotencyConflict")
        /// The CSR's public key already backs another API user created from this machine.
        public static let keyReuse = Code("keyReuse")
        /// The local idempotency records could have been written by someone else (another
        /// user owns them, group or others can write them or their directory, or one is a
        /// symbolic link): they are not read, and nothing is sent.
        public static let untrustedState = Code("untrustedState")
    }

    /// The code.
    public let code: Code
    /// The reason.
    public let reason: String
    /// The request never left this host: the connection was refused or never completed. Sending
    /// it again is safe whatever its method, so the client retries it even without an
    /// `Idempotency-Key`.
    public let notSent: Bool
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(_ code: Code, _ reason: String, notSent: Bool = false, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.notSent = notSent
        self.location = ErrorLocation(file: file, line: line)
    }

    /// How it reads in messages.
    public var description: String { reason }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
