internal import CPKCS11

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who logs in.
public enum UserType: Sendable {
    /// `CKU_USER`: the normal user, who may use private keys.
    case user
    /// `CKU_SO`: the security officer, who initialises the user PIN.
    case securityOfficer

    var cValue: CK_USER_TYPE {
        switch self {
        case .user: return CK_USER_TYPE(CKU_USER)
        case .securityOfficer: return CK_USER_TYPE(CKU_SO)
        }
    }
}

/// `CK_SESSION_INFO.state`.
public enum SessionState: Hashable, Sendable {
    case readOnlyPublic, readOnlyUser, readWritePublic, readWriteUser, readWriteSecurityOfficer
    case unknown(UInt)

    /// True when the user is logged in (login state is per token and process, so this tells
    /// whether any session of this process logged the user in).
    public var isUserLoggedIn: Bool { self == .readOnlyUser || self == .readWriteUser }
}

/// A PKCS#11 session (`C_OpenSession` … `C_CloseSession`).
///
/// Not `Sendable`: PKCS#11 sessions must not be used by two threads at once (SoftHSM answers
/// `CKR_OPERATION_ACTIVE` or worse), so one task owns one session. Open another session for
/// concurrent work. Closes itself when released.
public final class Session {
    /// The slot (and so the module) the session belongs to; kept alive by the session.
    public let slot: Slot
    let handle: CK_SESSION_HANDLE

    var loaded: LoadedModule { slot.module.loaded }

    init(slot: Slot, readWrite: Bool) throws {
        let openSession = try slot.module.loaded.function(\.C_OpenSession, "C_OpenSession")
        var flags = CK_FLAGS(CKF_SERIAL_SESSION)
        if readWrite { flags |= CK_FLAGS(CKF_RW_SESSION) }
        var handle: CK_SESSION_HANDLE = 0
        try check("C_OpenSession", openSession(slot.cID, flags, nil, nil, &handle))
        self.slot = slot
        self.handle = handle
    }

    deinit {
        if let closeSession = loaded.functions.pointee.C_CloseSession {
            _ = closeSession(handle)
        }
    }

    // MARK: Session and login

    /// `C_GetSessionInfo`.
    public func state() throws -> SessionState {
        let getSessionInfo = try loaded.function(\.C_GetSessionInfo, "C_GetSessionInfo")
        var info = CK_SESSION_INFO()
        try check("C_GetSessionInfo", getSessionInfo(handle, &info))
        switch info.state {
        case CK_STATE(CKS_RO_PUBLIC_SESSION): return .readOnlyPublic
        case CK_STATE(CKS_RO_USER_FUNCTIONS): return .readOnlyUser
        case CK_STATE(CKS_RW_PUBLIC_SESSION): return .readWritePublic
        case CK_STATE(CKS_RW_USER_FUNCTIONS): return .readWriteUser
        case CK_STATE(CKS_RW_SO_FUNCTIONS): return .readWriteSecurityOfficer
        default: return .unknown(UInt(info.state))
        }
    }

    /// `C_Login`. `CKR_USER_ALREADY_LOGGED_IN` is success: login state is shared by every
    /// session of the process.
    public func login(_ user: UserType, pin: PIN) throws {
        let login = try loaded.function(\.C_Login, "C_Login")
        let rv = pin.withBytes { bytes in
            login(handle, user.cValue, bytes.baseAddress, CK_ULONG(bytes.count))
        }
        if rv == CKR_USER_ALREADY_LOGGED_IN { return }
        try check("C_Login", rv)
    }

    /// `C_Logout`. Logs out every session of this process on the token;
    /// `CKR_USER_NOT_LOGGED_IN` is success.
    public func logout() throws {
        let logout = try loaded.function(\.C_Logout, "C_Logout")
        let rv = logout(handle)
        if rv == CKR_USER_NOT_LOGGED_IN { return }
        try check("C_Logout", rv)
    }

