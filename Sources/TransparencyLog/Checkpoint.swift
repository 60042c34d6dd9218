import ErrorShape
import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A C2SP tlog-checkpoint: the note text `origin\nsize\nbase64(root)\n` that a log signs.
public struct Checkpoint: Sendable, Equatable {
    /// The log's name: schema-less and unique, e.g. `fireblocks-hsm/<token serial>/audit`.
    public let origin: String
    /// How many records the tree covers.
    public let treeSize: Int
    /// MTH over them.
    public let rootHash: [UInt8]

    /// A checkpoint; the origin must be one line of printable text.
    public init(origin: String, treeSize: Int, rootHash: [UInt8]) throws(CheckpointError) {
        guard !origin.isEmpty, origin.unicodeScalars.allSatisfy({ $0.value > 0x20 || $0 == " " }), !origin.contains("\n") else {
            throw CheckpointError("a checkpoint origin is one line of printable text")
        }
        guard treeSize >= 0, rootHash.count == 32 else { throw CheckpointError("a checkpoint has a size and a 32-byte root") }
        self.origin = origin
        self.treeSize = treeSize
        self.rootHash = rootHash
    }

    /// The note text, each line ending in a newline: what is signed.
    public var noteText: String {
        "\(origin)\n\(treeSize)\n\(Data(rootHash).base64EncodedString())\n"
    }

    /// Parses the first three lines of a note text (extension lines after them are ignored).
    public init(noteText: String) throws(CheckpointError) {
        let lines = noteText.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 4, noteText.hasSuffix("\n") else { throw CheckpointError("a checkpoint is origin, size and root, one per line") }
        guard let size = Int(lines[1]), size >= 0, String(size) == lines[1] else {
            throw CheckpointError("the checkpoint's size is not a decimal number")
        }
        guard let root = Data(base64Encoded: String(lines[2])), root.count == 32 else {
            throw CheckpointError("the checkpoint's root is not 32 bytes of base64")
        }
        try self.init(origin: String(lines[0]), treeSize: size, rootHash: Array(root))
    }
}

/// A C2SP signed note: text, a blank line, and signature lines `— <name> base64(keyID ‖ sig)`.
public struct SignedNote: Sendable, Equatable {
    /// One signature line.
    public struct Signature: Sendable, Equatable {
        /// The key name.
        public let name: String
        /// The 4-byte key ID.
        public let keyID: [UInt8]
        /// The signature bytes (for type 0x02, an ASN.1 DER ECDSA signature).
        public let signature: [UInt8]

        /// A signature line's parts.
        public init(name: String, keyID: [UInt8], signature: [UInt8]) {
            self.name = name
            self.keyID = keyID
            self.signature = signature
        }
    }

    /// The signed text, ending in a newline.
    public let text: String
    /// Its signatures.
    public let signatures: [Signature]

