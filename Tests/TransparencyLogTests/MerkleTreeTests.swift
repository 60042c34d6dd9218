import Crypto
import Foundation
import HexEncoding
import Testing
import TransparencyLog

/// An independent MTH, written from RFC 6962 §2.1 without sharing code with the library.
private func referenceRoot(_ leaves: [[UInt8]]) -> [UInt8] {
    if leaves.isEmpty { return Array(SHA256.hash(data: [UInt8]())) }
    if leaves.count == 1 { return Array(SHA256.hash(data: [0] + leaves[0])) }
    var k = 1
    while k * 2 < leaves.count { k *= 2 }
    return Array(SHA256.hash(data: [1] + referenceRoot(Array(leaves[..<k])) + referenceRoot(Array(leaves[k...]))))
}

@Suite("RFC 6962 Merkle tree")
struct MerkleTreeTests {
    /// The published test vectors' leaves (certificate-transparency-go, merkle/testonly).
    static let vectorLeaves: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"].map { HexEncoding.bytes(fromHex: $0) ?? [] }

    @Test func publishedRoots() {
        let hashes = Self.vectorLeaves.map { MerkleTree.leafHash($0) }
        #expect(hex(MerkleTree.root(hashes[...])) == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
        #expect(hex(MerkleTree.root(hashes[..<1])) == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        #expect(hex(MerkleTree.root([][...])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func rootsEqualAnIndependentImplementation() {
        for n in 0...33 {
            let leaves = (0..<n).map { Array("record \($0)".utf8) }
            #expect(MerkleTree.root(leaves.map { MerkleTree.leafHash($0) }[...]) == referenceRoot(leaves), "n = \(n)")
        }
    }

    @Test func everyInclusionProofVerifiesAndNoWrongOneDoes() throws {
        for n in 1...20 {
            let hashes = (0..<n).map { MerkleTree.leafHash(Array("leaf \($0)".utf8)) }
            let root = MerkleTree.root(hashes[...])
            for index in 0..<n {
                let proof = try #require(MerkleTree.inclusionProof(index: index, hashes[...]))
                #expect(MerkleTree.verifyInclusion(leafHash: hashes[index], index: index, treeSize: n, proof: proof, rootHash: root))
                // Another leaf, another index, a changed proof: all refused.
                #expect(!MerkleTree.verifyInclusion(leafHash: MerkleTree.leafHash([9]), index: index, treeSize: n, proof: proof, rootHash: root))
                if n > 1 {
                    #expect(!MerkleTree.verifyInclusion(leafHash: hashes[index], index: (index + 1) % n, treeSize: n, proof: proof, rootHash: root))
                    var bent = proof
                    bent[0][0] ^= 1
                    #expect(!MerkleTree.verifyInclusion(leafHash: hashes[index], index: index, treeSize: n, proof: bent, rootHash: root))
                }
                // (The tree size is not what a proof proves: the signed checkpoint binds it.)
            }
        }
    }

    @Test func everyConsistencyProofVerifiesAndAnAlteredHistoryDoesNot() throws {
        for n in 1...20 {
            let hashes = (0..<n).map { MerkleTree.leafHash(Array("line \($0)".utf8)) }
            let newRoot = MerkleTree.root(hashes[...])
            for m in 1...n {
                let oldRoot = MerkleTree.root(hashes[..<m])
                let proof = try #require(MerkleTree.consistencyProof(oldSize: m, hashes[...]))
                #expect(MerkleTree.verifyConsistency(oldSize: m, newSize: n, oldRoot: oldRoot, newRoot: newRoot, proof: proof), "\(m) → \(n)")
                // The old tree with one record edited is not a prefix.
                var edited = hashes
                edited[m - 1] = MerkleTree.leafHash([0xff])
                let forgedOld = MerkleTree.root(edited[..<m])
                #expect(!MerkleTree.verifyConsistency(oldSize: m, newSize: n, oldRoot: forgedOld, newRoot: newRoot, proof: proof))
            }
        }
    }

    @Test func theSpecificationsConsistencyExample() throws {
        // RFC 6962 §2.1.3: PROOF(3, D[7]) = [c, d, g, l].
        let hashes = (0..<7).map { MerkleTree.leafHash([UInt8($0)]) }
        let proof = try #require(MerkleTree.consistencyProof(oldSize: 3, hashes[...]))
        #expect(proof.count == 4)
        #expect(proof[0] == hashes[2])
        #expect(proof[1] == hashes[3])
        #expect(proof[2] == MerkleTree.root(hashes[..<2]))
        #expect(proof[3] == MerkleTree.root(hashes[4...]))
    }
}

@Suite("C2SP checkpoints and DSSE")
struct CheckpointTests {
    @Test func aCheckpointsNoteTextAndSignedNoteRoundTrip() throws {
        let root = Array(repeating: UInt8(7), count: 32)
        let checkpoint = try Checkpoint(origin: "fireblocks-hsm/0123456789abcdef/audit", treeSize: 12, rootHash: root)
        #expect(checkpoint.noteText == "fireblocks-hsm/0123456789abcdef/audit\n12\n\(Data(root).base64EncodedString())\n")
        #expect(try Checkpoint(noteText: checkpoint.noteText) == checkpoint)
        let note = try SignedNote(text: checkpoint.noteText, signatures: [
            .init(name: checkpoint.origin, keyID: [1, 2, 3, 4], signature: [0x30, 0x06, 1, 2, 3, 4, 5, 6])])
        #expect(note.formatted.hasSuffix("\n"))
        #expect(note.formatted.contains("\n\n— fireblocks-hsm/0123456789abcdef/audit "))
        #expect(try SignedNote(parsing: note.formatted) == note)
    }

