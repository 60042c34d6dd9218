/// Something about the token, key, PIN or input that stops a key operation.
///
/// Matchable by ``code`` (errors are equal when their codes are); ``reason`` is one line a
/// user can act on. Never contains a PIN.
public struct TokenKeysError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, for matching.
    public enum Code: String, Hashable, Sendable {
        // Selection
        case noTokenSelected
        case noKeySelected
        case noTokenMatches
        case ambiguousToken
        case conflictingModule
        case keyNotFound
        case ambiguousKey
        case keyExists
        /// A label held only by public keys: what a key generation interrupted between storing
        /// the public and the private half leaves behind.
        case orphanedPublicKey
        /// The key backs an API user (as recorded locally) and is kept.
        case keyInUse
        /// A CSR's key is not on the token: its private key lives elsewhere (a file).
        case keyNotOnToken
        // PIN and login
        case pinUnavailable
        /// No source given and nobody to ask.
        case noPINSource
        case pinIncorrect
        case pinLocked
        case pinRejected
        case pinValueOnCommandLine
        // Token capabilities and policy
        case mechanismUnsupported
        case keySizeUnsupported
        case copyUnsupported
        case policyViolation
        case notAnRSAKey
        // Input
        case invalidArgument
        case invalidSubject
        // Results that failed their own check
        case signatureCheckFailed
        case notExportable
    }

    /// The code.
    public let code: Code
    /// The reason.
    public let reason: String

    /// Creates the value from its parts.
    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// How it reads in messages.
    public var description: String { reason }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