    /// A note; the text must end in a newline and hold no other control characters.
    public init(text: String, signatures: [Signature]) throws(CheckpointError) {
        guard text.hasSuffix("\n"), !text.contains("\n\n"),
              text.unicodeScalars.allSatisfy({ $0 == "\n" || $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw CheckpointError("a note's text ends in a newline, has no blank line and no control character but newline")
        }
        self.text = text
        self.signatures = signatures
    }

    /// The note as stored and exchanged.
    public var formatted: String {
        text + "\n" + signatures.map { "— \($0.name) \(Data($0.keyID + $0.signature).base64EncodedString())\n" }.joined()
    }

    /// Parses a signed note.
    public init(parsing note: String) throws(CheckpointError) {
        guard let separator = note.utf8.firstRange(of: "\n\n".utf8) else { throw CheckpointError("a signed note has a blank line before its signatures") }
        let text = String(note[..<separator.lowerBound]) + "\n"
        var signatures: [Signature] = []
        for line in note[separator.upperBound...].split(separator: "\n", omittingEmptySubsequences: true) {
            guard line.hasPrefix("— ") else { throw CheckpointError("a signature line starts with '— '") }
            let parts = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, let blob = Data(base64Encoded: String(parts[1])), blob.count > 4 else {
                throw CheckpointError("a signature line is '— NAME BASE64'")
            }
            signatures.append(Signature(name: String(parts[0]), keyID: Array(blob.prefix(4)), signature: Array(blob.dropFirst(4))))
        }
        guard !signatures.isEmpty, note.hasSuffix("\n") else { throw CheckpointError("a signed note has at least one signature line") }
        try self.init(text: text, signatures: signatures)
    }

    /// The C2SP key ID of an ECDSA (signature type 0x02) key: the first 4 bytes of SHA-256 of
    /// its DER SubjectPublicKeyInfo, the public key alone (C2SP signed-note, "Signature types";
    /// what transparency-dev's `NewECDSAVerifier`, the witness network and sigstore compute).
    public static func ecdsaKeyID(subjectPublicKeyInfo: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: subjectPublicKeyInfo).prefix(4))
    }

    /// The key ID checkpoints of fireblocks-hsm before 2026-12 carried for the same key:
    /// SHA-256(name ‖ 0x0A ‖ 0x02 ‖ SPKI), C2SP's rule for *new* signature types, wrongly applied
    /// to 0x02. Still accepted when verifying (reported as legacy), never written.
    public static func legacyECDSAKeyID(name: String, subjectPublicKeyInfo: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array(name.utf8) + [0x0A, 0x02] + subjectPublicKeyInfo).prefix(4))
    }

    /// A signature line for `name` over this note's text by the P-256 key `signature` came
    /// from (type 0x02: DER ECDSA over SHA-256 of the text).
    public static func ecdsaSignature(name: String, publicKey: P256.Signing.PublicKey, signature: [UInt8]) -> Signature {
        Signature(name: name, keyID: ecdsaKeyID(subjectPublicKeyInfo: Array(publicKey.derRepresentation)), signature: signature)
    }

    /// Checks that a signature line named `name` with `publicKey`'s key ID verifies over the
    /// text (ECDSA P-256, SHA-256, DER), as a C2SP verifier does: lines of other names or key
    /// IDs are ignored; a line that matches by name and key ID but does not verify fails.
    public func verify(name: String, publicKey: P256.Signing.PublicKey) -> NoteVerification {
        let spki = Array(publicKey.derRepresentation)
        let current = Self.ecdsaKeyID(subjectPublicKeyInfo: spki)
        let legacy = Self.legacyECDSAKeyID(name: name, subjectPublicKeyInfo: spki)
        let digest = SHA256.hash(data: Array(text.utf8))
        var sawCandidate = false
        for line in signatures where line.name == name && (line.keyID == current || line.keyID == legacy) {
            sawCandidate = true
            guard let signature = try? P256.Signing.ECDSASignature(derRepresentation: line.signature),
                  publicKey.isValidSignature(signature, for: digest) else { continue }
            return line.keyID == current ? .verified : .verifiedWithLegacyKeyID
        }
        if sawCandidate { return .failed(.badSignature) }
        if signatures.contains(where: { $0.name == name }) { return .failed(.unknownKey) }
        return .failed(.noSignatureByName)
    }
}

/// What ``SignedNote/verify(name:publicKey:)`` found.
public enum NoteVerification: Sendable, Equatable {
    /// A signature by the key, under its C2SP key ID.
    case verified
    /// A signature by the key, under the key ID fireblocks-hsm wrote before it followed C2SP
    /// for type 0x02 (see ``SignedNote/legacyECDSAKeyID(name:subjectPublicKeyInfo:)``).
    case verifiedWithLegacyKeyID
    /// No signature by the key.
    case failed(Failure)

    /// Why a note did not verify.
    public enum Failure: Sendable, Equatable, CustomStringConvertible {
        /// No signature line carries the key's name.
        case noSignatureByName
        /// Lines carry the name, but none the key's ID: another key signed it.
        case unknownKey
        /// A line carries the key's name and ID, but its signature does not verify over the text.
        case badSignature

        /// One line of facts.
        public var description: String {
            switch self {
            case .noSignatureByName: return "no signature line names the key"
            case .unknownKey: return "its signature lines carry another key's ID"
            case .badSignature: return "the signature does not verify over the note's text"
            }
        }
    }

    /// True for either kind of good signature.
    public var isVerified: Bool {
        if case .failed = self { return false }
        return true
    }
}

/// A checkpoint or note that is not in the C2SP format.
public struct CheckpointError: LibraryError, Equatable {
    /// One code: the text is not in the format.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// Not a C2SP checkpoint, signed note or tlog-proof.
        public static let malformed = Code("malformed")
    }
    public var code: Code { .malformed }
    /// What is wrong.
    public let description: String
    public var reason: String { description }
    public let location: ErrorLocation
    init(_ description: String, file: String = #fileID, line: UInt = #line) {
        self.description = description
        self.location = ErrorLocation(file: file, line: line)
    }
    /// Equal when the descriptions are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.description == rhs.description }
}