    /// `C_InitPIN`: sets the user PIN; needs a read-write session with the SO logged in.
    public func initializeUserPIN(_ pin: PIN) throws {
        let initPIN = try loaded.function(\.C_InitPIN, "C_InitPIN")
        let rv = pin.withBytes { bytes in
            initPIN(handle, bytes.baseAddress, CK_ULONG(bytes.count))
        }
        try check("C_InitPIN", rv)
    }

    // MARK: Objects

    /// `C_FindObjectsInit` / `C_FindObjects` / `C_FindObjectsFinal`: every object matching all
    /// the attributes (an empty template matches every object the session can see).
    public func findObjects(_ template: [Attribute]) throws -> [ObjectHandle] {
        let findInit = try loaded.function(\.C_FindObjectsInit, "C_FindObjectsInit")
        let find = try loaded.function(\.C_FindObjects, "C_FindObjects")
        let findFinal = try loaded.function(\.C_FindObjectsFinal, "C_FindObjectsFinal")

        try withCTemplate(template) { pointer, count in
            try check("C_FindObjectsInit", findInit(handle, pointer, count))
        }
        defer { _ = findFinal(handle) }

        var found: [ObjectHandle] = []
        var batch = [CK_OBJECT_HANDLE](repeating: 0, count: 64)
        while true {
            var count: CK_ULONG = 0
            try check("C_FindObjects", find(handle, &batch, CK_ULONG(batch.count), &count))
            if count == 0 { break }
            found += batch.prefix(Int(count)).map { ObjectHandle(rawValue: UInt($0)) }
        }
        return found
    }

    /// `C_GetAttributeValue` for several attributes, with the two-call length pattern. Each
    /// attribute comes back as a value or as the reason it is unavailable (sensitive, not
    /// defined for the object).
    public func attributes(_ types: [AttributeType], of object: ObjectHandle) throws -> [AttributeType: AttributeReading] {
        let getAttributeValue = try loaded.function(\.C_GetAttributeValue, "C_GetAttributeValue")
        let objectHandle = CK_OBJECT_HANDLE(object.rawValue)
        let unavailable = CK_ULONG.max  // CK_UNAVAILABLE_INFORMATION (a cast macro Swift cannot import)

        var template = types.map {
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE($0.rawValue), pValue: nil, ulValueLen: 0)
        }
        let firstRV = template.withUnsafeMutableBufferPointer {
            getAttributeValue(handle, objectHandle, $0.baseAddress, CK_ULONG($0.count))
        }
        guard firstRV == CKR_OK || firstRV == CKR_ATTRIBUTE_SENSITIVE || firstRV == CKR_ATTRIBUTE_TYPE_INVALID else {
            try check("C_GetAttributeValue", firstRV)
            return [:]
        }

        var result: [AttributeType: AttributeReading] = [:]
        var available: [(type: AttributeType, length: Int)] = []
        for (index, type) in types.enumerated() {
            let length = template[index].ulValueLen
            if length == unavailable {
                // Which of the two reasons applies is only known when asked alone.
                result[type] = .unavailable(try unavailableReason(type, of: object))
            } else {
                available.append((type, Int(length)))
            }
        }
        if available.isEmpty { return result }

