internal import CPKCS11
import HexEncoding

/// An attribute type (`CK_ATTRIBUTE_TYPE`).
public struct AttributeType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKA_CLASS`.
    public static let `class` = Self(rawValue: UInt(CKA_CLASS))
    /// `CKA_TOKEN`.
    public static let token = Self(rawValue: UInt(CKA_TOKEN))
    /// `CKA_PRIVATE`.
    public static let `private` = Self(rawValue: UInt(CKA_PRIVATE))
    /// `CKA_LABEL`.
    public static let label = Self(rawValue: UInt(CKA_LABEL))
    /// `CKA_ID`.
    public static let id = Self(rawValue: UInt(CKA_ID))
    /// `CKA_KEY_TYPE`.
    public static let keyType = Self(rawValue: UInt(CKA_KEY_TYPE))
    /// `CKA_MODIFIABLE`.
    public static let modifiable = Self(rawValue: UInt(CKA_MODIFIABLE))
    /// `CKA_COPYABLE`.
    public static let copyable = Self(rawValue: UInt(CKA_COPYABLE))
    /// `CKA_DESTROYABLE`.
    public static let destroyable = Self(rawValue: UInt(CKA_DESTROYABLE))
    /// `CKA_SENSITIVE`.
    public static let sensitive = Self(rawValue: UInt(CKA_SENSITIVE))
    /// `CKA_EXTRACTABLE`.
    public static let extractable = Self(rawValue: UInt(CKA_EXTRACTABLE))
    /// `CKA_ALWAYS_SENSITIVE`.
    public static let alwaysSensitive = Self(rawValue: UInt(CKA_ALWAYS_SENSITIVE))
    /// `CKA_NEVER_EXTRACTABLE`.
    public static let neverExtractable = Self(rawValue: UInt(CKA_NEVER_EXTRACTABLE))
    /// `CKA_LOCAL`.
    public static let local = Self(rawValue: UInt(CKA_LOCAL))
    /// `CKA_ALWAYS_AUTHENTICATE`.
    public static let alwaysAuthenticate = Self(rawValue: UInt(CKA_ALWAYS_AUTHENTICATE))
    /// `CKA_WRAP_WITH_TRUSTED`.
    public static let wrapWithTrusted = Self(rawValue: UInt(CKA_WRAP_WITH_TRUSTED))
    /// `CKA_TRUSTED`.
    public static let trusted = Self(rawValue: UInt(CKA_TRUSTED))
    /// `CKA_KEY_GEN_MECHANISM`.
    public static let keyGenMechanism = Self(rawValue: UInt(CKA_KEY_GEN_MECHANISM))
    /// `CKA_ENCRYPT`.
    public static let encrypt = Self(rawValue: UInt(CKA_ENCRYPT))
    /// `CKA_DECRYPT`.
    public static let decrypt = Self(rawValue: UInt(CKA_DECRYPT))
    /// `CKA_WRAP`.
    public static let wrap = Self(rawValue: UInt(CKA_WRAP))
    /// `CKA_UNWRAP`.
    public static let unwrap = Self(rawValue: UInt(CKA_UNWRAP))
    /// `CKA_SIGN`.
    public static let sign = Self(rawValue: UInt(CKA_SIGN))
    /// `CKA_SIGN_RECOVER`.
    public static let signRecover = Self(rawValue: UInt(CKA_SIGN_RECOVER))
    /// `CKA_VERIFY`.
    public static let verify = Self(rawValue: UInt(CKA_VERIFY))
    /// `CKA_VERIFY_RECOVER`.
    public static let verifyRecover = Self(rawValue: UInt(CKA_VERIFY_RECOVER))
    /// `CKA_DERIVE`.
    public static let derive = Self(rawValue: UInt(CKA_DERIVE))
    /// `CKA_MODULUS`.
    public static let modulus = Self(rawValue: UInt(CKA_MODULUS))
    /// `CKA_MODULUS_BITS`.
    public static let modulusBits = Self(rawValue: UInt(CKA_MODULUS_BITS))
    /// `CKA_PUBLIC_EXPONENT`.
    public static let publicExponent = Self(rawValue: UInt(CKA_PUBLIC_EXPONENT))
    /// `CKA_PRIVATE_EXPONENT`.
    public static let privateExponent = Self(rawValue: UInt(CKA_PRIVATE_EXPONENT))
    /// `CKA_PRIME_1`.
    public static let prime1 = Self(rawValue: UInt(CKA_PRIME_1))
    /// `CKA_PRIME_2`.
    public static let prime2 = Self(rawValue: UInt(CKA_PRIME_2))
    /// `CKA_EXPONENT_1`.
    public static let exponent1 = Self(rawValue: UInt(CKA_EXPONENT_1))
    /// `CKA_EXPONENT_2`.
    public static let exponent2 = Self(rawValue: UInt(CKA_EXPONENT_2))
    /// `CKA_COEFFICIENT`.
    public static let coefficient = Self(rawValue: UInt(CKA_COEFFICIENT))
    /// `CKA_VALUE`: a data object's (or secret key's) value.
    public static let value = Self(rawValue: UInt(CKA_VALUE))
    /// `CKA_APPLICATION`: which application a data object belongs to.
    public static let application = Self(rawValue: UInt(CKA_APPLICATION))
    /// `CKA_EC_PARAMS`: the curve, as DER (a named curve's OID).
    public static let ecParams = Self(rawValue: UInt(CKA_EC_PARAMS))
    /// `CKA_EC_POINT`: the public point, as a DER OCTET STRING around the X9.62 encoding.
    public static let ecPoint = Self(rawValue: UInt(CKA_EC_POINT))
    /// `CKA_ALLOWED_MECHANISMS`: the only mechanisms the key may be used with (an array of
    /// `CK_MECHANISM_TYPE`; empty or absent: any).
    public static let allowedMechanisms = Self(rawValue: UInt(CKA_ALLOWED_MECHANISMS))

    private static let names: [UInt: String] = [
        UInt(CKA_CLASS): "CKA_CLASS", UInt(CKA_TOKEN): "CKA_TOKEN", UInt(CKA_PRIVATE): "CKA_PRIVATE",
        UInt(CKA_LABEL): "CKA_LABEL", UInt(CKA_ID): "CKA_ID", UInt(CKA_KEY_TYPE): "CKA_KEY_TYPE",
        UInt(CKA_MODIFIABLE): "CKA_MODIFIABLE", UInt(CKA_COPYABLE): "CKA_COPYABLE",
        UInt(CKA_DESTROYABLE): "CKA_DESTROYABLE", UInt(CKA_SENSITIVE): "CKA_SENSITIVE",
        UInt(CKA_EXTRACTABLE): "CKA_EXTRACTABLE", UInt(CKA_ALWAYS_SENSITIVE): "CKA_ALWAYS_SENSITIVE",
        UInt(CKA_NEVER_EXTRACTABLE): "CKA_NEVER_EXTRACTABLE", UInt(CKA_LOCAL): "CKA_LOCAL",
        UInt(CKA_ALWAYS_AUTHENTICATE): "CKA_ALWAYS_AUTHENTICATE",
        UInt(CKA_WRAP_WITH_TRUSTED): "CKA_WRAP_WITH_TRUSTED", UInt(CKA_TRUSTED): "CKA_TRUSTED",
        UInt(CKA_KEY_GEN_MECHANISM): "CKA_KEY_GEN_MECHANISM", UInt(CKA_ENCRYPT): "CKA_ENCRYPT",
        UInt(CKA_DECRYPT): "CKA_DECRYPT", UInt(CKA_WRAP): "CKA_WRAP", UInt(CKA_UNWRAP): "CKA_UNWRAP",
        UInt(CKA_SIGN): "CKA_SIGN", UInt(CKA_SIGN_RECOVER): "CKA_SIGN_RECOVER",
        UInt(CKA_VERIFY): "CKA_VERIFY", UInt(CKA_VERIFY_RECOVER): "CKA_VERIFY_RECOVER",
        UInt(CKA_DERIVE): "CKA_DERIVE", UInt(CKA_MODULUS): "CKA_MODULUS",
        UInt(CKA_MODULUS_BITS): "CKA_MODULUS_BITS", UInt(CKA_PUBLIC_EXPONENT): "CKA_PUBLIC_EXPONENT",
        UInt(CKA_PRIVATE_EXPONENT): "CKA_PRIVATE_EXPONENT", UInt(CKA_PRIME_1): "CKA_PRIME_1",
        UInt(CKA_PRIME_2): "CKA_PRIME_2", UInt(CKA_EXPONENT_1): "CKA_EXPONENT_1",
        UInt(CKA_EXPONENT_2): "CKA_EXPONENT_2", UInt(CKA_COEFFICIENT): "CKA_COEFFICIENT",
        UInt(CKA_EC_PARAMS): "CKA_EC_PARAMS", UInt(CKA_EC_POINT): "CKA_EC_POINT",
        UInt(CKA_VALUE): "CKA_VALUE", UInt(CKA_APPLICATION): "CKA_APPLICATION",
        UInt(CKA_ALLOWED_MECHANISMS): "CKA_ALLOWED_MECHANISMS",
    ]

    /// The specification's name, e.g. `CKA_SENSITIVE`.
    public var name: String { Self.names[rawValue] ?? "CKA_0x" + String(rawValue, radix: 16) }
    /// How it reads in messages.
    public var description: String { name }

    /// How the value of an attribute of this type is encoded.
    enum Encoding { case bool, ulong, bytes, utf8, mechanisms }

    var encoding: Encoding {
        switch self {
        case .class, .keyType, .modulusBits, .keyGenMechanism: return .ulong
        case .label: return .utf8
        case .allowedMechanisms: return .mechanisms
        case .id, .modulus, .publicExponent, .privateExponent, .prime1, .prime2, .exponent1,
             .exponent2, .coefficient:
            return .bytes
        case .token, .private, .modifiable, .copyable, .destroyable, .sensitive, .extractable,
             .alwaysSensitive, .neverExtractable, .local, .alwaysAuthenticate, .wrapWithTrusted,
             .trusted, .encrypt, .decrypt, .wrap, .unwrap, .sign, .signRecover, .verify,
             .verifyRecover, .derive:
            return .bool
        default:
            return .bytes
        }
    }
}

/// An object class (`CK_OBJECT_CLASS`).
public struct ObjectClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKO_DATA`.
    public static let data = Self(rawValue: UInt(CKO_DATA))
    /// `CKO_CERTIFICATE`.
    public static let certificate = Self(rawValue: UInt(CKO_CERTIFICATE))
    /// `CKO_PUBLIC_KEY`.
    public static let publicKey = Self(rawValue: UInt(CKO_PUBLIC_KEY))
    /// `CKO_PRIVATE_KEY`.
    public static let privateKey = Self(rawValue: UInt(CKO_PRIVATE_KEY))
    /// `CKO_SECRET_KEY`.
    public static let secretKey = Self(rawValue: UInt(CKO_SECRET_KEY))

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .data: return "data"
        case .certificate: return "cert"
        case .publicKey: return "public"
        case .privateKey: return "private"
        case .secretKey: return "secret-key"
        default: return "CKO_0x" + String(rawValue, radix: 16)
        }
    }
}

