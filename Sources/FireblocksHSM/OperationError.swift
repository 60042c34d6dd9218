import AuditTrail
import DurableFiles
import ErrorShape

/// What a use case of this library decided it cannot do: a key in the way or missing, a CSR it
/// cannot read, an audit trail it cannot trust. The errors of the layers below (PKCS#11,
/// TokenKeys, the audit log, the API client) pass through unchanged: they share this shape
/// (``LibraryError``), so a caller reads `code.name` and the facts of any of them alike.
public struct OperationError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        // The token and its keys
        /// No token was selected.
        public static let noTokenSelected = Code("noTokenSelected")
        /// No key was selected.
        public static let noKeySelected = Code("noKeySelected")
        /// No token (or free slot) matches.
        public static let noTokenMatches = Code("noTokenMatches")
        /// Several tokens (or free slots) match.
        public static let ambiguousToken = Code("ambiguousToken")
        /// A token under that label exists already.
        public static let tokenExists = Code("tokenExists")
        /// A key under that label exists already.
        public static let keyExists = Code("keyExists")
        /// No key matches.
        public static let keyNotFound = Code("keyNotFound")
        /// Several keys match.
        public static let ambiguousKey = Code("ambiguousKey")
        /// A label held only by a public key that no run of this machine was making.
        public static let orphanedPublicKey = Code("orphanedPublicKey")
        /// The key backs an API user (as recorded on this machine).
        public static let keyInUse = Code("keyInUse")
        /// A CSR's key is not on the token.
        public static let keyNotOnToken = Code("keyNotOnToken")
        /// The key is not an RSA key with a readable public half.
        public static let notAnRSAKey = Code("notAnRSAKey")
        /// The key fails its policy.
        public static let policyViolation = Code("policyViolation")
        /// A new PIN was refused (too short, the two entries differ).
        public static let pinRejected = Code("pinRejected")
        /// A signature did not verify with the key's public half.
        public static let signatureCheckFailed = Code("signatureCheckFailed")
        /// An input the use case cannot take (a URI where a label belongs, an unreadable CSR).
        public static let invalidInput = Code("invalidInput")
        // Files
        /// An output file exists and is not what this run would write.
        public static let fileExists = Code("fileExists")
        /// A directory or file cannot be written.
        public static let unwritable = Code("unwritable")
        /// The tool's own state (onboarding records, locks in the state directory) could have
        /// been written by someone else: another user owns it, group or others can write it, or
        /// it is a symbolic link. Nothing of it was read.
        public static let untrustedState = Code("untrustedState")
        // The audit trail
        /// The audit log cannot be written, or there is no audit key to seal it with.
        public static let auditUnwritable = Code("auditUnwritable")
        /// The evidence or a checkpoint cannot be read.
        public static let auditUnreadable = Code("auditUnreadable")
        /// The log ends in a torn record.
        public static let auditTornTail = Code("auditTornTail")
        /// The token's anchor (or its audit key) is missing.
        public static let auditAnchorMissing = Code("auditAnchorMissing")
        /// The key under the audit key's label fails the audit key policy.
        public static let auditUntrustedKey = Code("auditUntrustedKey")
        /// The log, a checkpoint, the anchor or the evidence do not agree.
        public static let auditInconsistent = Code("auditInconsistent")
        /// A file or the directory of the trail could have been written by someone else.
        public static let auditUntrustedFile = Code("auditUntrustedFile")
        /// The audit directory's filesystem has less free space than the threshold kept for
        /// the trail: the operation was not started.
        public static let auditDiskLow = Code("auditDiskLow")

        /// Every code, for whoever maps them (the command line's exit classes are tested against it).
        public static let all: [Code] = [.noTokenSelected, .noKeySelected, .noTokenMatches, .ambiguousToken, .tokenExists, .keyExists, .keyNotFound, .ambiguousKey, .orphanedPublicKey, .keyInUse, .keyNotOnToken, .notAnRSAKey, .policyViolation, .pinRejected, .signatureCheckFailed, .invalidInput, .fileExists, .unwritable, .untrustedState, .auditUnwritable, .auditUnreadable, .auditTornTail, .auditAnchorMissing, .auditUntrustedKey, .auditInconsistent, .auditUntrustedFile, .auditDiskLow]
    }

    public let code: Code
    public let reason: String
    public let facts: ErrorFacts
    public let location: ErrorLocation

    /// An error: its code, the facts in one line, and typed.
    public init(_ code: Code, _ reason: String, facts: ErrorFacts = ErrorFacts(), file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.facts = facts
        self.location = ErrorLocation(file: file, line: line)
    }

    public var description: String { reason }

    /// The audit class of `error` (the trail's own, or this layer's), for an error that wraps
    /// it: an untrusted trail keeps its class; anything else is a record that was not written.
    static func auditCode(for error: any Error) -> Code {
        if let error = error as? OperationError { return error.code }
        guard let error = error as? AuditError else { return .auditUnwritable }
        switch error.code {
        case .unreadable: return .auditUnreadable
        case .tornTail: return .auditTornTail
        case .inconsistent, .tilesUnusable: return .auditInconsistent
        case .anchorMissing: return .auditAnchorMissing
        case .untrustedFile: return .auditUntrustedFile
        case .untrustedKey: return .auditUntrustedKey
        default: return .auditUnwritable
        }
    }

    /// The refusal of state that `TrustedFile`'s rule for private state does not pass: what it
    /// holds (`what`), why it is not read, and the command that makes it pass once nobody else
    /// is known to have changed it.
    static func untrustedState(_ error: TrustedFileError, holding what: String, file: String = #fileID, line: UInt = #line) -> OperationError {
        let remedy = TrustedFile.remedy(for: error).map { "; once you know nobody else changed it, fix it with: \($0)" } ?? ""
        return OperationError(.untrustedState, "\(error): \(what) cannot be trusted when others could have written it, so it was not read\(remedy)",
                              facts: ErrorFacts(path: error.subject.path), file: file, line: line)
    }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
