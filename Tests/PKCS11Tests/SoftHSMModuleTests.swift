import Foundation
import PKCS11
import SoftHSMTestSupport
import Testing

/// The wrapper against a real SoftHSM: module loading, slots, sessions, attributes, signing.
@Suite("PKCS#11 wrapper on SoftHSM")
struct SoftHSMModuleTests {
    @Test func loadsSoftHSMByPathAndReportsItsInfo() throws {
        let module = try SoftHSM.loadModule()
        let info = try module.info()
        #expect(info.manufacturer == "SoftHSM")
        #expect(info.cryptokiVersion.major == 2)
    }

    @Test func loadingTheSameModuleTwiceSharesOneInitialisation() throws {
        let token = try TestToken(labelPrefix: "shared")
        let second = try PKCS11Module.load(.path(SoftHSM.modulePath))
        // A second C_Initialize would have failed or reset the first; the token made through the
        // first reference is visible through the second.
        let labels = try second.slots().map { try $0.tokenInfo().label }
        #expect(labels.contains(token.label))
    }

    @Test func missingModuleFileIsReportedAsSuch() {
        #expect(throws: ModuleLoadError(code: .fileNotFound, module: "", reason: "")) {
            try PKCS11Module.load(.path("/nonexistent/libnothing.so"))
        }
    }

    @Test func aFileThatIsNotAModuleIsRefused() throws {
        // A directory of this test's own: /tmp itself is world-writable, and a module there is
        // refused before it is even opened (see ModuleFileTests).
        let directory = try TokenDirectory(prefix: "not-a-module")
        defer { directory.remove() }
        let path = directory.path + "/not-a-module.so"
        try Data("not an ELF file".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: ModuleLoadError(code: .notAPKCS11Module, module: "", reason: "")) {
            try PKCS11Module.load(.path(path))
        }
    }

    @Test func unknownRegisteredNameListsTheKnownOnes() {
        do {
            _ = try PKCS11Module.load(.registeredName("no-such-module"))
            Issue.record("expected an error")
        } catch let error as ModuleLoadError {
            #expect(error.code == .unknownModuleName)
            #expect(error.description.contains("softhsm2"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func tokenInfoStringsHaveNoBlankPadding() throws {
        let token = try TestToken(labelPrefix: "pad")
        let info = try token.slot.tokenInfo()
        #expect(info.label == token.label)
        #expect(info.manufacturer == "SoftHSM project")
        #expect(!info.serialNumber.hasSuffix(" "))
        #expect(info.flags.contains(.tokenInitialized))
        #expect(info.flags.contains(.userPINInitialized))
    }

    @Test func wrongPINIsNamedWithTheFunction() throws {
        let token = try TestToken(labelPrefix: "wrongpin")
        let session = try token.slot.openSession(readWrite: false)
        #expect(throws: PKCS11Error(function: "C_Login", returnValue: .pinIncorrect)) {
            try session.login(.user, pin: PIN("not-the-pin"))
        }
    }

    @Test func loggingInTwiceIsFine() throws {
        let token = try TestToken(labelPrefix: "twice")
        let first = try token.userSession()
        let second = try token.slot.openSession(readWrite: false)
        #expect(try second.state().isUserLoggedIn)
        try second.login(.user, pin: token.userPIN)
        _ = first
    }

    @Test func sensitiveAttributesReadAsUnavailable() throws {
        let token = try TestToken(labelPrefix: "attrs")
        let session = try token.userSession()
        let keys = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(false), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(false), .private(true), .sensitive(true), .sign(true)])
        let read = try session.attributes([.privateExponent, .modulus, .sensitive, .modulusBits], of: keys.privateKey)
        #expect(read[.privateExponent] == .unavailable(.attributeSensitive))
        #expect(read[.modulus]?.attribute?.bytesValue?.count == 256)
        #expect(read[.sensitive] == .value(.sensitive(true)))
        #expect(read[.modulusBits] == .unavailable(.attributeTypeInvalid))
    }

    @Test func signsWithTheTwoCallPatternAndVerifies() throws {
        let token = try TestToken(labelPrefix: "sign")
        let session = try token.userSession()
        let keys = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(false), .verify(true), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(false), .private(true), .sensitive(true), .sign(true)])
        let message = Array("header.payload".utf8)
        let signature = try session.sign(mechanism: .sha256RSAPKCS, key: keys.privateKey, data: message)
        #expect(signature.count == 256)
        #expect(try session.verify(mechanism: .sha256RSAPKCS, key: keys.publicKey, data: message, signature: signature))
        var tampered = signature
        tampered[10] ^= 1
        #expect(try !session.verify(mechanism: .sha256RSAPKCS, key: keys.publicKey, data: message, signature: tampered))
    }

    @Test func findsObjectsByTemplate() throws {
        let token = try TestToken(labelPrefix: "find")
        let session = try token.userSession()
        _ = try session.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .label("a"), .id([1]), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(true), .private(true), .sensitive(true), .sign(true), .label("a"), .id([1])])
        #expect(try session.findObjects([.label("a")]).count == 2)
        #expect(try session.findObjects([.label("a"), .class(.privateKey)]).count == 1)
        #expect(try session.findObjects([.label("b")]).isEmpty)
        // Private objects are invisible without a login.
        try session.logout()
        let anonymous = try token.slot.openSession(readWrite: false)
        #expect(try anonymous.findObjects([.label("a")]).count == 1)
    }

    @Test func twoTasksSignAtOnceOnSeparateSessions() async throws {
        let token = try TestToken(labelPrefix: "concurrent")
        let setup = try token.userSession()
        let keys = try setup.generateKeyPair(
            mechanism: .rsaPKCSKeyPairGen,
            publicKeyTemplate: [.token(true), .verify(true), .label("c"), .modulusBits(2048), .publicExponent([1, 0, 1])],
            privateKeyTemplate: [.token(true), .private(true), .sensitive(true), .sign(true), .label("c")])
        let slot = token.slot
        let privateKey = keys.privateKey
        let publicKey = try SoftwareRSA.publicKey(keys.publicKey, in: setup)
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<2 {
                group.addTask {
                    let session = try slot.openSession(readWrite: false)
                    var signed = 0
                    for index in 0..<25 {
                        let message = Array("task \(task) message \(index)".utf8)
                        let signature = try session.sign(mechanism: .sha256RSAPKCS, key: privateKey, data: message)
                        if SoftwareRSA.verify(signature, for: message, with: publicKey) { signed += 1 }
                    }
                    return signed
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(counts == [25, 25])
        _ = setup
    }
}
