internal import CPKCS11

/// A mechanism type (`CK_MECHANISM_TYPE`). Only parameterless mechanisms are used here.
public struct MechanismType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKM_RSA_PKCS_KEY_PAIR_GEN`.
    public static let rsaPKCSKeyPairGen = Self(rawValue: UInt(CKM_RSA_PKCS_KEY_PAIR_GEN))
    /// Raw RSASSA-PKCS1-v1_5: the caller supplies the DigestInfo.
    public static let rsaPKCS = Self(rawValue: UInt(CKM_RSA_PKCS))
    /// RSASSA-PKCS1-v1_5 with SHA-256 hashing done by the token: JOSE `RS256`.
    public static let sha256RSAPKCS = Self(rawValue: UInt(CKM_SHA256_RSA_PKCS))
    /// `CKM_SHA384_RSA_PKCS`.
    public static let sha384RSAPKCS = Self(rawValue: UInt(CKM_SHA384_RSA_PKCS))
    /// `CKM_SHA512_RSA_PKCS`.
    public static let sha512RSAPKCS = Self(rawValue: UInt(CKM_SHA512_RSA_PKCS))
    /// `CKM_SHA256_RSA_PKCS_PSS`.
    public static let sha256RSAPKCSPSS = Self(rawValue: UInt(CKM_SHA256_RSA_PKCS_PSS))
    /// `CKM_SHA256`.
    public static let sha256 = Self(rawValue: UInt(CKM_SHA256))
    /// `CKM_EC_KEY_PAIR_GEN`: an EC key pair on the curve `CKA_EC_PARAMS` names.
    public static let ecKeyPairGen = Self(rawValue: UInt(CKM_EC_KEY_PAIR_GEN))
    /// `CKM_ECDSA`: ECDSA over a digest the caller supplies; the signature is `r ‖ s`.
    public static let ecdsa = Self(rawValue: UInt(CKM_ECDSA))
    /// `CKM_RSA_PKCS_PSS`: RSASSA-PSS over a digest the caller supplies (needs ``MechanismParameter/rsaPSS(hash:maskGeneration:saltLength:)``).
    public static let rsaPKCSPSS = Self(rawValue: UInt(CKM_RSA_PKCS_PSS))
    /// `CKM_SHA384`.
    public static let sha384 = Self(rawValue: UInt(CKM_SHA384))
    /// `CKM_EC_EDWARDS_KEY_PAIR_GEN`: an Edwards-curve key pair (Ed25519 with the curve's OID).
    public static let ecEdwardsKeyPairGen = Self(rawValue: UInt(CKM_EC_EDWARDS_KEY_PAIR_GEN))
    /// `CKM_EDDSA`: pure EdDSA over the whole message.
    public static let eddsa = Self(rawValue: UInt(CKM_EDDSA))

    private static let names: [UInt: String] = [
        UInt(CKM_RSA_PKCS_KEY_PAIR_GEN): "CKM_RSA_PKCS_KEY_PAIR_GEN",
        UInt(CKM_RSA_PKCS): "CKM_RSA_PKCS",
        UInt(CKM_RSA_X_509): "CKM_RSA_X_509",
        UInt(CKM_RSA_PKCS_OAEP): "CKM_RSA_PKCS_OAEP",
        UInt(CKM_RSA_PKCS_PSS): "CKM_RSA_PKCS_PSS",
        UInt(CKM_SHA1_RSA_PKCS): "CKM_SHA1_RSA_PKCS",
        UInt(CKM_SHA256_RSA_PKCS): "CKM_SHA256_RSA_PKCS",
        UInt(CKM_SHA384_RSA_PKCS): "CKM_SHA384_RSA_PKCS",
        UInt(CKM_SHA512_RSA_PKCS): "CKM_SHA512_RSA_PKCS",
        UInt(CKM_SHA256_RSA_PKCS_PSS): "CKM_SHA256_RSA_PKCS_PSS",
        UInt(CKM_SHA_1): "CKM_SHA_1",
        UInt(CKM_SHA256): "CKM_SHA256",
        UInt(CKM_SHA384): "CKM_SHA384",
        UInt(CKM_SHA512): "CKM_SHA512",
        UInt(CKM_EC_KEY_PAIR_GEN): "CKM_EC_KEY_PAIR_GEN",
        UInt(CKM_ECDSA): "CKM_ECDSA",
        UInt(CKM_AES_KEY_GEN): "CKM_AES_KEY_GEN",
        UInt(CKM_EC_EDWARDS_KEY_PAIR_GEN): "CKM_EC_EDWARDS_KEY_PAIR_GEN",
        UInt(CKM_EDDSA): "CKM_EDDSA",
    ]

    /// The specification's name, e.g. `CKM_SHA256_RSA_PKCS`.
    public var name: String { Self.names[rawValue] ?? "CKM_0x" + String(rawValue, radix: 16) }
    /// How it reads in messages.
    public var description: String { name }
}

/// A mask generation function of RSASSA-PSS (`CK_RSA_PKCS_MGF_TYPE`).
public struct MaskGenerationFunction: RawRepresentable, Hashable, Sendable {
    /// The number PKCS#11 uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKG_MGF1_SHA256`.
    public static let mgf1SHA256 = Self(rawValue: UInt(CKG_MGF1_SHA256))
    /// `CKG_MGF1_SHA384`.
    public static let mgf1SHA384 = Self(rawValue: UInt(CKG_MGF1_SHA384))
}

/// The parameter a mechanism takes (`pParameter` of `CK_MECHANISM`).
public enum MechanismParameter: Hashable, Sendable {
    /// `CK_RSA_PKCS_PSS_PARAMS`: the hash, the mask generation function and the salt length in bytes.
    case rsaPSS(hash: MechanismType, maskGeneration: MaskGenerationFunction, saltLength: UInt)
}

/// `CK_MECHANISM_INFO`.
public struct MechanismInfo: Hashable, Sendable {
    /// Minimum key size; bits for RSA.
    public let minimumKeySize: UInt
    /// Maximum key size; bits for RSA.
    public let maximumKeySize: UInt
    /// The flags.
    public let flags: MechanismFlags

    /// Creates the value from its parts.
    public init(minimumKeySize: UInt, maximumKeySize: UInt, flags: MechanismFlags) {
        self.minimumKeySize = minimumKeySize
        self.maximumKeySize = maximumKeySize
        self.flags = flags
    }
}

/// `CK_MECHANISM_INFO.flags`.
public struct MechanismFlags: OptionSet, Hashable, Sendable {
    /// The number PKCS#11 (or the wire) uses.
    public let rawValue: UInt
    /// The value with this number.
    public init(rawValue: UInt) { self.rawValue = rawValue }

    /// `CKF_HW`.
    public static let hardware = Self(rawValue: UInt(CKF_HW))
    /// `CKF_SIGN`.
    public static let sign = Self(rawValue: UInt(CKF_SIGN))
    /// `CKF_VERIFY`.
    public static let verify = Self(rawValue: UInt(CKF_VERIFY))
    /// `CKF_GENERATE_KEY_PAIR`.
    public static let generateKeyPair = Self(rawValue: UInt(CKF_GENERATE_KEY_PAIR))
    /// `CKF_ENCRYPT`.
    public static let encrypt = Self(rawValue: UInt(CKF_ENCRYPT))
    /// `CKF_DECRYPT`.
    public static let decrypt = Self(rawValue: UInt(CKF_DECRYPT))
}
