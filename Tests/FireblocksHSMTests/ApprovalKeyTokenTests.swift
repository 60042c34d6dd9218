import Crypto
import FireblocksAPI
import FireblocksSandbox
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys

/// Approval keys generated on SoftHSM for each algorithm: the key policy read back, signatures
/// over the exact payload bytes that the stand-in (and openssl, which shares no code with this
/// project) verify, and a re-serialized payload that then does not verify.
@Suite("Approval keys on SoftHSM")
struct ApprovalKeyTokenTests {
    static let types: [ApprovalKeyType] = [.ecP256, .ecP384, .rsaPSS(bits: 3072), .ed25519]

    static func algorithm(_ type: ApprovalKeyType) -> String {
        switch type {
        case .ecP256: return "ECDSA_SECP256R1"
        case .ecP384: return "ECDSA_SECP384R1"
        case .rsaPSS: return "RSA_PS256"
        case .ed25519: return "EDDSA_ED25519"
        }
    }

    /// Whitespace, a newline and a key order no serializer of this tool would produce.
    static let payload = "{\"requestType\": \"TAG_UPDATE\",  \"requestId\":\"r-1\",\n \"expiresAt\": 4102444800, \"requestTimestamp\": 1765000000000, \"requestData\": { \"z\" : 1, \"a\":\"é\" }}"

    @Test(arguments: types)
    func signsTheExactBytesAndTheStandInVerifies(type: ApprovalKeyType) throws {
        let token = try TestToken(labelPrefix: "approval")
        let session = try token.userSession()
        let pair = try ApprovalKeys.generate(type, label: "approver-1", in: session)
        #expect(pair.type == type)
        #expect(pair.provenance.verdict == .meetsPolicy)
        let read = try session.attributes([.local, .neverExtractable, .sensitive, .extractable, .decrypt, .private, .sign], of: pair.privateKey)
        #expect(read[.local] == .value(.bool(.local, true)) && read[.neverExtractable] == .value(.bool(.neverExtractable, true)))
        #expect(read[.sensitive] == .value(.sensitive(true)) && read[.extractable] == .value(.extractable(false)))
        #expect(read[.decrypt] == .value(.decrypt(false)) && read[.private] == .value(.private(true)))

        let again = try #require(try ApprovalKeys.find(label: "approver-1", in: session))
        #expect(again.subjectPublicKeyInfoDER == pair.subjectPublicKeyInfoDER && again.type == type)
        #expect(ApprovalSignatureCheck.problem(algorithm: Self.algorithm(type), publicKeyPem: pair.publicKeyPEM) == nil)

        let bytes = Array(Self.payload.utf8)
        let signature = try ApprovalKeys.sign(bytes, with: pair, in: session)
        #expect(ApprovalSignatureCheck.isValid(signature: signature, payload: bytes, algorithm: Self.algorithm(type), publicKeyPem: pair.publicKeyPEM))
        let object = try JSONSerialization.jsonObject(with: Data(bytes))
        let reserialized = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        #expect(reserialized != bytes)
        #expect(!ApprovalSignatureCheck.isValid(signature: signature, payload: reserialized, algorithm: Self.algorithm(type), publicKeyPem: pair.publicKeyPEM))
        let other = try ApprovalKeys.generate(type, label: "approver-2", in: session)
        #expect(!ApprovalSignatureCheck.isValid(signature: signature, payload: bytes, algorithm: Self.algorithm(type), publicKeyPem: other.publicKeyPEM))
    }

    /// openssl verifies each signature with the exported public key: for RSA-PSS with salt 32 and
    /// MGF1-SHA-256 stated explicitly (the stand-in's check could share a mistake with the signer).
    @Test(.enabled(if: Subprocess.isAvailable("openssl")), arguments: types)
    func opensslVerifies(type: ApprovalKeyType) throws {
        let token = try TestToken(labelPrefix: "approval-ossl")
        let session = try token.userSession()
        let pair = try ApprovalKeys.generate(type, label: "a", in: session)
        let directory = try TokenDirectory(prefix: "approval-ossl")
        defer { directory.remove() }
        let bytes = Array(Self.payload.utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: directory.path + "/payload"))
        try Data(try ApprovalKeys.sign(bytes, with: pair, in: session)).write(to: URL(fileURLWithPath: directory.path + "/sig"))
        try Data(pair.publicKeyPEM.utf8).write(to: URL(fileURLWithPath: directory.path + "/key.pub"))
        let arguments: [String]
        switch type {
        case .ecP256, .rsaPSS:
            var list = ["dgst", "-sha256", "-verify", directory.path + "/key.pub", "-signature", directory.path + "/sig"]
            if case .rsaPSS = type {
                list += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32", "-sigopt", "rsa_mgf1_md:sha256"]
            }
            arguments = list + [directory.path + "/payload"]
        case .ecP384:
            arguments = ["dgst", "-sha384", "-verify", directory.path + "/key.pub", "-signature", directory.path + "/sig", directory.path + "/payload"]
        case .ed25519:
            arguments = ["pkeyutl", "-verify", "-pubin", "-inkey", directory.path + "/key.pub", "-rawin", "-in", directory.path + "/payload",
                         "-sigfile", directory.path + "/sig"]
        }
        let verify = try Subprocess.run("openssl", arguments)
        #expect(verify.status == 0, "\(verify.standardOutput) \(verify.standardError)")
        #expect(verify.standardOutput.contains("Verified") || verify.standardOutput.contains("Success"), "\(verify.standardOutput)")
    }

    @Test func aPermissiveKeyIsRefusedForSigning() throws {
        let token = try TestToken(labelPrefix: "approval-weak")
        let session = try token.userSession()
        _ = try session.generateKeyPair(
            mechanism: .ecKeyPairGen,
            publicKeyTemplate: [.token(true), .label("weak"), .id([3]), .ecParams(ECKeys.p256Parameters)],
            privateKeyTemplate: [.token(true), .private(true), .sensitive(false), .sign(true), .label("weak"), .id([3])])
        let pair = try #require(try ApprovalKeys.find(label: "weak", in: session))
        #expect(pair.provenance.verdict.failures.map(\.attribute).contains(.sensitive))
        #expect(throws: TokenKeysError(.policyViolation, "")) { try ApprovalKeys.sign([1], with: pair, in: session) }
    }
}
