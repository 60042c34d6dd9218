import PKCS11

/// What a Fireblocks API signing key must be: an RSA key made on the token, sign-only,
/// sensitive, private (login required) and never extractable.
///
/// The templates set every relevant boolean explicitly because token defaults differ and are
/// often permissive (SoftHSM: `CKA_SENSITIVE` false, `CKA_DECRYPT`/`CKA_UNWRAP` true). What the
/// token actually did is then read back and judged by ``evaluate(privateKey:modulusBits:)``.
public struct KeyPolicy: Sendable {
    /// One attribute the private key must have with a given value, and why.
    public struct Requirement: Hashable, Sendable {
        /// The attribute.
        public let attribute: AttributeType
        /// The value the attribute must have.
        public let expected: Bool
        /// The why.
        public let why: String
    }

    /// The boolean requirements on the private key, checked after generation and before every use.
    public let requirements: [Requirement]
    /// Smallest accepted modulus (RSA keys).
    public let minimumModulusBits: UInt
    /// The key type the policy is for.
    public let keyType: KeyType
    /// The mechanism the tool signs with: a key whose token limits it to other mechanisms
    /// (`CKA_ALLOWED_MECHANISMS`, when set) fails the policy instead of failing at `C_SignInit`
    /// (an RSA approval key is limited to RSA-PSS, so it is never taken for an API key). Nil:
    /// not checked here (approval keys check their own).
    public let signingMechanism: MechanismType?

    /// A policy: the boolean requirements, for keys of `keyType`.
    public init(requirements: [Requirement], minimumModulusBits: UInt, keyType: KeyType = .rsa, signingMechanism: MechanismType? = nil) {
        self.requirements = requirements
        self.minimumModulusBits = minimumModulusBits
        self.keyType = keyType
        self.signingMechanism = signingMechanism
    }

    /// The audit key's policy: the same requirements as ``signingKey`` (made on the token,
    /// sign-only, sensitive, private, never extractable), for an EC key (P-256) that signs with
    /// `CKM_ECDSA`.
    public static let auditKey = KeyPolicy(requirements: signingKey.requirements, minimumModulusBits: 0, keyType: .ec, signingMechanism: .ecdsa)

    /// The policy of this tool.
    public static let signingKey = KeyPolicy(
        requirements: [
            Requirement(attribute: .local, expected: true,
                        why: "generated on the token, not imported"),
            Requirement(attribute: .alwaysSensitive, expected: true,
                        why: "was never readable in the clear"),
            Requirement(attribute: .neverExtractable, expected: true,
                        why: "was never exportable, even wrapped"),
            Requirement(attribute: .sensitive, expected: true,
                        why: "private components cannot be read"),
            Requirement(attribute: .private, expected: true,
                        why: "cannot be seen or used without logging in"),
            Requirement(attribute: .extractable, expected: false,
                        why: "cannot be wrapped out of the token"),
            Requirement(attribute: .sign, expected: true,
                        why: "can sign (its only purpose)"),
            Requirement(attribute: .decrypt, expected: false,
                        why: "cannot be used as a decryption oracle"),
            Requirement(attribute: .unwrap, expected: false,
                        why: "cannot import other keys"),
        ],
        minimumModulusBits: 2048,
        signingMechanism: .sha256RSAPKCS
    )

    /// Key sizes `key generate` offers.
    public static let supportedModulusBits: [UInt] = [2048, 3072, 4096]

    /// The private-key template for `C_GenerateKeyPair`.
    /// - Parameters:
    ///   - onToken: false for the session object that is copied into the token once its id is known.
    ///   - modifiable: false makes the key read-only; the copy step needs a modifiable source.
    public func privateKeyTemplate(label: String, id: [UInt8]?, onToken: Bool, modifiable: Bool) -> [Attribute] {
        var template: [Attribute] = [
            .class(.privateKey), .keyType(.rsa),
            .token(onToken), .private(true), .modifiable(modifiable),
            .sensitive(true), .extractable(false),
            .sign(true), .signRecover(false), .decrypt(false), .unwrap(false), .derive(false),
            .label(label),
        ]
        if let id { template.append(.id(id)) }
        return template
    }

