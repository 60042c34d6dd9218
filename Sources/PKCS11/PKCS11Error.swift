import ErrorShape
/// A PKCS#11 function returned something other than `CKR_OK`.
///
/// Carries the C function and the specification's name for the return value, so that
/// tests can match on it and users see what the token said: `C_Login: CKR_PIN_INCORRECT`.
public struct PKCS11Error: LibraryError, Hashable {
    /// The C function that failed, e.g. `C_Login`.
    public let function: String
    /// What it returned.
    public let returnValue: ReturnValue
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(function: String, returnValue: ReturnValue, file: String = #fileID, line: UInt = #line) {
        self.function = function
        self.returnValue = returnValue
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The return value: what to match on.
    public var code: ReturnValue { returnValue }
    /// `C_Login: CKR_PIN_INCORRECT`.
    public var reason: String { "\(function): \(returnValue.name)" }
    public var facts: ErrorFacts { ErrorFacts(function: function, returnValue: returnValue.name) }
    /// How it reads in messages.
    public var description: String { reason }

    /// Equal when the function and return value are (where it was thrown is not compared).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.function == rhs.function && lhs.returnValue == rhs.returnValue }
    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) { hasher.combine(function); hasher.combine(returnValue) }
}

extension ReturnValue: ErrorCode {}

/// A module could not be loaded or initialised.
public struct ModuleLoadError: LibraryError, Hashable {
    /// Why loading failed.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// No file at the given path.
        public static let fileNotFound = Code("fileNotFound")
        /// The file is not a shared object exporting `C_GetFunctionList`.
        public static let notAPKCS11Module = Code("notAPKCS11Module")
        /// No p11-kit registered module has that name.
        public static let unknownModuleName = Code("unknownModuleName")
        /// `C_GetFunctionList` or `C_Initialize` failed.
        public static let initializationFailed = Code("initializationFailed")
        /// The file (or its directory) could have been written by someone else: not loaded.
        public static let unsafeModuleFile = Code("unsafeModuleFile")
    }

    /// The code.
    public let code: Code
    /// The module as the user named it.
    public let module: String
    /// What the loader said (dlopen message, p11-kit message or CKR name).
    public let reason: String

    public let location: ErrorLocation
    public var facts: ErrorFacts { ErrorFacts(path: module) }

    /// Creates the value from its parts.
    public init(code: Code, module: String, reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.module = module
        self.reason = reason
        self.location = ErrorLocation(file: file, line: line)
    }

    /// How it reads in messages.
    public var description: String {
        switch code {
        case .fileNotFound:
            return "PKCS#11 module '\(module)' not found: \(reason)"
        case .notAPKCS11Module:
            return "'\(module)' is not a PKCS#11 module: \(reason)"
        case .unknownModuleName:
            return "no p11-kit registered module is named '\(module)' (\(reason))"
        case .initializationFailed:
            return "PKCS#11 module '\(module)' failed to initialise: \(reason)"
        default:
            return "refusing to load PKCS#11 module '\(module)': \(reason)"
        }
    }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// A value the caller passed cannot be expressed in PKCS#11 (caught before calling the module).
public struct InvalidArgumentError: LibraryError, Hashable {
    /// One code: the value cannot be passed to the module.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// A value too long, empty or out of range for its PKCS#11 field.
        public static let notExpressible = Code("notExpressible")
    }
    public var code: Code { .notExpressible }
    /// The reason.
    public let reason: String
    public let location: ErrorLocation
    /// Creates the value from its parts.
    public init(_ reason: String, file: String = #fileID, line: UInt = #line) {
        self.reason = reason
        self.location = ErrorLocation(file: file, line: line)
    }
    /// How it reads in messages.
    public var description: String { reason }
    /// Equal when the reasons are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.reason == rhs.reason }
    /// Hashes the reason.
    public func hash(into hasher: inout Hasher) { hasher.combine(reason) }
}