/// A key type (`CK_KEY_TYPE`).
public struct KeyType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKK_RSA`.
    public static let rsa = Self(rawValue: UInt(CKK_RSA))
    /// `CKK_EC`.
    public static let ec = Self(rawValue: UInt(CKK_EC))
    /// `CKK_AES`.
    public static let aes = Self(rawValue: UInt(CKK_AES))
    /// `CKK_EC_EDWARDS` (Ed25519, Ed448).
    public static let ecEdwards = Self(rawValue: UInt(CKK_EC_EDWARDS))

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .rsa: return "RSA"
        case .ec: return "EC"
        case .aes: return "AES"
        case .ecEdwards: return "EC_EDWARDS"
        default: return "CKK_0x" + String(rawValue, radix: 16)
        }
    }
}

/// An object handle (`CK_OBJECT_HANDLE`). Valid for the sessions of this process while the
/// object exists.
public struct ObjectHandle: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }
    /// How it reads in messages.
    public var description: String { "object#\(rawValue)" }
}

/// One attribute with its value, typed by kind: what templates are made of and what reading
/// attributes back yields.
public enum Attribute: Hashable, Sendable, CustomStringConvertible {
    case `class`(ObjectClass)
    case keyType(KeyType)
    case label(String)
    case id([UInt8])
    case modulusBits(UInt)
    case keyGenMechanism(MechanismType)
    /// `CKA_ALLOWED_MECHANISMS`.
    case allowedMechanisms([MechanismType])
    /// A boolean attribute (`CKA_TOKEN`, `CKA_SENSITIVE`, `CKA_SIGN` …).
    case bool(AttributeType, Bool)
    /// A byte-string attribute (`CKA_MODULUS`, `CKA_PUBLIC_EXPONENT` …).
    case bytes(AttributeType, [UInt8])
    /// An unsigned long attribute not modelled above.
    case ulong(AttributeType, UInt)

    // Spelled-out constructors for the booleans a key template sets, so templates read like
    // the specification's tables.
    /// The attribute `CKA_TOKEN` with this value.
    public static func token(_ value: Bool) -> Self { .bool(.token, value) }
    /// The attribute `CKA_PRIVATE` with this value.
    public static func `private`(_ value: Bool) -> Self { .bool(.private, value) }
    /// The attribute `CKA_MODIFIABLE` with this value.
    public static func modifiable(_ value: Bool) -> Self { .bool(.modifiable, value) }
    /// The attribute `CKA_SENSITIVE` with this value.
    public static func sensitive(_ value: Bool) -> Self { .bool(.sensitive, value) }
    /// The attribute `CKA_EXTRACTABLE` with this value.
    public static func extractable(_ value: Bool) -> Self { .bool(.extractable, value) }
    /// The attribute `CKA_SIGN` with this value.
    public static func sign(_ value: Bool) -> Self { .bool(.sign, value) }
    /// The attribute `CKA_SIGN_RECOVER` with this value.
    public static func signRecover(_ value: Bool) -> Self { .bool(.signRecover, value) }
    /// The attribute `CKA_VERIFY` with this value.
    public static func verify(_ value: Bool) -> Self { .bool(.verify, value) }
    /// The attribute `CKA_VERIFY_RECOVER` with this value.
    public static func verifyRecover(_ value: Bool) -> Self { .bool(.verifyRecover, value) }
    /// The attribute `CKA_ENCRYPT` with this value.
    public static func encrypt(_ value: Bool) -> Self { .bool(.encrypt, value) }
    /// The attribute `CKA_DECRYPT` with this value.
    public static func decrypt(_ value: Bool) -> Self { .bool(.decrypt, value) }
    /// The attribute `CKA_WRAP` with this value.
    public static func wrap(_ value: Bool) -> Self { .bool(.wrap, value) }
    /// The attribute `CKA_UNWRAP` with this value.
    public static func unwrap(_ value: Bool) -> Self { .bool(.unwrap, value) }
    /// The attribute `CKA_DERIVE` with this value.
    public static func derive(_ value: Bool) -> Self { .bool(.derive, value) }
    /// The attribute `CKA_PUBLIC_EXPONENT` with this value.
    public static func publicExponent(_ value: [UInt8]) -> Self { .bytes(.publicExponent, value) }
    /// The attribute `CKA_MODULUS` with this value.
    public static func modulus(_ value: [UInt8]) -> Self { .bytes(.modulus, value) }
    /// The attribute `CKA_EC_PARAMS` with this value (DER of the curve's OID).
    public static func ecParams(_ value: [UInt8]) -> Self { .bytes(.ecParams, value) }
    /// The attribute `CKA_VALUE` with these bytes.
    public static func value(_ bytes: [UInt8]) -> Self { .bytes(.value, bytes) }

    /// The attribute's type.
    public var type: AttributeType {
        switch self {
        case .class: return .class
        case .keyType: return .keyType
        case .label: return .label
        case .id: return .id
        case .modulusBits: return .modulusBits
        case .keyGenMechanism: return .keyGenMechanism
        case .allowedMechanisms: return .allowedMechanisms
        case .bool(let type, _), .bytes(let type, _), .ulong(let type, _): return type
        }
    }

    /// The value when it is a boolean.
    public var boolValue: Bool? {
        if case .bool(_, let value) = self { return value }
        return nil
    }

    /// The value as bytes when it is a byte string.
    public var bytesValue: [UInt8]? {
        switch self {
        case .bytes(_, let value), .id(let value): return value
        default: return nil
        }
    }

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .class(let value): return "CKA_CLASS=\(value)"
        case .keyType(let value): return "CKA_KEY_TYPE=\(value)"
        case .label(let value): return "CKA_LABEL=\(value)"
        case .id(let value): return "CKA_ID=" + hex(value)
        case .modulusBits(let value): return "CKA_MODULUS_BITS=\(value)"
        case .keyGenMechanism(let value): return "CKA_KEY_GEN_MECHANISM=\(value)"
        case .allowedMechanisms(let values): return "CKA_ALLOWED_MECHANISMS=[\(values.map(\.description).joined(separator: ", "))]"
        case .bool(let type, let value): return "\(type.name)=\(value)"
        case .bytes(let type, let value): return "\(type.name)=<\(value.count) bytes>"
        case .ulong(let type, let value): return "\(type.name)=\(value)"
        }
    }

    /// The value encoded as PKCS#11 expects it (`CK_ULONG` native width, `CK_BBOOL` one byte).
    var encodedValue: [UInt8] {
        switch self {
        case .class(let value): return Self.encodeULong(value.rawValue)
        case .keyType(let value): return Self.encodeULong(value.rawValue)
        case .modulusBits(let value): return Self.encodeULong(value)
        case .keyGenMechanism(let value): return Self.encodeULong(value.rawValue)
        case .allowedMechanisms(let values): return values.flatMap { Self.encodeULong($0.rawValue) }
        case .ulong(_, let value): return Self.encodeULong(value)
        case .label(let value): return Array(value.utf8)
        case .id(let value): return value
        case .bytes(_, let value): return value
        case .bool(_, let value): return [value ? UInt8(CK_TRUE) : UInt8(CK_FALSE)]
        }
    }

    private static func encodeULong(_ value: UInt) -> [UInt8] {
        withUnsafeBytes(of: CK_ULONG(value)) { Array($0) }
    }

    /// Decodes a value read back with `C_GetAttributeValue`; `nil` when its length does not fit
    /// the type (a module bug worth refusing rather than misreading).
    init?(type: AttributeType, value: [UInt8]) {
        switch type.encoding {
        case .bool:
            guard value.count == 1 else { return nil }
            self = .bool(type, value[0] != 0)
        case .ulong:
            guard value.count == MemoryLayout<CK_ULONG>.size else { return nil }
            let raw = UInt(value.withUnsafeBytes { $0.loadUnaligned(as: CK_ULONG.self) })
            switch type {
            case .class: self = .class(ObjectClass(rawValue: raw))
            case .keyType: self = .keyType(KeyType(rawValue: raw))
            case .modulusBits: self = .modulusBits(raw)
            case .keyGenMechanism: self = .keyGenMechanism(MechanismType(rawValue: raw))
            default: self = .ulong(type, raw)
            }
        case .utf8:
            self = .label(String(decoding: value, as: UTF8.self))
        case .mechanisms:
            let size = MemoryLayout<CK_ULONG>.size
            guard value.count % size == 0 else { return nil }
            self = .allowedMechanisms(stride(from: 0, to: value.count, by: size).map { offset in
                MechanismType(rawValue: UInt(value[offset..<(offset + size)].withUnsafeBytes { $0.loadUnaligned(as: CK_ULONG.self) }))
            })
        case .bytes:
            self = type == .id ? .id(value) : .bytes(type, value)
        }
    }
}
