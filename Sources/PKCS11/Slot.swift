internal import CPKCS11
#if canImport(Glibc)
import Glibc
#endif

/// A slot id (`CK_SLOT_ID`). Not stable across token (re)initialisation on SoftHSM: select
/// tokens by label or serial, never by slot id.
public struct SlotID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }
    /// How it reads in messages.
    public var description: String { String(rawValue) }
}

/// A slot of a loaded module. Keeps the module alive.
public struct Slot: Sendable {
    /// The module.
    public let module: PKCS11Module
    /// The id.
    public let id: SlotID

    init(module: PKCS11Module, id: SlotID) {
        self.module = module
        self.id = id
    }

    var cID: CK_SLOT_ID { CK_SLOT_ID(id.rawValue) }

    /// `C_GetSlotInfo`.
    public func info() throws -> SlotInfo {
        let getSlotInfo = try module.loaded.function(\.C_GetSlotInfo, "C_GetSlotInfo")
        var info = CK_SLOT_INFO()
        try check("C_GetSlotInfo", getSlotInfo(cID, &info))
        return SlotInfo(info)
    }

    /// `C_GetTokenInfo`. Re-read it before each decision that depends on PIN state.
    ///
    /// A `CKR_GENERAL_ERROR` is read again, twice, after 5 and then 25 ms. SoftHSM rewrites a
    /// token's file in place on every login (its flags); another process that reads the token
    /// in that moment fails its integrity check and gets `CKR_GENERAL_ERROR` (SoftHSMv2 issue
    /// 757), so two commands started together on one token failed at random. The call only
    /// reads; any other error, or a third `CKR_GENERAL_ERROR`, is reported as it is.
    public func tokenInfo() throws -> TokenInfo {
        let getTokenInfo = try module.loaded.function(\.C_GetTokenInfo, "C_GetTokenInfo")
        var info = CK_TOKEN_INFO()
        var rv = getTokenInfo(cID, &info)
        for pause: UInt32 in [5_000, 25_000] where rv == CKR_GENERAL_ERROR {
            usleep(pause)
            rv = getTokenInfo(cID, &info)
        }
        try check("C_GetTokenInfo", rv)
        return TokenInfo(info)
    }

    /// `C_GetMechanismList`.
    public func mechanisms() throws -> [MechanismType] {
        let getMechanismList = try module.loaded.function(\.C_GetMechanismList, "C_GetMechanismList")
        while true {
            var count: CK_ULONG = 0
            try check("C_GetMechanismList", getMechanismList(cID, nil, &count))
            if count == 0 { return [] }
            let capacity = try boundedCount(count, function: "C_GetMechanismList")
            var list = [CK_MECHANISM_TYPE](repeating: 0, count: capacity)
            let rv = getMechanismList(cID, &list, &count)
            if rv == CKR_BUFFER_TOO_SMALL { continue }
            try check("C_GetMechanismList", rv)
            return list.prefix(min(capacity, Int(clamping: count))).map { MechanismType(rawValue: UInt($0)) }
        }
    }

    /// `C_GetMechanismInfo`.
    public func mechanismInfo(_ mechanism: MechanismType) throws -> MechanismInfo {
        let getMechanismInfo = try module.loaded.function(\.C_GetMechanismInfo, "C_GetMechanismInfo")
        var info = CK_MECHANISM_INFO()
        try check("C_GetMechanismInfo", getMechanismInfo(cID, CK_MECHANISM_TYPE(mechanism.rawValue), &info))
        return MechanismInfo(
            minimumKeySize: UInt(info.ulMinKeySize),
            maximumKeySize: UInt(info.ulMaxKeySize),
            flags: MechanismFlags(rawValue: UInt(info.flags))
        )
    }

    /// `C_CloseAllSessions`: closes every session this process has on the slot (and so logs
    /// the user out). Sessions already handed out report `CKR_SESSION_HANDLE_INVALID` after it.
    public func closeAllSessions() throws {
        let closeAll = try module.loaded.function(\.C_CloseAllSessions, "C_CloseAllSessions")
        try check("C_CloseAllSessions", closeAll(cID))
    }

