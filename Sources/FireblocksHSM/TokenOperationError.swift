import ErrorShape
import PKCS11

/// A PKCS#11 call failed while doing something the user asked for: says what was being done,
/// what the token returned, and, for the common cases, what to do.
public struct TokenOperationError: LibraryError, Hashable {
    /// The operation.
    public let operation: String
    /// The underlying.
    public let underlying: PKCS11Error
    /// The token's label, when the operation was on a known token.
    public let tokenLabel: String?
    /// The key's label (or the selector given for it), when the operation was on a key.
    public let keyLabel: String?
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(operation: String, underlying: PKCS11Error, tokenLabel: String? = nil, keyLabel: String? = nil,
                file: String = #fileID, line: UInt = #line) {
        self.operation = operation
        self.underlying = underlying
        self.tokenLabel = tokenLabel
        self.keyLabel = keyLabel
        self.location = ErrorLocation(file: file, line: line)
    }

    /// What the token returned.
    public var code: ReturnValue { underlying.returnValue }
    /// The operation, the call and its return value.
    public var reason: String { description }
    /// The PKCS#11 call and its return value, and the token and key it was about.
    public var facts: ErrorFacts {
        var facts = underlying.facts
        facts.tokenLabel = tokenLabel ?? facts.tokenLabel
        facts.keyLabel = keyLabel ?? facts.keyLabel
        return facts
    }

    /// Equal when the operation and the PKCS#11 failure are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.operation == rhs.operation && lhs.underlying == rhs.underlying }
    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) { hasher.combine(operation); hasher.combine(underlying) }

    /// How it reads in messages.
    public var description: String {
        var text = "\(operation) failed: \(underlying)"
        if let hint { text += " (\(hint))" }
        return text
    }

    private var hint: String? {
        switch underlying.returnValue {
        case .deviceRemoved, .tokenNotPresent: return "is the token still connected?"
        case .tokenWriteProtected: return "the token is read-only"
        case .userNotLoggedIn: return "the session lost its login; run the command again"
        case .keyFunctionNotPermitted: return "the key does not allow this operation"
        case .keySizeRange: return "the token does not support this key size"
        case .templateInconsistent, .templateIncomplete, .attributeValueInvalid:
            return "the token refused the key template; see docs/key-policy.md"
        case .sessionHandleInvalid, .sessionClosed: return "the token closed the session"
        default: return nil
        }
    }
}

/// Runs `body`, turning a bare `PKCS11Error` into a ``TokenOperationError`` naming `operation`
/// and, when known, the token and key it was on.
func during<R>(_ operation: @autoclosure () -> String, token: String?, key: String? = nil, _ body: () throws -> R) throws -> R {
    do {
        return try body()
    } catch let error as PKCS11Error {
        throw TokenOperationError(operation: operation(), underlying: error, tokenLabel: token, keyLabel: key)
    }
}
