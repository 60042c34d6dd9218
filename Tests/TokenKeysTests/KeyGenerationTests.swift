import Crypto
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing
import TokenKeys
import X509
import HexEncoding

/// Key generation, policy enforcement and CSRs against real SoftHSM tokens, cross-checked with
/// openssl and pkcs11-tool where the Swift code could be wrong twice in the same way.
@Suite("Key generation and CSR on SoftHSM")
struct KeyGenerationTests {
    @Test func generatedKeyMeetsThePolicyWhenReadBack() throws {
        let token = try TestToken(labelPrefix: "gen")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "api-user-1", bits: 2048), in: session)

        #expect(pair.provenance.verdict == .meetsPolicy)
        let read = try session.attributes([.local, .alwaysSensitive, .neverExtractable, .sensitive, .extractable,
                                           .decrypt, .unwrap, .sign, .modifiable, .token], of: pair.privateKey)
        #expect(read[.local] == .value(.bool(.local, true)))
        #expect(read[.alwaysSensitive] == .value(.bool(.alwaysSensitive, true)))
        #expect(read[.neverExtractable] == .value(.bool(.neverExtractable, true)))
        #expect(read[.sensitive] == .value(.sensitive(true)))
        #expect(read[.extractable] == .value(.extractable(false)))
        #expect(read[.decrypt] == .value(.decrypt(false)))
        #expect(read[.unwrap] == .value(.unwrap(false)))
        #expect(read[.sign] == .value(.sign(true)))
        #expect(read[.modifiable] == .value(.modifiable(false)))
        #expect(read[.token] == .value(.token(true)))
    }

    @Test func defaultIDIsSHA1OfTheModulusOnBothHalves() throws {
        let token = try TestToken(labelPrefix: "id")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        let modulus = try #require(pair.publicKey?.modulus)
        #expect(pair.id == Array(Insecure.SHA1.hash(data: modulus)))
        let publicObject = try #require(pair.publicKeyObject)
        #expect(try session.attributes([.id], of: publicObject)[.id] == .value(.id(pair.id)))
        // No session objects or stray copies are left: exactly one private and one public key.
        #expect(try session.findObjects([.label("k")]).count == 2)
    }

    @Test func explicitIDIsUsed() throws {
        let token = try TestToken(labelPrefix: "explicit")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048, id: [0x0a, 0x0b]), in: session)
        #expect(pair.id == [0x0a, 0x0b])
        #expect(pair.provenance.verdict == .meetsPolicy)
        #expect(try session.attributes([.modifiable], of: pair.privateKey)[.modifiable] == .value(.modifiable(false)))
    }

    @Test func defaultSizeIs4096Bits() throws {
        let token = try TestToken(labelPrefix: "big")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k"), in: session)
        #expect(pair.publicKey?.bits == 4096)
    }

    @Test func refusesADuplicateLabelOrID() throws {
        let token = try TestToken(labelPrefix: "dup")
        let session = try token.userSession()
        _ = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048, id: [1]), in: session)
        #expect(throws: TokenKeysError(.keyExists, "")) {
            try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        }
        #expect(throws: TokenKeysError(.keyExists, "")) {
            try KeyGenerator.generate(KeyGenerationRequest(label: "other", bits: 2048, id: [1]), in: session)
        }
        #expect(try session.findObjects([.class(.privateKey)]).count == 1)
    }

    @Test func refusesUnsupportedSizes() throws {
        let token = try TestToken(labelPrefix: "size")
        let session = try token.userSession()
        #expect(throws: TokenKeysError(.invalidArgument, "")) {
            try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 1024), in: session)
        }
    }

    @Test func aPermissiveKeyIsRefusedNamingTheFailingAttributes() throws {
        let token = try TestToken(labelPrefix: "weak")
        let session = try token.userSession()
        // What SoftHSM makes when only the basics are asked for (as pkcs11-tool does): its
        // defaults leave CKA_DECRYPT and CKA_UNWRAP on, and CKA_SENSITIVE off.
        _ = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .label("weak"), .id([9]), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(true), .private(true), .label("weak"), .id([9])])
        do {
            _ = try KeyStore.findUsable(.label("weak"), in: session)
            Issue.record("a permissive key was accepted")
        } catch let error as TokenKeysError {
            #expect(error.code == .policyViolation)
            for name in ["CKA_SENSITIVE", "CKA_ALWAYS_SENSITIVE", "CKA_DECRYPT", "CKA_UNWRAP"] {
                #expect(error.reason.contains(name), "the refusal should name \(name)")
            }
        }
        // key show still describes it.
        let shown = try KeyStore.find(.label("weak"), in: session)
        #expect(!shown.provenance.verdict.meetsPolicy)
    }

    @Test func aSignerRefusesAKeyThatFailsThePolicy() throws {
        let token = try TestToken(labelPrefix: "weaksign")
        let session = try token.userSession()
        _ = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .label("w"), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(true), .private(true), .sensitive(true), .extractable(false), .decrypt(true), .label("w")])
        let pair = try KeyStore.find(.label("w"), in: session)
        #expect(throws: TokenKeysError(.policyViolation, "")) { try TokenSigner(keyPair: pair, slot: token.slot) }
    }

    @Test func keyNotFoundAndAmbiguousKeyAreDistinct() throws {
        let token = try TestToken(labelPrefix: "find")
        let session = try token.userSession()
        #expect(throws: TokenKeysError(.keyNotFound, "")) { try KeyStore.find(.label("none"), in: session) }
        _ = try KeyGenerator.generate(KeyGenerationRequest(label: "a", bits: 2048, id: [1]), in: session)
        _ = try KeyGenerator.generate(KeyGenerationRequest(label: "b", bits: 2048, id: [2]), in: session)
        #expect(throws: TokenKeysError(.ambiguousKey, "")) {
            try KeyStore.find(.uri(try PKCS11URI(parsing: "pkcs11:type=private")), in: session)
        }
        let byID = try KeyStore.find(.uri(try PKCS11URI(parsing: "pkcs11:id=%02")), in: session)
        #expect(byID.label == "b")
    }

    @Test func csrIsSignedOnTheTokenAndVerifies() throws {
        let token = try TestToken(labelPrefix: "csr")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "api-user-1", bits: 2048), in: session)
        let signer = try TokenSigner(keyPair: pair, slot: token.slot)
        let subject = try CSRSubject(commonName: "John_the_API_Guy", organization: "Acme Corp", organizationalUnit: "API Team",
                                     country: "US", state: "NY", locality: "New York")
        let csr = try CSRBuilder.makeCSR(subject: subject, signingKey: TokenPrivateKey(signer: signer))

        // Round trip through PEM and verify with swift-certificates, independently of the builder.
        let parsed = try CertificateSigningRequest(pemEncoded: try csr.serializeAsPEM().pemString)
        #expect(parsed.signatureAlgorithm == .sha256WithRSAEncryption)
        #expect(parsed.publicKey == pair.publicKey?.certificatePublicKey)
        #expect(parsed.publicKey.isValidSignature(parsed.signature, for: parsed))
        #expect(parsed.subject == csr.subject)
    }

    @Test func csrWithAForeignPublicKeyFailsVerification() throws {
        let token = try TestToken(labelPrefix: "csrbad")
        let session = try token.userSession()
        let first = try KeyGenerator.generate(KeyGenerationRequest(label: "one", bits: 2048), in: session)
        let second = try KeyGenerator.generate(KeyGenerationRequest(label: "two", bits: 2048), in: session)
        let signer = try TokenSigner(keyPair: first, slot: token.slot)
        let csr = try CSRBuilder.makeCSR(subject: try CSRSubject(organization: "Acme"), signingKey: TokenPrivateKey(signer: signer))
        #expect(throws: TokenKeysError(.signatureCheckFailed, "")) {
            try CSRBuilder.verify(csr, against: try #require(second.publicKey))
        }
    }

    @Test func twoSignersSignAtOnce() async throws {
        let token = try TestToken(labelPrefix: "signers")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        let signers = [try TokenSigner(keyPair: pair, slot: token.slot), try TokenSigner(keyPair: pair, slot: token.slot)]
        let publicKey = try #require(pair.publicKey)
        let valid = try await withThrowingTaskGroup(of: Bool.self) { group in
            for (index, signer) in signers.enumerated() {
                group.addTask {
                    var allValid = true
                    for round in 0..<20 {
                        let message = Array("signer \(index) round \(round)".utf8)
                        let signature = try signer.signRS256(message)
                        allValid = allValid && publicKey.isValidRS256Signature(signature, for: message)
                    }
                    return allValid
                }
            }
            return try await group.reduce(true) { $0 && $1 }
        }
        #expect(valid)
        _ = session
    }

    // MARK: Cross-checks with tools this project did not write

    @Test
    func opensslAndPKCS11ToolAgreeWithTheToken() throws {
        let token = try TestToken(labelPrefix: "xcheck")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "api-user-1", bits: 2048), in: session)
        let signer = try TokenSigner(keyPair: pair, slot: token.slot)
        let csr = try CSRBuilder.makeCSR(subject: try CSRSubject(commonName: "ci-bot", organization: "Acme Corp", country: "US"),
                                         signingKey: TokenPrivateKey(signer: signer))
        let directory = try TokenDirectory(prefix: "xcheck-files")
        defer { directory.remove() }
        let csrPath = directory.path + "/api_user.csr"
        try Data(try csr.serializeAsPEM().pemString.utf8).write(to: URL(fileURLWithPath: csrPath))

        // openssl accepts the self-signature.
        let verify = try Subprocess.run("openssl", ["req", "-in", csrPath, "-verify", "-noout"])
        #expect(verify.status == 0, "\(verify.standardError)")
        #expect((verify.standardOutput + verify.standardError).contains("verify OK"))

        // The CSR's public key is the token's, as pkcs11-tool reads it.
        let environment = SoftHSM.home.environment
        let publicDER = directory.path + "/pub.der"
        let read = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", token.label,
            "--read-object", "--type", "pubkey", "--id", hex(pair.id), "-o", publicDER], environment: environment)
        #expect(read.status == 0, "\(read.standardError)")
        let tokenSPKI = try Subprocess.run("openssl", ["pkey", "-pubin", "-inform", "DER", "-in", publicDER, "-outform", "DER"])
        let csrSPKI = try Subprocess.run("sh", ["-c", "openssl req -in '\(csrPath)' -pubkey -noout | openssl pkey -pubin -outform DER"])
        #expect(!tokenSPKI.standardOutputData.isEmpty)
        #expect(tokenSPKI.standardOutputData == csrSPKI.standardOutputData)
        #expect(Array(tokenSPKI.standardOutputData) == pair.publicKey?.subjectPublicKeyInfoDER)

        // pkcs11-tool's own reading of the private key's attributes (its PIN from the
        // environment: OpenSC 0.23 reads `--pin env:NAME`).
        var pinEnvironment = environment
        pinEnvironment["TEST_HSM_PIN"] = token.userPINString
        let objects = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", token.label,
            "--login", "--pin", "env:TEST_HSM_PIN", "--list-objects", "--type", "privkey"], environment: pinEnvironment)
        #expect(objects.status == 0, "\(objects.standardError)")
        let privateKeySection = objects.standardOutput
        #expect(privateKeySection.contains("Access:     sensitive, always sensitive, never extractable, local"))
        let usage = privateKeySection.split(separator: "\n").first { $0.contains("Usage:") }
        #expect(usage?.trimmingCharacters(in: .whitespaces) == "Usage:      sign")
    }
}