    /// `C_OpenSession` (always a serial session). The session closes itself when released.
    public func openSession(readWrite: Bool) throws -> Session {
        try Session(slot: self, readWrite: readWrite)
    }

    /// `C_InitToken`: initialises (and so erases) the token in this slot and sets its SO PIN.
    /// Callers must make sure this is the token they mean; it destroys every object on it.
    public func initializeToken(label: String, securityOfficerPIN: PIN) throws {
        let initToken = try module.loaded.function(\.C_InitToken, "C_InitToken")
        var paddedLabel = [UInt8](repeating: 0x20, count: 32)
        let labelBytes = Array(label.utf8)
        guard labelBytes.count <= 32 else {
            throw InvalidArgumentError("token labels are at most 32 bytes; '\(label)' has \(labelBytes.count)")
        }
        paddedLabel.replaceSubrange(0..<labelBytes.count, with: labelBytes)
        try securityOfficerPIN.withBytes { pin in
            try check("C_InitToken", initToken(cID, UnsafeMutablePointer(mutating: pin.baseAddress), CK_ULONG(pin.count), &paddedLabel))
        }
    }
}

/// `CK_SLOT_INFO`, with the blank padding removed.
public struct SlotInfo: Hashable, Sendable {
    /// The slot description.
    public let slotDescription: String
    /// The manufacturer.
    public let manufacturer: String
    /// Whether a token is in the slot.
    public let isTokenPresent: Bool
    /// Whether the token can be removed.
    public let isRemovableDevice: Bool
    /// Whether the slot is a hardware slot.
    public let isHardwareSlot: Bool
    /// The hardware version.
    public let hardwareVersion: Version
    /// The firmware version.
    public let firmwareVersion: Version

    init(_ info: CK_SLOT_INFO) {
        var info = info
        slotDescription = paddedString(&info.slotDescription)
        manufacturer = paddedString(&info.manufacturerID)
        isTokenPresent = info.flags & CK_FLAGS(CKF_TOKEN_PRESENT) != 0
        isRemovableDevice = info.flags & CK_FLAGS(CKF_REMOVABLE_DEVICE) != 0
        isHardwareSlot = info.flags & CK_FLAGS(CKF_HW_SLOT) != 0
        hardwareVersion = Version(info.hardwareVersion)
        firmwareVersion = Version(info.firmwareVersion)
    }
}

/// `CK_TOKEN_INFO`, with the blank padding removed.
public struct TokenInfo: Hashable, Sendable {
    /// The label.
    public let label: String
    /// The manufacturer.
    public let manufacturer: String
    /// The model.
    public let model: String
    /// The serial number.
    public let serialNumber: String
    /// The flags.
    public let flags: TokenFlags
    /// The minimum PIN length.
    public let minimumPINLength: UInt
    /// The maximum PIN length.
    public let maximumPINLength: UInt
    /// The hardware version.
    public let hardwareVersion: Version
    /// The firmware version.
    public let firmwareVersion: Version
    /// The most sessions the token allows at once (`ulMaxSessionCount`); `nil` when the token
    /// sets no limit (`CK_EFFECTIVELY_INFINITE`) or does not say (`CK_UNAVAILABLE_INFORMATION`).
    public let maximumSessionCount: UInt?

    /// Builds a token description (for tests and for code that matches URIs against tokens).
    public init(label: String, manufacturer: String, model: String, serialNumber: String,
                flags: TokenFlags = [], minimumPINLength: UInt = 0, maximumPINLength: UInt = 0,
                hardwareVersion: Version = Version(major: 0, minor: 0),
                firmwareVersion: Version = Version(major: 0, minor: 0), maximumSessionCount: UInt? = nil) {
        self.label = label
        self.manufacturer = manufacturer
        self.model = model
        self.serialNumber = serialNumber
        self.flags = flags
        self.minimumPINLength = minimumPINLength
        self.maximumPINLength = maximumPINLength
        self.hardwareVersion = hardwareVersion
        self.firmwareVersion = firmwareVersion
        self.maximumSessionCount = maximumSessionCount
    }

