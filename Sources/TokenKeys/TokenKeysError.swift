import ErrorShape
/// Something about the token, key, PIN or input that stops a key operation.
///
/// Matchable by ``code`` (errors are equal when their codes are); ``reason`` is one line a
/// user can act on. Never contains a PIN.
public struct TokenKeysError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        // Selection
        public static let noTokenSelected = Code("noTokenSelected")
        public static let noKeySelected = Code("noKeySelected")
        public static let noTokenMatches = Code("noTokenMatches")
        public static let ambiguousToken = Code("ambiguousToken")
        public static let conflictingModule = Code("conflictingModule")
        public static let keyNotFound = Code("keyNotFound")
        public static let ambiguousKey = Code("ambiguousKey")
        public static let keyExists = Code("keyExists")
        /// A label held only by public keys: what a key generation interrupted between storing
        /// the public and the private half leaves behind.
        public static let orphanedPublicKey = Code("orphanedPublicKey")
        /// The key backs an API user (as recorded locally) and is kept.
        public static let keyInUse = Code("keyInUse")
        /// A CSR's key is not on the token: its private key lives elsewhere (a file).
        public static let keyNotOnToken = Code("keyNotOnToken")
        // PIN and login
        public static let pinUnavailable = Code("pinUnavailable")
        /// No source given and nobody to ask.
        public static let noPINSource = Code("noPINSource")
        public static let pinIncorrect = Code("pinIncorrect")
        public static let pinLocked = Code("pinLocked")
        public static let pinRejected = Code("pinRejected")
        public static let pinValueOnCommandLine = Code("pinValueOnCommandLine")
        // Token capabilities and policy
        public static let mechanismUnsupported = Code("mechanismUnsupported")
        public static let keySizeUnsupported = Code("keySizeUnsupported")
        public static let copyUnsupported = Code("copyUnsupported")
        public static let policyViolation = Code("policyViolation")
        public static let notAnRSAKey = Code("notAnRSAKey")
        // Input
        public static let invalidArgument = Code("invalidArgument")
        public static let invalidSubject = Code("invalidSubject")
        // Results that failed their own check
        public static let signatureCheckFailed = Code("signatureCheckFailed")
        public static let notExportable = Code("notExportable")
    }

    /// The code.
    public let code: Code
    /// The reason.
    public let reason: String
    /// The token, key or PKCS#11 facts, when known.
    public let facts: ErrorFacts
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(_ code: Code, _ reason: String, facts: ErrorFacts = ErrorFacts(), file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.facts = facts
        self.location = ErrorLocation(file: file, line: line)
    }

    /// How it reads in messages.
    public var description: String { reason }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