        let buffers = available.map { UnsafeMutableRawPointer.allocate(byteCount: max($0.length, 1), alignment: 8) }
        defer { buffers.forEach { $0.deallocate() } }
        var second = zip(available, buffers).map { entry, buffer in
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(entry.type.rawValue), pValue: buffer, ulValueLen: CK_ULONG(entry.length))
        }
        let secondRV = second.withUnsafeMutableBufferPointer {
            getAttributeValue(handle, objectHandle, $0.baseAddress, CK_ULONG($0.count))
        }
        try check("C_GetAttributeValue", secondRV)
        for (index, entry) in available.enumerated() {
            let length = Int(second[index].ulValueLen)
            let bytes = Array(UnsafeRawBufferPointer(start: buffers[index], count: min(length, entry.length)))
            if let attribute = Attribute(type: entry.type, value: bytes) {
                result[entry.type] = .value(attribute)
            } else {
                result[entry.type] = .unavailable(.attributeValueInvalid)
            }
        }
        return result
    }

    private func unavailableReason(_ type: AttributeType, of object: ObjectHandle) throws -> ReturnValue {
        let getAttributeValue = try loaded.function(\.C_GetAttributeValue, "C_GetAttributeValue")
        var single = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(type.rawValue), pValue: nil, ulValueLen: 0)
        let rv = getAttributeValue(handle, CK_OBJECT_HANDLE(object.rawValue), &single, 1)
        return rv == CKR_OK ? .attributeTypeInvalid : ReturnValue(rawValue: UInt(rv))
    }

    /// `C_SetAttributeValue`.
    public func setAttributes(_ attributes: [Attribute], on object: ObjectHandle) throws {
        let setAttributeValue = try loaded.function(\.C_SetAttributeValue, "C_SetAttributeValue")
        try withCTemplate(attributes) { pointer, count in
            try check("C_SetAttributeValue", setAttributeValue(handle, CK_OBJECT_HANDLE(object.rawValue), pointer, count))
        }
    }

    /// `C_CreateObject`. Used to import known test keys; production keys are generated on the
    /// token instead.
    public func createObject(_ template: [Attribute]) throws -> ObjectHandle {
        let createObject = try loaded.function(\.C_CreateObject, "C_CreateObject")
        var object: CK_OBJECT_HANDLE = 0
        try withCTemplate(template) { pointer, count in
            try check("C_CreateObject", createObject(handle, pointer, count, &object))
        }
        return ObjectHandle(rawValue: UInt(object))
    }

    /// `C_DestroyObject`.
    public func destroyObject(_ object: ObjectHandle) throws {
        let destroyObject = try loaded.function(\.C_DestroyObject, "C_DestroyObject")
        try check("C_DestroyObject", destroyObject(handle, CK_OBJECT_HANDLE(object.rawValue)))
    }

    // MARK: Keys and signatures

    /// `C_GenerateKeyPair` with a parameterless mechanism.
    public func generateKeyPair(
        mechanism: MechanismType,
        publicKeyTemplate: [Attribute],
        privateKeyTemplate: [Attribute]
    ) throws -> (publicKey: ObjectHandle, privateKey: ObjectHandle) {
        let generateKeyPair = try loaded.function(\.C_GenerateKeyPair, "C_GenerateKeyPair")
        var cMechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(mechanism.rawValue), pParameter: nil, ulParameterLen: 0)
        var publicKey: CK_OBJECT_HANDLE = 0
        var privateKey: CK_OBJECT_HANDLE = 0
        try withCTemplate(publicKeyTemplate) { publicPointer, publicCount in
            try withCTemplate(privateKeyTemplate) { privatePointer, privateCount in
                try check("C_GenerateKeyPair", generateKeyPair(
                    handle, &cMechanism, publicPointer, publicCount, privatePointer, privateCount,
                    &publicKey, &privateKey))
            }
        }
        return (ObjectHandle(rawValue: UInt(publicKey)), ObjectHandle(rawValue: UInt(privateKey)))
    }

    /// `C_SignInit` + `C_Sign` with the two-call length pattern.
    public func sign(mechanism: MechanismType, key: ObjectHandle, data: some Collection<UInt8>) throws -> [UInt8] {
        let signInit = try loaded.function(\.C_SignInit, "C_SignInit")
        let sign = try loaded.function(\.C_Sign, "C_Sign")
        var cMechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(mechanism.rawValue), pParameter: nil, ulParameterLen: 0)
        try check("C_SignInit", signInit(handle, &cMechanism, CK_OBJECT_HANDLE(key.rawValue)))

        var input = Array(data)
        var length: CK_ULONG = 0
        // With a NULL output buffer C_Sign only reports the length and keeps the operation active.
        try check("C_Sign", sign(handle, &input, CK_ULONG(input.count), nil, &length))
        var signature = [UInt8](repeating: 0, count: Int(length))
        try check("C_Sign", sign(handle, &input, CK_ULONG(input.count), &signature, &length))
        return Array(signature.prefix(Int(length)))
    }

    /// `C_VerifyInit` + `C_Verify`: true for a valid signature, false for
    /// `CKR_SIGNATURE_INVALID` / `CKR_SIGNATURE_LEN_RANGE`, other failures throw.
    public func verify(mechanism: MechanismType, key: ObjectHandle, data: some Collection<UInt8>,
                       signature: some Collection<UInt8>) throws -> Bool {
        let verifyInit = try loaded.function(\.C_VerifyInit, "C_VerifyInit")
        let verify = try loaded.function(\.C_Verify, "C_Verify")
        var cMechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(mechanism.rawValue), pParameter: nil, ulParameterLen: 0)
        try check("C_VerifyInit", verifyInit(handle, &cMechanism, CK_OBJECT_HANDLE(key.rawValue)))
        var input = Array(data)
        var signatureBytes = Array(signature)
        let rv = verify(handle, &input, CK_ULONG(input.count), &signatureBytes, CK_ULONG(signatureBytes.count))
        if rv == CKR_SIGNATURE_INVALID || rv == CKR_SIGNATURE_LEN_RANGE { return false }
        try check("C_Verify", rv)
        return true
    }
}