    init(_ info: CK_TOKEN_INFO) {
        var info = info
        self.init(
            label: paddedString(&info.label),
            manufacturer: paddedString(&info.manufacturerID),
            model: paddedString(&info.model),
            serialNumber: paddedString(&info.serialNumber),
            flags: TokenFlags(rawValue: UInt(info.flags)),
            minimumPINLength: UInt(info.ulMinPinLen),
            maximumPINLength: UInt(info.ulMaxPinLen),
            hardwareVersion: Version(info.hardwareVersion),
            firmwareVersion: Version(info.firmwareVersion),
            maximumSessionCount: Self.sessionLimit(UInt(info.ulMaxSessionCount))
        )
    }

    static func sessionLimit(_ value: UInt) -> UInt? {
        value == UInt(CK_EFFECTIVELY_INFINITE) || value == UInt(bitPattern: -1) ? nil : value
    }
}

/// `CK_TOKEN_INFO.flags`.
public struct TokenFlags: OptionSet, Hashable, Sendable {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKF_RNG`.
    public static let rng = Self(rawValue: UInt(CKF_RNG))
    /// `CKF_WRITE_PROTECTED`.
    public static let writeProtected = Self(rawValue: UInt(CKF_WRITE_PROTECTED))
    /// `CKF_LOGIN_REQUIRED`.
    public static let loginRequired = Self(rawValue: UInt(CKF_LOGIN_REQUIRED))
    /// `CKF_USER_PIN_INITIALIZED`.
    public static let userPINInitialized = Self(rawValue: UInt(CKF_USER_PIN_INITIALIZED))
    /// `CKF_PROTECTED_AUTHENTICATION_PATH`.
    public static let protectedAuthenticationPath = Self(rawValue: UInt(CKF_PROTECTED_AUTHENTICATION_PATH))
    /// `CKF_TOKEN_INITIALIZED`.
    public static let tokenInitialized = Self(rawValue: UInt(CKF_TOKEN_INITIALIZED))
    /// `CKF_USER_PIN_COUNT_LOW`.
    public static let userPINCountLow = Self(rawValue: UInt(CKF_USER_PIN_COUNT_LOW))
    /// `CKF_USER_PIN_FINAL_TRY`.
    public static let userPINFinalTry = Self(rawValue: UInt(CKF_USER_PIN_FINAL_TRY))
    /// `CKF_USER_PIN_LOCKED`.
    public static let userPINLocked = Self(rawValue: UInt(CKF_USER_PIN_LOCKED))
    /// `CKF_USER_PIN_TO_BE_CHANGED`.
    public static let userPINToBeChanged = Self(rawValue: UInt(CKF_USER_PIN_TO_BE_CHANGED))
    /// `CKF_SO_PIN_COUNT_LOW`.
    public static let securityOfficerPINCountLow = Self(rawValue: UInt(CKF_SO_PIN_COUNT_LOW))
    /// `CKF_SO_PIN_FINAL_TRY`.
    public static let securityOfficerPINFinalTry = Self(rawValue: UInt(CKF_SO_PIN_FINAL_TRY))
    /// `CKF_SO_PIN_LOCKED`.
    public static let securityOfficerPINLocked = Self(rawValue: UInt(CKF_SO_PIN_LOCKED))

    /// Names of the set flags, in the specification's order, for display.
    public var names: [String] {
        let table: [(TokenFlags, String)] = [
            (.rng, "rng"), (.writeProtected, "write-protected"), (.loginRequired, "login-required"),
            (.userPINInitialized, "user-pin-initialized"),
            (.protectedAuthenticationPath, "protected-authentication-path"),
            (.tokenInitialized, "token-initialized"), (.userPINCountLow, "user-pin-count-low"),
            (.userPINFinalTry, "user-pin-final-try"), (.userPINLocked, "user-pin-locked"),
            (.userPINToBeChanged, "user-pin-to-be-changed"), (.securityOfficerPINCountLow, "so-pin-count-low"),
            (.securityOfficerPINFinalTry, "so-pin-final-try"), (.securityOfficerPINLocked, "so-pin-locked"),
        ]
        return table.filter { contains($0.0) }.map(\.1)
    }
}
