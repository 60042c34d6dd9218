#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys
import HexEncoding

/// A token as `token list` reports it.
public struct TokenReport: Codable, Sendable, Equatable {
    /// The slot id.
    public let slotID: UInt
    /// The label.
    public let label: String
    /// The manufacturer.
    public let manufacturer: String
    /// The model.
    public let model: String
    /// The token serial number.
    public let serial: String
    /// Whether the token is initialised.
    public let initialized: Bool
    /// The flags.
    public let flags: [String]
    /// A URI selecting this token alone.
    public let uri: String

    init(_ token: LocatedToken) {
        slotID = token.slot.id.rawValue
        label = token.info.label
        manufacturer = token.info.manufacturer
        model = token.info.model
        serial = token.info.serialNumber
        initialized = token.info.flags.contains(.tokenInitialized)
        flags = token.info.flags.names
        uri = token.uri.description
    }
}

/// A key pair as `key show`, `key list` and `key generate` report it.
public struct KeyReport: Codable, Sendable, Equatable {
    /// The label.
    public let label: String
    /// `CKA_ID`, lowercase hex.
    public let id: String
    /// A URI selecting this key.
    public let uri: String
    /// The token (label).
    public let token: String
    /// The key type.
    public let keyType: String
    /// The modulus size in bits.
    public let bits: Int?
    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex.
    public let fingerprintSHA256: String?
    /// `meets-policy` or `fails-policy`.
    public let verdict: String
    /// The policy failures.
    public let policyFailures: [String]
    /// The private key attributes.
    public let privateKeyAttributes: [String: AttributeReport]
    /// The public key attributes.
    public let publicKeyAttributes: [String: AttributeReport]
    /// The public key PEM.
    public let publicKeyPEM: String?

    /// Whether the key meets the key policy.
    public var meetsPolicy: Bool { verdict == "meets-policy" }

    init(_ pair: TokenKeyPair) {
        label = pair.label
        id = hex(pair.id)
        uri = pair.uri.description
        token = pair.token.label
        keyType = "RSA"
        bits = pair.publicKey?.bits
        fingerprintSHA256 = pair.publicKey?.fingerprint
        verdict = pair.provenance.verdict.meetsPolicy ? "meets-policy" : "fails-policy"
        policyFailures = pair.provenance.verdict.failures.map(\.description)
        privateKeyAttributes = Self.attributes(pair.provenance.privateKeyAttributes, shown: KeyPolicy.privateKeyAttributesToRead)
        publicKeyAttributes = Self.attributes(pair.provenance.publicKeyAttributes, shown: KeyPolicy.publicKeyAttributesToRead)
        publicKeyPEM = pair.publicKey?.pem
    }

    private static func attributes(_ readings: [AttributeType: AttributeReading], shown: [AttributeType]) -> [String: AttributeReport] {
        var result: [String: AttributeReport] = [:]
        for type in shown {
            guard let reading = readings[type] else { continue }
            result[type.name] = AttributeReport(reading)
        }
        return result
    }
}

/// One attribute value in a report: a JSON boolean, number or string.
public enum AttributeReport: Codable, Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case number(UInt)
    case text(String)

    init(_ reading: AttributeReading) {
        switch reading {
        case .unavailable(let rv):
            self = .text("unavailable (\(rv.name))")
        case .value(let attribute):
            switch attribute {
            case .bool(_, let value): self = .bool(value)
            case .modulusBits(let value), .ulong(_, let value): self = .number(value)
            case .class(let value): self = .text(value.description)
            case .keyType(let value): self = .text(value.description)
            case .keyGenMechanism(let value): self = .text(value.name)
            case .allowedMechanisms(let values): self = .text(values.isEmpty ? "any" : values.map(\.name).joined(separator: " "))
            case .label(let value): self = .text(value)
            case .id(let value), .bytes(_, let value): self = .text(hex(value))
            }
        }
    }

    /// Decodes the value.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(UInt.self) {
            self = .number(value)
        } else {
            self = .text(try container.decode(String.self))
        }
    }

    /// Encodes the value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .text(let value): try container.encode(value)
        }
    }

    /// How it reads in messages.
    public var description: String {
        switch self {
        case .bool(let value): return String(value)
        case .number(let value): return String(value)
        case .text(let value): return value
        }
    }
}

/// A CSR as `csr` reports it.
public struct CSRReport: Codable, Sendable, Equatable {
    /// Where the PEM was written (`-` for standard output).
    public let path: String
    /// SHA-256 of the PEM bytes written, lowercase hex.
    public let pemSHA256: String
    /// RFC 4514 form of the subject.
    public let subject: String
    /// The signature algorithm.
    public let signatureAlgorithm: String
    /// The CSR's self-signature verified with the public key read from the token.
    public let verified: Bool
    /// The key.
    public let key: KeyIdentity
}

/// Enough to identify a key in a report.
public struct KeyIdentity: Codable, Sendable, Equatable {
    /// The label.
    public let label: String
    /// The id.
    public let id: String
    /// The token (label).
    public let token: String
    /// The fingerprint SHA-256.
    public let fingerprintSHA256: String

    init(_ pair: TokenKeyPair, publicKey: TokenRSAPublicKey) {
        label = pair.label
        id = hex(pair.id)
        token = pair.token.label
        fingerprintSHA256 = publicKey.fingerprint
    }
}