@available(*, unavailable, message: "one task owns a PKCS#11 session; open another session instead")
extension Session: Sendable {}

/// One attribute as read back from the token.
public enum AttributeReading: Hashable, Sendable {
    /// The attribute and its value.
    case value(Attribute)
    /// Not readable: `CKR_ATTRIBUTE_SENSITIVE` (secret) or `CKR_ATTRIBUTE_TYPE_INVALID`
    /// (not defined for this object).
    case unavailable(ReturnValue)

    /// The attribute when it was readable.
    public var attribute: Attribute? {
        if case .value(let attribute) = self { return attribute }
        return nil
    }
}

/// Lays a template out as `CK_ATTRIBUTE`s whose values live exactly for `body`; the value
/// buffers are wiped before they are freed (templates can carry key material).
func withCTemplate<R>(
    _ attributes: [Attribute],
    _ body: (UnsafeMutablePointer<CK_ATTRIBUTE>?, CK_ULONG) throws -> R
) rethrows -> R {
    var buffers: [(pointer: UnsafeMutableRawPointer, count: Int)] = []
    defer {
        for buffer in buffers {
            explicit_bzero(buffer.pointer, buffer.count)
            buffer.pointer.deallocate()
        }
    }
    var template: [CK_ATTRIBUTE] = []
    template.reserveCapacity(attributes.count)
    for attribute in attributes {
        let value = attribute.encodedValue
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(value.count, 1), alignment: 8)
        buffers.append((pointer, max(value.count, 1)))
        value.withUnsafeBytes { source in
            if let base = source.baseAddress { pointer.copyMemory(from: base, byteCount: source.count) }
        }
        template.append(CK_ATTRIBUTE(
            type: CK_ATTRIBUTE_TYPE(attribute.type.rawValue),
            pValue: value.isEmpty ? nil : pointer,
            ulValueLen: CK_ULONG(value.count)))
    }
    return try template.withUnsafeMutableBufferPointer { try body($0.baseAddress, CK_ULONG($0.count)) }
}

extension Session {
    /// `C_CopyObject`: a copy of the object with the template's attributes changed.
    public func copyObject(_ object: ObjectHandle, changing template: [Attribute]) throws -> ObjectHandle {
        let copyObject = try loaded.function(\.C_CopyObject, "C_CopyObject")
        var copy: CK_OBJECT_HANDLE = 0
        try withCTemplate(template) { pointer, count in
            try check("C_CopyObject", copyObject(handle, CK_OBJECT_HANDLE(object.rawValue), pointer, count, &copy))
        }
        return ObjectHandle(rawValue: UInt(copy))
    }
}
