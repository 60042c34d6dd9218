import _CryptoExtras
import Crypto
import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing

/// Verifies token signatures with swift-crypto: a check that does not share the token's code.
enum SoftwareRSA {
    static func publicKey(_ object: ObjectHandle, in session: Session) throws -> _RSA.Signing.PublicKey {
        let read = try session.attributes([.modulus, .publicExponent], of: object)
        let modulus = try #require(read[.modulus]?.attribute?.bytesValue)
        let exponent = try #require(read[.publicExponent]?.attribute?.bytesValue)
        return try _RSA.Signing.PublicKey(n: modulus, e: exponent)
    }

    static func verify(_ signature: [UInt8], for message: [UInt8], with key: _RSA.Signing.PublicKey) -> Bool {
        key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: message),
                             padding: .insecurePKCS1v1_5)
    }
}

@Suite("PKCS#11 wrapper correctness")
struct WrapperCorrectnessTests {
    @Test func signaturesVerifyInSoftwareAndATamperedOneDoesNot() throws {
        let token = try TestToken(labelPrefix: "swverify")
        let session = try token.userSession()
        let keys = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(false), .verify(true), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(false), .private(true), .sensitive(true), .sign(true)])
        let publicKey = try SoftwareRSA.publicKey(keys.publicKey, in: session)
        let message = Array("eyJhbGciOiJSUzI1NiJ9.eyJ1cmkiOiIvdjEifQ".utf8)
        let signature = try session.sign(mechanism: .sha256RSAPKCS, key: keys.privateKey, data: message)
        #expect(SoftwareRSA.verify(signature, for: message, with: publicKey))
        #expect(!SoftwareRSA.verify(signature, for: message + [0x2e], with: publicKey))
    }

    @Test func aBatchOfMixedAttributesReadsWhatIsReadable() throws {
        let token = try TestToken(labelPrefix: "mixed")
        let session = try token.userSession()
        let keys = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(false), .verify(true), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(false), .private(true), .sensitive(true), .sign(true), .label("mixed")])
        let vendor = AttributeType(rawValue: 0x8000_4242)
        let read = try session.attributes([.label, .privateExponent, .prime1, vendor, .modulus, .sign, .modulusBits],
                                          of: keys.privateKey)
        #expect(read[.label] == .value(.label("mixed")))
        #expect(read[.privateExponent] == .unavailable(.attributeSensitive))
        #expect(read[.prime1] == .unavailable(.attributeSensitive))
        #expect(read[vendor] == .unavailable(.attributeTypeInvalid))
        #expect(read[.modulus]?.attribute?.bytesValue?.count == 256)
        #expect(read[.sign] == .value(.sign(true)))
        #expect(read[.modulusBits] == .unavailable(.attributeTypeInvalid))
    }

    @Test func aSessionClosesOnceAndIsUnusableAfterwards() throws {
        let token = try TestToken(labelPrefix: "close")
        let session = try token.slot.openSession(readWrite: false)
        try session.close()
        try session.close()  // idempotent: nothing left to do
        #expect(throws: PKCS11Error(function: "C_GetSessionInfo", returnValue: .sessionHandleInvalid)) {
            _ = try session.state()
        }
    }

    @Test func aSymlinkAndItsTargetAreOneModule() throws {
        let directory = try TokenDirectory(prefix: "modlink")
        defer { directory.remove() }
        let link = directory.path + "/softhsm-link.so"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: SoftHSM.modulePath)
        _ = SoftHSM.home
        let direct = try PKCS11Module.load(.path(SoftHSM.modulePath))
        let linked = try PKCS11Module.load(.path(link))
        #expect(direct.filename == linked.filename)
        #expect(!linked.filename.contains("softhsm-link"))
    }

    @Test func aBareNameIsLookedUpInP11KitsModuleDirectory() throws {
        // Not there: the error names where it looked instead of trusting the search path.
        do {
            _ = try PKCS11Module.load(.path("no-such-module-\(UUID()).so"))
            Issue.record("expected an error")
        } catch let error as ModuleLoadError {
            #expect(error.code == .fileNotFound)
            #expect(error.description.contains("module directory"))
        }
    }

    @Test(arguments: [0o666, 0o646, 0o664] as [mode_t])
    func aModuleFileOthersCanWriteIsNotLoaded(mode: mode_t) throws {
        let directory = try TokenDirectory(prefix: "unsafe-module")
        defer { directory.remove() }
        let copy = directory.path + "/copy.so"
        // The bytes, not a link (the installed module may itself be a relative symlink).
        try Data(contentsOf: URL(fileURLWithPath: SoftHSM.modulePath)).write(to: URL(fileURLWithPath: copy))
        chmod(copy, mode)
        #expect(throws: ModuleLoadError(code: .unsafeModuleFile, module: "", reason: "")) {
            try PKCS11Module.load(.path(copy))
        }
    }
}
