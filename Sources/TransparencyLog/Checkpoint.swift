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

    /// The C2SP key ID of an ECDSA (signature type 0x02) key: the first 4 bytes of
    /// SHA-256(name ‖ 0x0A ‖ 0x02 ‖ DER SubjectPublicKeyInfo).
    public static func ecdsaKeyID(name: String, subjectPublicKeyInfo: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array(name.utf8) + [0x0A, 0x02] + subjectPublicKeyInfo).prefix(4))
    }
}

/// A checkpoint or note that is not in the C2SP format.
public struct CheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
