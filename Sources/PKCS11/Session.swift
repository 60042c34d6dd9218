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

    /// True once ``close()`` ran (successfully or not): the handle is not used again.
    private var isClosed = false

    init(slot: Slot, readWrite: Bool) throws {
        let openSession = try slot.module.loaded.function(\.C_OpenSession, "C_OpenSession")
        var flags = CK_FLAGS(CKF_SERIAL_SESSION)
        if readWrite { flags |= CK_FLAGS(CKF_RW_SESSION) }
        var handle: CK_SESSION_HANDLE = 0
        try check("C_OpenSession", openSession(slot.cID, flags, nil, nil, &handle))
        self.slot = slot
        self.handle = handle
    }

    /// `C_CloseSession`, reporting what the module said. After it the session is unusable,
    /// whatever the outcome (PKCS#11 gives no way to retry a close). ``deinit`` closes a
    /// session nobody closed, silently.
    public func close() throws {
        guard !isClosed else { return }
        isClosed = true
        let closeSession = try loaded.function(\.C_CloseSession, "C_CloseSession")
        let rv = closeSession(handle)
        // Already closed underneath (token removed, C_CloseAllSessions): nothing left to do.
        if rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED { return }
        try check("C_CloseSession", rv)
    }

    /// Forgets the session without `C_CloseSession`: for a child process after `fork()`, whose
    /// module was initialised again and to which the parent's handles do not belong.
    public func abandon() {
        isClosed = true
    }

    deinit {
        if !isClosed, let closeSession = loaded.functions.pointee.C_CloseSession {
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
            // C_Login takes a non-const pointer but only reads it (PKCS#11 v2.40 §5.6).
            login(handle, user.cValue, UnsafeMutablePointer(mutating: bytes.baseAddress), CK_ULONG(bytes.count))
        }
        if rv == CKR_USER_ALREADY_LOGGED_IN { return }
        try check("C_Login", rv)
    }

    /// `C_Login` on a token with a protected authentication path (`CKF_PROTECTED_AUTHENTICATION_PATH`,
    /// a PIN pad): the PIN is entered on the device, so the call passes a NULL PIN pointer and
    /// length 0, as the specification requires (not an empty buffer).
    public func loginOnProtectedAuthenticationPath(_ user: UserType) throws {
        let login = try loaded.function(\.C_Login, "C_Login")
        let rv = login(handle, user.cValue, nil, 0)
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
            initPIN(handle, UnsafeMutablePointer(mutating: bytes.baseAddress), CK_ULONG(bytes.count))
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
            found += batch.prefix(min(batch.count, Int(clamping: count))).map { ObjectHandle(rawValue: UInt($0)) }
        }
        return found
    }

    /// Longest attribute value this wrapper reads. Nothing it reads comes near (an RSA-4096
    /// modulus is 512 bytes); a module reporting more is answering oddly, and its answer is
    /// treated as unavailable rather than trusted with an allocation.
    public static let maximumAttributeLength = 1 << 20

    /// `C_GetAttributeValue` for several attributes, with the two-call length pattern. Each
    /// attribute comes back as a value or as the reason it is unavailable (sensitive, not
    /// defined for the object).
    ///
    /// Both calls accept the answers PKCS#11 v2.40 §5.7 allows for a partly readable template
    /// (`CKR_ATTRIBUTE_SENSITIVE`, `CKR_ATTRIBUTE_TYPE_INVALID`, and on the second call
    /// `CKR_BUFFER_TOO_SMALL`), and re-check every length for `CK_UNAVAILABLE_INFORMATION`: an
    /// attribute that cannot be read as a batch is asked for alone. No length a module reports
    /// is trusted beyond ``maximumAttributeLength`` or the buffer it was given.
    public func attributes(_ types: [AttributeType], of object: ObjectHandle) throws -> [AttributeType: AttributeReading] {
        let getAttributeValue = try loaded.function(\.C_GetAttributeValue, "C_GetAttributeValue")
        let objectHandle = CK_OBJECT_HANDLE(object.rawValue)

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
            if let length = Self.usableLength(template[index].ulValueLen) {
                available.append((type, length))
            } else {
                // Which reason applies is only known when asked alone.
                result[type] = try readAlone(type, of: object)
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
        guard secondRV == CKR_OK || secondRV == CKR_ATTRIBUTE_SENSITIVE || secondRV == CKR_ATTRIBUTE_TYPE_INVALID
            || secondRV == CKR_BUFFER_TOO_SMALL else {
            try check("C_GetAttributeValue", secondRV)
            return result
        }
        for (index, entry) in available.enumerated() {
            // A value that changed size between the calls, or that the module could not give in
            // the batch, is read again on its own.
            guard let length = Self.usableLength(second[index].ulValueLen), length <= entry.length else {
                result[entry.type] = try readAlone(entry.type, of: object)
                continue
            }
            let bytes = Array(UnsafeRawBufferPointer(start: buffers[index], count: length))
            result[entry.type] = Attribute(type: entry.type, value: bytes).map { .value($0) } ?? .unavailable(.attributeValueInvalid)
        }
        return result
    }

    /// A reported length as an `Int`, or nil for `CK_UNAVAILABLE_INFORMATION` (a cast macro Swift
    /// cannot import: all bits set) and for anything beyond ``maximumAttributeLength``.
    private static func usableLength(_ length: CK_ULONG) -> Int? {
        guard length != CK_ULONG.max, let value = Int(exactly: length), value <= maximumAttributeLength else { return nil }
        return value
    }

    /// One attribute, both calls on its own; what the module says instead of a value becomes the
    /// reading's reason. Never throws for an odd answer about the attribute itself.
    private func readAlone(_ type: AttributeType, of object: ObjectHandle) throws -> AttributeReading {
        let getAttributeValue = try loaded.function(\.C_GetAttributeValue, "C_GetAttributeValue")
        let objectHandle = CK_OBJECT_HANDLE(object.rawValue)
        var single = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(type.rawValue), pValue: nil, ulValueLen: 0)
        let firstRV = getAttributeValue(handle, objectHandle, &single, 1)
        guard firstRV == CKR_OK, let length = Self.usableLength(single.ulValueLen) else {
            if firstRV == CKR_OK {
                return .unavailable(single.ulValueLen == CK_ULONG.max ? .attributeTypeInvalid : .attributeValueInvalid)
            }
            return try Self.readingFailure(firstRV)
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(length, 1), alignment: 8)
        defer { buffer.deallocate() }
        single.pValue = buffer
        single.ulValueLen = CK_ULONG(length)
        let secondRV = getAttributeValue(handle, objectHandle, &single, 1)
        guard secondRV == CKR_OK else { return try Self.readingFailure(secondRV) }
        guard let returned = Self.usableLength(single.ulValueLen), returned <= length else {
            return .unavailable(.bufferTooSmall)
        }
        let bytes = Array(UnsafeRawBufferPointer(start: buffer, count: returned))
        return Attribute(type: type, value: bytes).map { .value($0) } ?? .unavailable(.attributeValueInvalid)
    }

    /// The reading for an attribute-level refusal; anything else (session gone, device removed)
    /// is an error of the call.
    private static func readingFailure(_ rv: CK_RV) throws -> AttributeReading {
        switch rv {
        case CK_RV(CKR_ATTRIBUTE_SENSITIVE), CK_RV(CKR_ATTRIBUTE_TYPE_INVALID), CK_RV(CKR_BUFFER_TOO_SMALL):
            return .unavailable(ReturnValue(rawValue: UInt(rv)))
        default:
            try check("C_GetAttributeValue", rv)
            return .unavailable(ReturnValue(rawValue: UInt(rv)))
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

    /// `C_SignInit` + `C_Sign` with the two-call length pattern; with `expectedLength` (an RSA
    /// key's modulus length, say) one `C_Sign` into a buffer of that size, falling back to the
    /// two-call pattern on `CKR_BUFFER_TOO_SMALL` (which leaves the operation active).
    public func sign(mechanism: MechanismType, parameter: MechanismParameter? = nil, key: ObjectHandle, data: some Collection<UInt8>,
                     expectedLength: Int? = nil) throws -> [UInt8] {
        let signInit = try loaded.function(\.C_SignInit, "C_SignInit")
        let sign = try loaded.function(\.C_Sign, "C_Sign")
        switch parameter {
        case nil:
            var cMechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(mechanism.rawValue), pParameter: nil, ulParameterLen: 0)
            try check("C_SignInit", signInit(handle, &cMechanism, CK_OBJECT_HANDLE(key.rawValue)))
        case .rsaPSS(let hash, let maskGeneration, let saltLength)?:
            var parameters = CK_RSA_PKCS_PSS_PARAMS(hashAlg: CK_MECHANISM_TYPE(hash.rawValue), mgf: CK_RSA_PKCS_MGF_TYPE(maskGeneration.rawValue),
                                                    sLen: CK_ULONG(saltLength))
            try withUnsafeMutableBytes(of: &parameters) { raw in
                var cMechanism = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(mechanism.rawValue), pParameter: raw.baseAddress,
                                              ulParameterLen: CK_ULONG(raw.count))
                try check("C_SignInit", signInit(handle, &cMechanism, CK_OBJECT_HANDLE(key.rawValue)))
            }
        }

        var input = Array(data)
        var length: CK_ULONG = 0
        if let expectedLength, expectedLength > 0, expectedLength <= Self.maximumAttributeLength {
            var signature = [UInt8](repeating: 0, count: expectedLength)
            length = CK_ULONG(expectedLength)
            let rv = sign(handle, &input, CK_ULONG(input.count), &signature, &length)
            if rv == CK_RV(CKR_OK) {
                guard let produced = Int(exactly: length), produced <= expectedLength else {
                    throw PKCS11Error(function: "C_Sign", returnValue: .generalError)
                }
                return Array(signature.prefix(produced))
            }
            guard rv == CK_RV(CKR_BUFFER_TOO_SMALL) else { try check("C_Sign", rv); return [] }
            length = 0
        }
        // With a NULL output buffer C_Sign only reports the length and keeps the operation active.
        try check("C_Sign", sign(handle, &input, CK_ULONG(input.count), nil, &length))
        // A signature is at most a few KiB; a larger claim is a module answering oddly.
        guard let capacity = Int(exactly: length), capacity <= Self.maximumAttributeLength else {
            throw PKCS11Error(function: "C_Sign", returnValue: .generalError)
        }
        var signature = [UInt8](repeating: 0, count: capacity)
        try check("C_Sign", sign(handle, &input, CK_ULONG(input.count), &signature, &length))
        guard let produced = Int(exactly: length), produced <= capacity else {
            throw PKCS11Error(function: "C_Sign", returnValue: .generalError)
        }
        return Array(signature.prefix(produced))
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
