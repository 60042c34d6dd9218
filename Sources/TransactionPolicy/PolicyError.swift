import ErrorShape

/// A policy that cannot be used, and where: the line (and column) of the policy's text that is
/// wrong, when the error has one.
public struct PolicyError: LibraryError, Hashable {
    /// What is wrong.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The text is not YAML (or not one document).
        public static let syntax = Code("policySyntax")
        /// A key the language does not have (a misspelling is refused, never ignored).
        public static let unknownKey = Code("policyUnknownKey")
        /// A key that must be there is not.
        public static let missingKey = Code("policyMissingKey")
        /// A key given twice in one mapping.
        public static let duplicateKey = Code("policyDuplicateKey")
        /// A value of the wrong kind or out of range (a negative or unquoted amount, an unknown
        /// destination type, a bad pattern).
        public static let invalidValue = Code("policyInvalidValue")
        /// The file could not be read.
        public static let unreadable = Code("policyUnreadable")
        /// The file could be written by someone else (TrustedFile's rule): it decides what the
        /// token signs.
        public static let untrusted = Code("policyUntrusted")
    }

    public let code: Code
    public let reason: String
    public let location: ErrorLocation
    /// The file, when the policy was read from one.
    public let path: String?
    /// The line of the policy's text (from 1), when known.
    public let line: Int?
    /// The column (from 1), when known.
    public let column: Int?
    public var facts: ErrorFacts { ErrorFacts(path: path) }

    /// An error at a line (and column) of the policy.
    public init(_ code: Code, _ reason: String, line: Int? = nil, column: Int? = nil, path: String? = nil,
                file: String = #fileID, sourceLine: UInt = #line) {
        self.code = code
        self.reason = reason
        self.line = line
        self.column = column
        self.path = path
        self.location = ErrorLocation(file: file, line: sourceLine)
    }

    /// The same error, read from `path`.
    func reading(_ path: String) -> PolicyError {
        PolicyError(code, reason, line: line, column: column, path: path, file: location.file, sourceLine: location.line)
    }

    /// `line 12: reason` (or the reason alone).
    public var description: String {
        guard let line else { return reason }
        return "line \(line): \(reason)"
    }

    /// Equal when the codes and lines are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.line == rhs.line }
    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(line)
    }
}
