/// The one shape of this package's library errors.
///
/// Every error a library target throws conforms: a ``code`` to match on (a struct of static
/// values, so that a new code in a later version breaks no caller's `switch`, as
/// swift-certificates does), a ``reason`` of facts in one line, the ``facts`` a program may
/// want without parsing the reason (a token or key label, a PKCS#11 return value, an HTTP status,
/// a path), and the ``location`` where it was thrown.
///
/// A reason says what is wrong, never what to type: no flag, command or key binding is named
/// below the command line, whose error report adds that advice from the code and the facts.
/// A library constructs only its own error types; an error from a layer below passes through
/// unchanged (it has the same shape) or is wrapped by one that adds what the layer knows.
public protocol LibraryError: Error, Sendable, CustomStringConvertible {
    /// The error's code type.
    associatedtype Code: ErrorCode
    /// What went wrong, for matching.
    var code: Code { get }
    /// One line of facts, for people.
    var reason: String { get }
    /// The same facts, typed, for programs.
    var facts: ErrorFacts { get }
    /// Where it was thrown.
    var location: ErrorLocation { get }
}

extension LibraryError {
    /// No typed facts unless the error has some.
    public var facts: ErrorFacts { ErrorFacts() }
}

/// A library error's code: a value with a stable name (what `--json` reports), declared as
/// `static let`s of a struct rather than as an enum's cases.
public protocol ErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The stable name, e.g. `keyNotFound`.
    var name: String { get }
}

extension ErrorCode {
    /// The name.
    public var description: String { name }
}

/// The facts of an error a program may act on, each when it is known.
public struct ErrorFacts: Hashable, Sendable {
    /// A file or directory involved.
    public var path: String?
    /// The token's label.
    public var tokenLabel: String?
    /// The token's serial number.
    public var tokenSerial: String?
    /// The key's label (or the selector given for it).
    public var keyLabel: String?
    /// The PKCS#11 function that failed, e.g. `C_Login`.
    public var function: String?
    /// What it returned, by the specification's name, e.g. `CKR_PIN_INCORRECT`.
    public var returnValue: String?
    /// The HTTP status of an answer.
    public var httpStatus: Int?
    /// The answer's `X-Request-ID`.
    public var requestID: String?
    /// The audit record concerned (its index in the log).
    public var recordIndex: Int?

    /// Facts, each optional.
    public init(path: String? = nil, tokenLabel: String? = nil, tokenSerial: String? = nil, keyLabel: String? = nil,
                function: String? = nil, returnValue: String? = nil, httpStatus: Int? = nil, requestID: String? = nil,
                recordIndex: Int? = nil) {
        self.path = path
        self.tokenLabel = tokenLabel
        self.tokenSerial = tokenSerial
        self.keyLabel = keyLabel
        self.function = function
        self.returnValue = returnValue
        self.httpStatus = httpStatus
        self.requestID = requestID
        self.recordIndex = recordIndex
    }
}

/// Where an error was made: `#fileID` and `#line` of its initialiser's caller.
public struct ErrorLocation: Hashable, Sendable, CustomStringConvertible {
    /// `Module/File.swift`.
    public let file: String
    /// The line.
    public let line: UInt

    /// A location.
    public init(file: String, line: UInt) {
        self.file = file
        self.line = line
    }

    /// `Module/File.swift:123`.
    public var description: String { "\(file):\(line)" }
}
