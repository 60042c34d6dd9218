/// A PKCS#11 function returned something other than `CKR_OK`.
///
/// Carries the C function and the specification's name for the return value, so that
/// tests can match on it and users see what the token said: `C_Login: CKR_PIN_INCORRECT`.
public struct PKCS11Error: Error, Hashable, Sendable, CustomStringConvertible {
    /// The C function that failed, e.g. `C_Login`.
    public let function: String
    /// What it returned.
    public let returnValue: ReturnValue

    /// Creates the value from its parts.
    public init(function: String, returnValue: ReturnValue) {
        self.function = function
        self.returnValue = returnValue
    }

    /// How it reads in messages.
    public var description: String { "\(function): \(returnValue.name)" }
}

/// A module could not be loaded or initialised.
public struct ModuleLoadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Why loading failed.
    public enum Code: String, Hashable, Sendable {
        /// No file at the given path.
        case fileNotFound
        /// The file is not a shared object exporting `C_GetFunctionList`.
        case notAPKCS11Module
        /// No p11-kit registered module has that name.
        case unknownModuleName
        /// `C_GetFunctionList` or `C_Initialize` failed.
        case initializationFailed
        /// The file (or its directory) could have been written by someone else: not loaded.
        case unsafeModuleFile
    }

    /// The code.
    public let code: Code
    /// The module as the user named it.
    public let module: String
    /// What the loader said (dlopen message, p11-kit message or CKR name).
    public let reason: String

    /// Creates the value from its parts.
    public init(code: Code, module: String, reason: String) {
        self.code = code
        self.module = module
        self.reason = reason
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
        case .unsafeModuleFile:
            return "refusing to load PKCS#11 module '\(module)': \(reason)"
        }
    }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// A value the caller passed cannot be expressed in PKCS#11 (caught before calling the module).
public struct InvalidArgumentError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The reason.
    public let reason: String
    /// Creates the value from its parts.
    public init(_ reason: String) { self.reason = reason }
    /// How it reads in messages.
    public var description: String { reason }
}
