internal import CPKCS11

/// A PKCS#11 return value (`CK_RV`), named as the specification names it.
///
/// Open-ended: vendor codes are representable; ``name`` falls back to hex for codes
/// this table does not know.
public struct ReturnValue: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt

    /// The value with this number.
    public init(rawValue: UInt) {
        self.rawValue = rawValue
    }

    /// The specification's name, e.g. `CKR_PIN_INCORRECT`, or `CKR_VENDOR_DEFINED+0x…` /
    /// `CKR_0x…` for codes outside the table.
    public var name: String {
        if let known = Self.names[rawValue] { return known }
        let vendorBase: UInt = 0x8000_0000
        if rawValue >= vendorBase {
            return "CKR_VENDOR_DEFINED+0x" + String(rawValue - vendorBase, radix: 16)
        }
        return "CKR_0x" + String(rawValue, radix: 16)
    }

    /// How it reads in messages.
    public var description: String { name }

    /// `CKR_OK`.
    public static let ok = Self(rawValue: UInt(CKR_OK))
    /// `CKR_GENERAL_ERROR`.
    public static let generalError = Self(rawValue: UInt(CKR_GENERAL_ERROR))
    /// `CKR_FUNCTION_FAILED`.
    public static let functionFailed = Self(rawValue: UInt(CKR_FUNCTION_FAILED))
    /// `CKR_ARGUMENTS_BAD`.
    public static let argumentsBad = Self(rawValue: UInt(CKR_ARGUMENTS_BAD))
    /// `CKR_ATTRIBUTE_READ_ONLY`.
    public static let attributeReadOnly = Self(rawValue: UInt(CKR_ATTRIBUTE_READ_ONLY))
    /// `CKR_ATTRIBUTE_SENSITIVE`.
    public static let attributeSensitive = Self(rawValue: UInt(CKR_ATTRIBUTE_SENSITIVE))
    /// `CKR_ATTRIBUTE_TYPE_INVALID`.
    public static let attributeTypeInvalid = Self(rawValue: UInt(CKR_ATTRIBUTE_TYPE_INVALID))
    /// `CKR_ATTRIBUTE_VALUE_INVALID`.
    public static let attributeValueInvalid = Self(rawValue: UInt(CKR_ATTRIBUTE_VALUE_INVALID))
    /// `CKR_ACTION_PROHIBITED`.
    public static let actionProhibited = Self(rawValue: UInt(CKR_ACTION_PROHIBITED))
    /// `CKR_DEVICE_REMOVED`.
    public static let deviceRemoved = Self(rawValue: UInt(CKR_DEVICE_REMOVED))
    /// `CKR_FUNCTION_NOT_SUPPORTED`.
    public static let functionNotSupported = Self(rawValue: UInt(CKR_FUNCTION_NOT_SUPPORTED))
    /// `CKR_KEY_FUNCTION_NOT_PERMITTED`.
    public static let keyFunctionNotPermitted = Self(rawValue: UInt(CKR_KEY_FUNCTION_NOT_PERMITTED))
    /// `CKR_KEY_HANDLE_INVALID`.
    public static let keyHandleInvalid = Self(rawValue: UInt(CKR_KEY_HANDLE_INVALID))
    /// `CKR_KEY_SIZE_RANGE`.
    public static let keySizeRange = Self(rawValue: UInt(CKR_KEY_SIZE_RANGE))
    /// `CKR_MECHANISM_INVALID`.
    public static let mechanismInvalid = Self(rawValue: UInt(CKR_MECHANISM_INVALID))
    /// `CKR_OBJECT_HANDLE_INVALID`.
    public static let objectHandleInvalid = Self(rawValue: UInt(CKR_OBJECT_HANDLE_INVALID))
    /// `CKR_OPERATION_ACTIVE`.
    public static let operationActive = Self(rawValue: UInt(CKR_OPERATION_ACTIVE))
    /// `CKR_PIN_INCORRECT`.
    public static let pinIncorrect = Self(rawValue: UInt(CKR_PIN_INCORRECT))
    /// `CKR_PIN_INVALID`.
    public static let pinInvalid = Self(rawValue: UInt(CKR_PIN_INVALID))
    /// `CKR_PIN_LEN_RANGE`.
    public static let pinLenRange = Self(rawValue: UInt(CKR_PIN_LEN_RANGE))
    /// `CKR_PIN_EXPIRED`.
    public static let pinExpired = Self(rawValue: UInt(CKR_PIN_EXPIRED))
    /// `CKR_PIN_LOCKED`.
    public static let pinLocked = Self(rawValue: UInt(CKR_PIN_LOCKED))
    /// `CKR_SESSION_CLOSED`.
    public static let sessionClosed = Self(rawValue: UInt(CKR_SESSION_CLOSED))
    /// `CKR_SESSION_HANDLE_INVALID`.
    public static let sessionHandleInvalid = Self(rawValue: UInt(CKR_SESSION_HANDLE_INVALID))
    /// `CKR_SESSION_READ_ONLY`.
    public static let sessionReadOnly = Self(rawValue: UInt(CKR_SESSION_READ_ONLY))
    /// `CKR_SIGNATURE_INVALID`.
    public static let signatureInvalid = Self(rawValue: UInt(CKR_SIGNATURE_INVALID))
    /// `CKR_TEMPLATE_INCOMPLETE`.
    public static let templateIncomplete = Self(rawValue: UInt(CKR_TEMPLATE_INCOMPLETE))
    /// `CKR_TEMPLATE_INCONSISTENT`.
    public static let templateInconsistent = Self(rawValue: UInt(CKR_TEMPLATE_INCONSISTENT))
    /// `CKR_TOKEN_NOT_PRESENT`.
    public static let tokenNotPresent = Self(rawValue: UInt(CKR_TOKEN_NOT_PRESENT))
    /// `CKR_TOKEN_WRITE_PROTECTED`.
    public static let tokenWriteProtected = Self(rawValue: UInt(CKR_TOKEN_WRITE_PROTECTED))
    /// `CKR_USER_ALREADY_LOGGED_IN`.
    public static let userAlreadyLoggedIn = Self(rawValue: UInt(CKR_USER_ALREADY_LOGGED_IN))
    /// `CKR_USER_NOT_LOGGED_IN`.
    public static let userNotLoggedIn = Self(rawValue: UInt(CKR_USER_NOT_LOGGED_IN))
    /// `CKR_USER_PIN_NOT_INITIALIZED`.
    public static let userPINNotInitialized = Self(rawValue: UInt(CKR_USER_PIN_NOT_INITIALIZED))
    /// `CKR_BUFFER_TOO_SMALL`.
    public static let bufferTooSmall = Self(rawValue: UInt(CKR_BUFFER_TOO_SMALL))
    /// `CKR_CRYPTOKI_NOT_INITIALIZED`.
    public static let cryptokiNotInitialized = Self(rawValue: UInt(CKR_CRYPTOKI_NOT_INITIALIZED))
    /// `CKR_CRYPTOKI_ALREADY_INITIALIZED`.
    public static let cryptokiAlreadyInitialized = Self(rawValue: UInt(CKR_CRYPTOKI_ALREADY_INITIALIZED))

    private static let names: [UInt: String] = [
        UInt(CKR_OK): "CKR_OK",
        UInt(CKR_CANCEL): "CKR_CANCEL",
        UInt(CKR_HOST_MEMORY): "CKR_HOST_MEMORY",
        UInt(CKR_SLOT_ID_INVALID): "CKR_SLOT_ID_INVALID",
        UInt(CKR_GENERAL_ERROR): "CKR_GENERAL_ERROR",
        UInt(CKR_FUNCTION_FAILED): "CKR_FUNCTION_FAILED",
        UInt(CKR_ARGUMENTS_BAD): "CKR_ARGUMENTS_BAD",
        UInt(CKR_NO_EVENT): "CKR_NO_EVENT",
        UInt(CKR_NEED_TO_CREATE_THREADS): "CKR_NEED_TO_CREATE_THREADS",
        UInt(CKR_CANT_LOCK): "CKR_CANT_LOCK",
        UInt(CKR_ATTRIBUTE_READ_ONLY): "CKR_ATTRIBUTE_READ_ONLY",
        UInt(CKR_ATTRIBUTE_SENSITIVE): "CKR_ATTRIBUTE_SENSITIVE",
        UInt(CKR_ATTRIBUTE_TYPE_INVALID): "CKR_ATTRIBUTE_TYPE_INVALID",
        UInt(CKR_ATTRIBUTE_VALUE_INVALID): "CKR_ATTRIBUTE_VALUE_INVALID",
        UInt(CKR_ACTION_PROHIBITED): "CKR_ACTION_PROHIBITED",
        UInt(CKR_DATA_INVALID): "CKR_DATA_INVALID",
        UInt(CKR_DATA_LEN_RANGE): "CKR_DATA_LEN_RANGE",
        UInt(CKR_DEVICE_ERROR): "CKR_DEVICE_ERROR",
        UInt(CKR_DEVICE_MEMORY): "CKR_DEVICE_MEMORY",
        UInt(CKR_DEVICE_REMOVED): "CKR_DEVICE_REMOVED",
        UInt(CKR_ENCRYPTED_DATA_INVALID): "CKR_ENCRYPTED_DATA_INVALID",
        UInt(CKR_ENCRYPTED_DATA_LEN_RANGE): "CKR_ENCRYPTED_DATA_LEN_RANGE",
        UInt(CKR_FUNCTION_CANCELED): "CKR_FUNCTION_CANCELED",
        UInt(CKR_FUNCTION_NOT_PARALLEL): "CKR_FUNCTION_NOT_PARALLEL",
        UInt(CKR_FUNCTION_NOT_SUPPORTED): "CKR_FUNCTION_NOT_SUPPORTED",
        UInt(CKR_KEY_HANDLE_INVALID): "CKR_KEY_HANDLE_INVALID",
        UInt(CKR_KEY_SIZE_RANGE): "CKR_KEY_SIZE_RANGE",
        UInt(CKR_KEY_TYPE_INCONSISTENT): "CKR_KEY_TYPE_INCONSISTENT",
        UInt(CKR_KEY_NOT_NEEDED): "CKR_KEY_NOT_NEEDED",
        UInt(CKR_KEY_CHANGED): "CKR_KEY_CHANGED",
        UInt(CKR_KEY_NEEDED): "CKR_KEY_NEEDED",
        UInt(CKR_KEY_INDIGESTIBLE): "CKR_KEY_INDIGESTIBLE",
        UInt(CKR_KEY_FUNCTION_NOT_PERMITTED): "CKR_KEY_FUNCTION_NOT_PERMITTED",
        UInt(CKR_KEY_NOT_WRAPPABLE): "CKR_KEY_NOT_WRAPPABLE",
        UInt(CKR_KEY_UNEXTRACTABLE): "CKR_KEY_UNEXTRACTABLE",
        UInt(CKR_MECHANISM_INVALID): "CKR_MECHANISM_INVALID",
        UInt(CKR_MECHANISM_PARAM_INVALID): "CKR_MECHANISM_PARAM_INVALID",
        UInt(CKR_OBJECT_HANDLE_INVALID): "CKR_OBJECT_HANDLE_INVALID",
        UInt(CKR_OPERATION_ACTIVE): "CKR_OPERATION_ACTIVE",
        UInt(CKR_OPERATION_NOT_INITIALIZED): "CKR_OPERATION_NOT_INITIALIZED",
        UInt(CKR_PIN_INCORRECT): "CKR_PIN_INCORRECT",
        UInt(CKR_PIN_INVALID): "CKR_PIN_INVALID",
        UInt(CKR_PIN_LEN_RANGE): "CKR_PIN_LEN_RANGE",
        UInt(CKR_PIN_EXPIRED): "CKR_PIN_EXPIRED",
        UInt(CKR_PIN_LOCKED): "CKR_PIN_LOCKED",
        UInt(CKR_SESSION_CLOSED): "CKR_SESSION_CLOSED",
        UInt(CKR_SESSION_COUNT): "CKR_SESSION_COUNT",
        UInt(CKR_SESSION_HANDLE_INVALID): "CKR_SESSION_HANDLE_INVALID",
        UInt(CKR_SESSION_PARALLEL_NOT_SUPPORTED): "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
        UInt(CKR_SESSION_READ_ONLY): "CKR_SESSION_READ_ONLY",
        UInt(CKR_SESSION_EXISTS): "CKR_SESSION_EXISTS",
        UInt(CKR_SESSION_READ_ONLY_EXISTS): "CKR_SESSION_READ_ONLY_EXISTS",
        UInt(CKR_SESSION_READ_WRITE_SO_EXISTS): "CKR_SESSION_READ_WRITE_SO_EXISTS",
        UInt(CKR_SIGNATURE_INVALID): "CKR_SIGNATURE_INVALID",
        UInt(CKR_SIGNATURE_LEN_RANGE): "CKR_SIGNATURE_LEN_RANGE",
        UInt(CKR_TEMPLATE_INCOMPLETE): "CKR_TEMPLATE_INCOMPLETE",
        UInt(CKR_TEMPLATE_INCONSISTENT): "CKR_TEMPLATE_INCONSISTENT",
        UInt(CKR_TOKEN_NOT_PRESENT): "CKR_TOKEN_NOT_PRESENT",
        UInt(CKR_TOKEN_NOT_RECOGNIZED): "CKR_TOKEN_NOT_RECOGNIZED",
        UInt(CKR_TOKEN_WRITE_PROTECTED): "CKR_TOKEN_WRITE_PROTECTED",
        UInt(CKR_UNWRAPPING_KEY_SIZE_RANGE): "CKR_UNWRAPPING_KEY_SIZE_RANGE",
        UInt(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT): "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
        UInt(CKR_USER_ALREADY_LOGGED_IN): "CKR_USER_ALREADY_LOGGED_IN",
        UInt(CKR_USER_NOT_LOGGED_IN): "CKR_USER_NOT_LOGGED_IN",
        UInt(CKR_USER_PIN_NOT_INITIALIZED): "CKR_USER_PIN_NOT_INITIALIZED",
        UInt(CKR_USER_TYPE_INVALID): "CKR_USER_TYPE_INVALID",
        UInt(CKR_USER_ANOTHER_ALREADY_LOGGED_IN): "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
        UInt(CKR_USER_TOO_MANY_TYPES): "CKR_USER_TOO_MANY_TYPES",
        UInt(CKR_WRAPPED_KEY_INVALID): "CKR_WRAPPED_KEY_INVALID",
        UInt(CKR_WRAPPED_KEY_LEN_RANGE): "CKR_WRAPPED_KEY_LEN_RANGE",
        UInt(CKR_WRAPPING_KEY_HANDLE_INVALID): "CKR_WRAPPING_KEY_HANDLE_INVALID",
        UInt(CKR_WRAPPING_KEY_SIZE_RANGE): "CKR_WRAPPING_KEY_SIZE_RANGE",
        UInt(CKR_WRAPPING_KEY_TYPE_INCONSISTENT): "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
        UInt(CKR_RANDOM_SEED_NOT_SUPPORTED): "CKR_RANDOM_SEED_NOT_SUPPORTED",
        UInt(CKR_RANDOM_NO_RNG): "CKR_RANDOM_NO_RNG",
        UInt(CKR_DOMAIN_PARAMS_INVALID): "CKR_DOMAIN_PARAMS_INVALID",
        UInt(CKR_CURVE_NOT_SUPPORTED): "CKR_CURVE_NOT_SUPPORTED",
        UInt(CKR_BUFFER_TOO_SMALL): "CKR_BUFFER_TOO_SMALL",
        UInt(CKR_SAVED_STATE_INVALID): "CKR_SAVED_STATE_INVALID",
        UInt(CKR_INFORMATION_SENSITIVE): "CKR_INFORMATION_SENSITIVE",
        UInt(CKR_STATE_UNSAVEABLE): "CKR_STATE_UNSAVEABLE",
        UInt(CKR_CRYPTOKI_NOT_INITIALIZED): "CKR_CRYPTOKI_NOT_INITIALIZED",
        UInt(CKR_CRYPTOKI_ALREADY_INITIALIZED): "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        UInt(CKR_MUTEX_BAD): "CKR_MUTEX_BAD",
        UInt(CKR_MUTEX_NOT_LOCKED): "CKR_MUTEX_NOT_LOCKED",
        UInt(CKR_NEW_PIN_MODE): "CKR_NEW_PIN_MODE",
        UInt(CKR_NEXT_OTP): "CKR_NEXT_OTP",
        UInt(CKR_EXCEEDED_MAX_ITERATIONS): "CKR_EXCEEDED_MAX_ITERATIONS",
        UInt(CKR_FIPS_SELF_TEST_FAILED): "CKR_FIPS_SELF_TEST_FAILED",
        UInt(CKR_LIBRARY_LOAD_FAILED): "CKR_LIBRARY_LOAD_FAILED",
        UInt(CKR_PIN_TOO_WEAK): "CKR_PIN_TOO_WEAK",
        UInt(CKR_PUBLIC_KEY_INVALID): "CKR_PUBLIC_KEY_INVALID",
        UInt(CKR_FUNCTION_REJECTED): "CKR_FUNCTION_REJECTED",
    ]
}
