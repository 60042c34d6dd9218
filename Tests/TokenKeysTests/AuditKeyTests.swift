import Crypto
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys

/// The audit key: EC P-256 on the token, under the same policy as the API keys.
@Suite("Audit key (EC P-256) on SoftHSM")
struct AuditKeyTests {
    @Test func generatedOnTheTokenMeetsThePolicyAndSignsVerifiably() throws {
        let token = try TestToken(labelPrefix: "audit")
        let session = try token.userSession()
        let pair = try ECKeys.generate(label: "fireblocks-hsm-audit", in: session)
        #expect(pair.provenance.verdict == .meetsPolicy)
        #expect(pair.provenance.privateKeyAttributes[.local] == .value(.bool(.local, true)))
        #expect(pair.provenance.privateKeyAttributes[.private] == .value(.bool(.private, true)))
        #expect(try ECKeys.find(label: "fireblocks-hsm-audit", in: session)?.fingerprint == pair.fingerprint)

        let signer = try ECSigner(key: pair, slot: token.slot)
        let message = Array("origin\n1\nroot\n".utf8)
        let der = try signer.sign(message)
        let signature = try P256.Signing.ECDSASignature(derRepresentation: der)
        #expect(pair.publicKey.isValidSignature(signature, for: SHA256.hash(data: message)))
        #expect(!pair.publicKey.isValidSignature(signature, for: SHA256.hash(data: message + [0])))
    }

    /// openssl, which shares no code with this project, accepts the DER signature with the
    /// exported public key.
    @Test(.enabled(if: Subprocess.isAvailable("openssl")))
    func opensslVerifiesTheSignature() throws {
        let token = try TestToken(labelPrefix: "audit-ossl")
        let session = try token.userSession()
        let pair = try ECKeys.generate(label: "a", in: session)
        let directory = try TokenDirectory(prefix: "audit-ossl")
        defer { directory.remove() }
        let message = Array("DSSEv1 28 application/vnd.in-toto+json 2 {}".utf8)
        try Data(message).write(to: URL(fileURLWithPath: directory.path + "/msg"))
        try Data(try ECSigner(key: pair, slot: token.slot).sign(message)).write(to: URL(fileURLWithPath: directory.path + "/sig.der"))
        try Data(pair.publicKey.pemRepresentation.utf8).write(to: URL(fileURLWithPath: directory.path + "/audit.pub"))
        let verify = try Subprocess.run("openssl", ["dgst", "-sha256", "-verify", directory.path + "/audit.pub",
                                                     "-signature", directory.path + "/sig.der", directory.path + "/msg"])
        #expect(verify.status == 0, "\(verify.standardError)")
        #expect(verify.standardOutput.contains("Verified OK"))
    }

    @Test func aPermissiveECKeyIsRefusedForSigning() throws {
        let token = try TestToken(labelPrefix: "audit-weak")
        let session = try token.userSession()
        _ = try session.generateKeyPair(
            mechanism: .ecKeyPairGen,
            publicKeyTemplate: [.token(true), .label("weak"), .id([3]), .ecParams(ECKeys.p256Parameters)],
            privateKeyTemplate: [.token(true), .private(true), .sensitive(false), .sign(true), .label("weak"), .id([3])])
        let pair = try #require(try ECKeys.find(label: "weak", in: session))
        #expect(pair.provenance.verdict.failures.map(\.attribute).contains(.sensitive))
        #expect(throws: TokenKeysError(.policyViolation, "")) { try ECSigner(key: pair, slot: token.slot) }
    }

    @Test func anRSAKeyFailsTheAuditPolicyAndAnECKeyTheAPIPolicy() {
        var attributes: [AttributeType: AttributeReading] = [.class: .value(.class(.privateKey)), .keyType: .value(.keyType(.rsa))]
        for requirement in KeyPolicy.signingKey.requirements {
            attributes[requirement.attribute] = .value(.bool(requirement.attribute, requirement.expected))
        }
        #expect(KeyPolicy.signingKey.evaluate(privateKey: attributes, modulusBits: 2048) == .meetsPolicy)
        #expect(KeyPolicy.auditKey.evaluate(privateKey: attributes, modulusBits: nil).failures.map(\.attribute) == [.keyType])
        attributes[.keyType] = .value(.keyType(.ec))
        #expect(KeyPolicy.auditKey.evaluate(privateKey: attributes, modulusBits: nil) == .meetsPolicy)
        #expect(KeyPolicy.signingKey.evaluate(privateKey: attributes, modulusBits: nil).failures.map(\.attribute) == [.keyType])
    }
}
