import FireblocksHSM
@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// Bad input: one line on stderr, the documented exit code (docs/exit-codes.md), no PIN in the
/// output, nothing half-written.
@Suite("Command line: errors")
struct CLIErrorTests {
    /// Checks the shape every failure must have and returns the error line.
    @discardableResult
    private func expectFailure(_ result: ProcessResult, status: Int32, mentioning needles: [String],
                               notMentioning secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) -> String {
        #expect(result.status == status, "exit \(result.status): \(result.standardError)", sourceLocation: sourceLocation)
        let lines = result.errorLines.filter { !$0.hasPrefix("warning:") }
        #expect(lines.count == 1, "one line: \(result.standardError)", sourceLocation: sourceLocation)
        let line = lines.first ?? ""
        for needle in needles {
            #expect(line.contains(needle), "\(line.debugDescription) should mention \(needle)", sourceLocation: sourceLocation)
        }
        for secret in secrets {
            #expect(!result.standardError.contains(secret), "a secret leaked: \(result.standardError)", sourceLocation: sourceLocation)
            #expect(!result.standardOutput.contains(secret), "a secret leaked: \(result.standardOutput)", sourceLocation: sourceLocation)
        }
        return line
    }

    /// A PIN typed into an option that takes something else (a hurried user, a shell history
    /// mix-up) is never repeated: not by the parser's own message, not by a validation, not in
    /// --json. The option is named, and the value's length says which word it was.
    @Test(arguments: [["--bits", "PIN"], ["--audit-min-free", "PIN"], ["--audit-min-free=PIN"], ["--id", "PIN"]])
    func aSecretTypedIntoAnotherOptionIsNotRepeated(option: [String]) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let typed = option.map { $0.replacing("PIN", with: cli.userPIN) }
        for json in [false, true] {
            let result = try cli.runOnToken(["key", "generate", "--key", "k"] + typed + (json ? ["--json"] : []))
            expectFailure(result, status: 2, mentioning: [String(option[0].split(separator: "=")[0])], notMentioning: [cli.userPIN])
        }
    }

    @Test func noSuchModule() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["token", "list"], module: "/nonexistent/libvendor-pkcs11.so")
        expectFailure(result, status: 4, mentioning: ["/nonexistent/libvendor-pkcs11.so", "not found"], notMentioning: [])
    }

    @Test func notAPKCS11Module() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let path = cli.files + "/fake.so"
        try Data("definitely not ELF".utf8).write(to: URL(fileURLWithPath: path))
        let result = try cli.run(["token", "list"], module: path)
        expectFailure(result, status: 4, mentioning: ["is not a PKCS#11 module"], notMentioning: [])
    }

    @Test func unknownRegisteredModuleName() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["token", "list"], module: "no-such-module")
        expectFailure(result, status: 4, mentioning: ["no-such-module", "softhsm2"], notMentioning: [])
    }

    @Test func noTokenMatchesListsTheTokens() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "nope", "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 4, mentioning: ["no token matches 'nope'", "'fb'"], notMentioning: [cli.userPIN])
    }

    @Test func severalTokensMatchAndAreListed() throws {
        let cli = try CLIHarness(label: "fb-one")
        defer { cli.remove() }
        try cli.addToken(label: "fb-two")
        let result = try cli.run(["key", "list", "--token", "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2",
                                  "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 4, mentioning: ["2 tokens match", "token=fb-one", "token=fb-two", "serial="], notMentioning: [cli.userPIN])
    }

    @Test func noTokenSelected() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 2, mentioning: ["--token", "FIREBLOCKS_HSM_TOKEN"], notMentioning: [])
    }

    @Test func tokenFromTheEnvironment() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--json"], environment: ["FIREBLOCKS_HSM_TOKEN": "fb", "FIREBLOCKS_HSM_PIN_SOURCE": "env:TEST_HSM_PIN"])
        #expect(result.status == 0, "\(result.standardError)")
    }

    @Test func wrongPIN() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "fb", "--pin-source", "env:WRONG"], environment: ["WRONG": "wrong-pin-value"])
        expectFailure(result, status: 5, mentioning: ["wrong user PIN", "CKR_PIN_INCORRECT", "not retried"],
                      notMentioning: ["wrong-pin-value", cli.userPIN])
    }

    @Test func noPINSourceWithoutATerminal() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "fb"])
        expectFailure(result, status: 5, mentioning: ["not a terminal", "--pin-source env:NAME"], notMentioning: [])
    }

    @Test func pinValueInAURIIsRefusedAndNotEchoed() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb?pin-value=\(cli.userPIN)"])
        expectFailure(result, status: 2, mentioning: ["pin-value", "pin-source"], notMentioning: [cli.userPIN])
    }

    @Test func pinSourceFromTheTokenURI() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let pinFile = cli.files + "/pin"
        try Data((cli.userPIN + "\n").utf8).write(to: URL(fileURLWithPath: pinFile))
        chmod(pinFile, 0o600)
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb?pin-source=file:\(pinFile)"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(!result.standardError.contains("warning"))
    }

    @Test func badURI() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb;flavour=vanilla", "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 2, mentioning: ["bad PKCS#11 URI", "flavour"], notMentioning: [])
    }

    @Test func conflictingModules() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb?module-name=p11-kit-trust", "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 2, mentioning: ["contradicts"], notMentioning: [])
    }

    @Test func moduleFromTheURI() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["key", "list", "--token", "pkcs11:token=fb?module-path=\(SoftHSM.modulePath)", "--pin-source", "env:TEST_HSM_PIN"],
                                 module: nil)
        #expect(result.status == 0, "\(result.standardError)")
    }

    @Test func keyNotFound() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.runOnToken(["key", "show", "--key", "missing"])
        expectFailure(result, status: 6, mentioning: ["no private key 'missing'", "token 'fb'"], notMentioning: [cli.userPIN])
    }

    @Test func duplicateLabel() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let result = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"])
        expectFailure(result, status: 6, mentioning: ["already has an object labelled 'k'"], notMentioning: [cli.userPIN])
    }

    @Test func duplicateID() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "a", "--bits", "2048", "--id", "0a"]).status == 0)
        let result = try cli.runOnToken(["key", "generate", "--key", "b", "--bits", "2048", "--id", "0a"])
        expectFailure(result, status: 6, mentioning: ["id 0a"], notMentioning: [])
    }

    @Test(.enabled(if: Subprocess.isAvailable("pkcs11-tool") || ProcessInfo.processInfo.environment["CI"] != nil))
    func keyMadeWithPKCS11ToolDefaultsIsRefused() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // A key made the usual way with OpenSC's pkcs11-tool (its PIN from the environment).
        let made = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", "fb", "--login", "--pin", "env:TEST_HSM_PIN",
            "--keypairgen", "--key-type", "rsa:2048", "--label", "weak", "--id", "77"], environment: cli.environment())
        #expect(made.status == 0, "\(made.standardError)")

        let csr = try cli.runOnToken(["csr", "--key", "weak", "--o", "Acme", "--out", "weak.csr"])
        expectFailure(csr, status: 7, mentioning: ["fails the key policy", "CKA_DECRYPT", "CKA_UNWRAP"], notMentioning: [cli.userPIN])
        #expect(!FileManager.default.fileExists(atPath: cli.files + "/weak.csr"))

        let export = try cli.runOnToken(["key", "export", "--key", "weak"])
        expectFailure(export, status: 7, mentioning: ["fails the key policy"], notMentioning: [])

        let shown = try cli.runOnToken(["key", "show", "--key", "weak"])
        #expect(shown.status == 7)
        #expect(shown.standardOutput.contains("FAILS policy"))
        #expect(shown.standardOutput.contains("CKA_DECRYPT"))

        let listed = try cli.runOnToken(["key", "list"])
        #expect(listed.status == 0)
        #expect(listed.standardOutput.contains("FAILS"))
    }

    @Test(arguments: [
        (["--o", "Acme", "--c", "UK"], "United Kingdom is GB"),
        (["--o", "Acme", "--c", "USA"], "ISO 3166-1"),
        (["--cn", "x", "--o", ""], "O is empty"),
        (["--c", "US"], "at least O (organisation"),
    ])
    func badSubjectFieldsStopBeforeTheToken(arguments: [String], message: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // No PIN source: a subject error must come before any PIN is needed.
        let result = try cli.run(["csr", "--token", "fb", "--key", "k", "--out", "x.csr"] + arguments)
        expectFailure(result, status: 2, mentioning: [message], notMentioning: [])
        #expect(try FileManager.default.contentsOfDirectory(atPath: cli.files).isEmpty)
    }

    @Test func unwritableOutputPath() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let result = try cli.runOnToken(["csr", "--key", "k", "--o", "Acme", "--out", "/nonexistent-dir/x.csr"])
        expectFailure(result, status: 3, mentioning: ["/nonexistent-dir", "does not exist"], notMentioning: [])
    }

    @Test func existingOutputIsKeptUnlessForced() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let path = cli.files + "/api_user.csr"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: path))
        let refused = try cli.runOnToken(["csr", "--key", "k", "--o", "Acme", "--out", "api_user.csr"])
        expectFailure(refused, status: 3, mentioning: ["exists", "--force"], notMentioning: [])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")

        let forced = try cli.runOnToken(["csr", "--key", "k", "--o", "Acme", "--out", "api_user.csr", "--force"])
        #expect(forced.status == 0, "\(forced.standardError)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("-----BEGIN CERTIFICATE REQUEST-----"))
        // No temporary files are left next to it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cli.files) == ["api_user.csr"])
    }

    @Test(arguments: [
        ("CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_RSA_PKCS", "does not offer CKM_SHA256_RSA_PKCS"),
        ("CKM_SHA256_RSA_PKCS,CKM_RSA_PKCS", "does not offer CKM_RSA_PKCS_KEY_PAIR_GEN"),
    ])
    func tokenWithoutANeededMechanismIsRefusedUpFront(mechanisms: String, message: String) throws {
        let cli = try CLIHarness(mechanisms: mechanisms)
        defer { cli.remove() }
        let result = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"])
        expectFailure(result, status: 4, mentioning: [message], notMentioning: [])
        let listed = try cli.runOnToken(["key", "list", "--json"])
        #expect((try listed.json() as? [Any])?.isEmpty == true, "nothing was generated")
    }

    @Test func badKeySizeAndID() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        expectFailure(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "1024"]), status: 2,
                      mentioning: ["--bits"], notMentioning: [])
        expectFailure(try cli.runOnToken(["key", "generate", "--key", "k", "--id", "xyz"]), status: 2,
                      mentioning: ["--id"], notMentioning: [])
    }

    @Test func tokenInitRefusesAnExistingLabel() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.run(["token", "init", "--label", "fb", "--so-pin-source", "env:TEST_SO_PIN", "--pin-source", "env:TEST_HSM_PIN"])
        expectFailure(result, status: 6, mentioning: ["already exists", "erase"], notMentioning: [cli.userPIN, cli.securityOfficerPIN])
    }
}

/// Every code of the use cases' error has an exit class of its own: a code added without one
/// would silently become "internal error" (exit 1).
@Suite("Command line: every use-case error code is classified")
struct OperationErrorClassificationTests {
    @Test func everyOperationErrorCodeHasAnExitClassOtherThanInternal() {
        #expect(OperationError.Code.all.count >= 25)
        for code in OperationError.Code.all {
            let (status, _) = ErrorReport.classify(code)
            #expect(status != .internalError, "\(code) has no exit class")
        }
        #expect(Set(OperationError.Code.all.map(\.name)).count == OperationError.Code.all.count)
    }
}