    @Test(arguments: ["o\n-1\nAAAA\n", "o\n01\nAAAA\n", "o\n1\nnot base64\n", "o\n1\n"])
    func malformedCheckpointsAreRefused(text: String) {
        #expect(throws: CheckpointError.self) { try Checkpoint(noteText: text) }
    }

    @Test func theKeyIDIsTheC2SPHashOfThePublicKeyAlone() {
        // C2SP signed-note, type 0x02: SHA-256 of the DER SubjectPublicKeyInfo, first 4 bytes.
        let key = P256.Signing.PrivateKey().publicKey
        let spki = Array(key.derRepresentation)
        #expect(SignedNote.ecdsaKeyID(subjectPublicKeyInfo: spki) == Array(SHA256.hash(data: spki).prefix(4)))
        #expect(SignedNote.legacyECDSAKeyID(name: "log/audit", subjectPublicKeyInfo: spki)
                == Array(SHA256.hash(data: Array("log/audit".utf8) + [0x0A, 0x02] + spki).prefix(4)))
    }

    @Test func notesVerifyWithTheCurrentOrTheLegacyKeyIDAndSayWhyNot() throws {
        let privateKey = P256.Signing.PrivateKey()
        let key = privateKey.publicKey
        let text = "log/audit\n1\n\(Data(repeating: 7, count: 32).base64EncodedString())\n"
        let signature = Array(try privateKey.signature(for: Array(text.utf8)).derRepresentation)
        let current = try SignedNote(text: text, signatures: [SignedNote.ecdsaSignature(name: "log/audit", publicKey: key, signature: signature)])
        #expect(current.verify(name: "log/audit", publicKey: key) == .verified)
        let legacyID = SignedNote.legacyECDSAKeyID(name: "log/audit", subjectPublicKeyInfo: Array(key.derRepresentation))
        let legacy = try SignedNote(text: text, signatures: [.init(name: "log/audit", keyID: legacyID, signature: signature)])
        #expect(legacy.verify(name: "log/audit", publicKey: key) == .verifiedWithLegacyKeyID)
        #expect(current.verify(name: "other", publicKey: key) == .failed(.noSignatureByName))
        #expect(current.verify(name: "log/audit", publicKey: P256.Signing.PrivateKey().publicKey) == .failed(.unknownKey))
        let edited = try SignedNote(text: text.replacingOccurrences(of: "\n1\n", with: "\n2\n"), signatures: current.signatures)
        #expect(edited.verify(name: "log/audit", publicKey: key) == .failed(.badSignature))
    }

    @Test func tlogProofsRoundTripAndProveInclusionInTheC2SPLayout() throws {
        let privateKey = P256.Signing.PrivateKey()
        let leaves = (0..<7).map { Array("record \($0)".utf8) }
        let hashes = leaves.map { MerkleTree.leafHash($0) }
        let checkpoint = try Checkpoint(origin: "log/audit", treeSize: 7, rootHash: MerkleTree.root(hashes[...]))
        let signature = Array(try privateKey.signature(for: Array(checkpoint.noteText.utf8)).derRepresentation)
        let note = try SignedNote(text: checkpoint.noteText, signatures: [
            SignedNote.ecdsaSignature(name: "log/audit", publicKey: privateKey.publicKey, signature: signature)])
        for index in 0..<7 {
            let proof = try TlogProof(index: index, path: try #require(MerkleTree.inclusionProof(index: index, hashes[...])), checkpoint: note)
            let text = proof.formatted
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines[0] == "c2sp.org/tlog-proof@v1" && lines[1] == "index \(index)")
            #expect(lines[2 + proof.path.count] == "" && text.hasSuffix(note.formatted))
            let parsed = try TlogProof(parsing: text)
            #expect(parsed == proof)
            #expect(try parsed.includes(leaf: leaves[index]))
            #expect(try !parsed.includes(leaf: leaves[(index + 1) % 7]))
        }
        let withExtra = try TlogProof(index: 0, path: [], checkpoint: note, extra: [1, 2])
        #expect(try TlogProof(parsing: withExtra.formatted) == withExtra)
        for bad in ["c2sp.org/tlog-proof@v2\nindex 0\n\n", "c2sp.org/tlog-proof@v1\nindex 01\n\n", "c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\n"] {
            #expect(throws: CheckpointError.self) { try TlogProof(parsing: bad + note.formatted) }
        }
    }

    @Test func preAuthenticationEncodingAsTheSpecificationShows() {
        // The DSSE protocol document's example.
        let pae = DSSE.preAuthenticationEncoding(payloadType: "http://example.com/HelloWorld", payload: Array("hello world".utf8))
        #expect(String(decoding: pae, as: UTF8.self) == "DSSEv1 29 http://example.com/HelloWorld 11 hello world")
    }
}