@Suite("Key policy against SoftHSM: the rest")
struct KeyPolicyOnTokenTests {
    @Test func aKeyUsableWithoutLoginFailsThePolicy() throws {
        let token = try TestToken(labelPrefix: "public-priv")
        let session = try token.userSession()
        // Everything right but CKA_PRIVATE: readable and usable by anyone with the token.
        _ = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .label("open"), .id([7]), .verify(true), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(true), .private(false), .sensitive(true), .extractable(false), .sign(true),
                                 .decrypt(false), .unwrap(false), .label("open"), .id([7])])
        do {
            _ = try KeyStore.findUsable(.label("open"), in: session)
            Issue.record("a key usable without login was accepted")
        } catch let error as TokenKeysError {
            #expect(error.code == .policyViolation)
            #expect(error.reason.contains("CKA_PRIVATE"))
            #expect(!error.reason.contains("CKA_SENSITIVE"))
        }
    }

    @Test func aLonePublicHalfIsReportedAsSuch() throws {
        let token = try TestToken(labelPrefix: "orphan")
        let session = try token.userSession()
        // What a generation killed between its two copies leaves: the public half alone.
        let keys = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .label("half"), .verify(true), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(false), .private(true), .sensitive(true), .sign(true), .label("half")])
        try session.destroyObject(keys.privateKey)
        #expect(throws: TokenKeysError(.orphanedPublicKey, "")) {
            try KeyGenerator.generate(KeyGenerationRequest(label: "half", bits: 2048), in: session)
        }
    }

    @Test func aNewLabelIsNotAURI() {
        #expect(throws: TokenKeysError(.invalidArgument, "")) { try KeyLabel.validateNew("pkcs11:object=k") }
        #expect(throws: TokenKeysError(.invalidArgument, "")) { try KeyLabel.validateNew("PKCS11:object=k") }
    }

    /// One signer, one session, many tasks: the signer serialises them, every signature is valid.
    @Test func oneSignerContendedByManyTasks() async throws {
        let token = try TestToken(labelPrefix: "contend")
        let session = try token.userSession()
        let pair = try KeyGenerator.generate(KeyGenerationRequest(label: "k", bits: 2048), in: session)
        let signer = try TokenSigner(keyPair: pair, slot: token.slot)
        let publicKey = try #require(pair.publicKey)
        let valid = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<6 {
                group.addTask {
                    var count = 0
                    for round in 0..<10 {
                        let message = Array("task \(task) round \(round)".utf8)
                        if publicKey.isValidRS256Signature(try signer.signRS256(message), for: message) { count += 1 }
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(valid == 60)
        _ = session
    }
}