    /// The public-key template for `C_GenerateKeyPair` (exponent 65537).
    public func publicKeyTemplate(label: String, id: [UInt8]?, bits: UInt, onToken: Bool, modifiable: Bool) -> [Attribute] {
        var template: [Attribute] = [
            .class(.publicKey), .keyType(.rsa),
            .token(onToken), .private(false), .modifiable(modifiable),
            .verify(true), .verifyRecover(false), .encrypt(false), .wrap(false), .derive(false),
            .modulusBits(bits), .publicExponent([0x01, 0x00, 0x01]),
            .label(label),
        ]
        if let id { template.append(.id(id)) }
        return template
    }

    /// Attributes read back to judge a private key (and shown by `key show`).
    public static let privateKeyAttributesToRead: [AttributeType] = [
        .class, .keyType, .token, .private, .modifiable, .local, .keyGenMechanism,
        .sensitive, .alwaysSensitive, .extractable, .neverExtractable,
        .sign, .signRecover, .decrypt, .unwrap, .derive, .alwaysAuthenticate, .allowedMechanisms,
    ]

    /// Attributes shown for the public key.
    public static let publicKeyAttributesToRead: [AttributeType] = [
        .class, .keyType, .token, .private, .modifiable, .local,
        .verify, .verifyRecover, .encrypt, .wrap, .derive, .modulusBits,
    ]

    /// Judges a private key from its attributes as read from the token.
    public func evaluate(privateKey attributes: [AttributeType: AttributeReading], modulusBits: UInt?) -> PolicyVerdict {
        var failures: [PolicyFailure] = []
        if case .value(.class(let objectClass))? = attributes[.class], objectClass != .privateKey {
            failures.append(PolicyFailure(attribute: .class, problem: "is \(objectClass), not a private key"))
        }
        if case .value(.keyType(let keyType))? = attributes[.keyType], keyType != self.keyType {
            failures.append(PolicyFailure(attribute: .keyType, problem: "is \(keyType), not \(self.keyType)"))
        }
        for requirement in requirements {
            switch attributes[requirement.attribute] {
            case .value(.bool(_, let actual))?:
                if actual != requirement.expected {
                    failures.append(PolicyFailure(attribute: requirement.attribute,
                        problem: "is \(actual), must be \(requirement.expected) (\(requirement.why))"))
                }
            case .unavailable(let rv)?:
                failures.append(PolicyFailure(attribute: requirement.attribute, problem: "cannot be read (\(rv)), must be \(requirement.expected)"))
            default:
                failures.append(PolicyFailure(attribute: requirement.attribute, problem: "was not reported, must be \(requirement.expected)"))
            }
        }
        if let signingMechanism, case .value(.allowedMechanisms(let allowed))? = attributes[.allowedMechanisms], !allowed.isEmpty,
           !allowed.contains(signingMechanism) {
            failures.append(PolicyFailure(attribute: .allowedMechanisms,
                problem: "allows only \(allowed.map(\.name).joined(separator: ", ")), not \(signingMechanism.name), which this key is used with (an approval key is no API key)"))
        }
        if keyType == .rsa, let modulusBits, modulusBits < minimumModulusBits {
            failures.append(PolicyFailure(attribute: .modulusBits, problem: "is \(modulusBits), must be at least \(minimumModulusBits)"))
        }
        return failures.isEmpty ? .meetsPolicy : .failsToMeetPolicy(failures)
    }
}

/// The outcome of judging a key against ``KeyPolicy``.
public enum PolicyVerdict: Hashable, Sendable {
    case meetsPolicy
    case failsToMeetPolicy([PolicyFailure])

    /// Whether the key meets the key policy.
    public var meetsPolicy: Bool { self == .meetsPolicy }

    /// The failing attributes, empty when the key meets the policy.
    public var failures: [PolicyFailure] {
        if case .failsToMeetPolicy(let failures) = self { return failures }
        return []
    }
}

/// One way a key fails the policy.
public struct PolicyFailure: Hashable, Sendable, CustomStringConvertible {
    /// The attribute.
    public let attribute: AttributeType
    /// What is wrong with it.
    public let problem: String
    /// How it reads in messages.
    public var description: String { "\(attribute.name) \(problem)" }
}
