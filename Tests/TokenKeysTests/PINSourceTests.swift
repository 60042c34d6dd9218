import Foundation
import PKCS11
import Testing
import TokenKeys

@Suite("PIN sources")
struct PINSourceTests {
    @Test func parsesTheThreeForms() throws {
        #expect(try PINSource(parsing: "prompt") == .prompt)
        #expect(try PINSource(parsing: "env:HSM_PIN") == .environment("HSM_PIN"))
        #expect(try PINSource(parsing: "file:/run/secrets/pin") == .file("/run/secrets/pin"))
    }

    @Test(arguments: ["1234", "pin:1234", "env:", "env:1BAD", "env:A-B", "file:", ""])
    func refusesAnythingElse(text: String) {
        #expect(throws: TokenKeysError(.invalidArgument, "")) { try PINSource(parsing: text) }
    }

    @Test func aMistypedPINIsNotEchoedInTheError() {
        do {
            _ = try PINSource(parsing: "83629174")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("83629174"))
        }
    }

    @Test func uriPINSourceAcceptsABarePathAndRefusesCommands() throws {
        #expect(try PINSource(uriPINSource: "/etc/hsm/pin") == .file("/etc/hsm/pin"))
        #expect(try PINSource(uriPINSource: "file:/etc/hsm/pin") == .file("/etc/hsm/pin"))
        #expect(try PINSource(uriPINSource: "env:HSM_PIN") == .environment("HSM_PIN"))
        #expect(throws: TokenKeysError(.invalidArgument, "")) { try PINSource(uriPINSource: "|/bin/cat /pin") }
    }

    @Test func onlyAPromptMayBeRetried() throws {
        #expect(PINSource.prompt.mayRetry)
        #expect(!PINSource.environment("X").mayRetry)
        #expect(!PINSource.file("/x").mayRetry)
    }

    @Test func readsTheEnvironment() throws {
        let name = "FBHSM_TEST_PIN_\(UInt32.random(in: 0...UInt32.max))"
        setenv(name, "env-pin-42", 1)
        defer { unsetenv(name) }
        let pin = try PINSource.environment(name).readPIN(prompter: nil, promptText: "", warn: { _ in })
        #expect(pin.isEqual(to: PIN("env-pin-42")))
    }

    @Test func anUnsetOrEmptyVariableIsAnError() {
        let name = "FBHSM_TEST_UNSET_\(UInt32.random(in: 0...UInt32.max))"
        #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.environment(name).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
        setenv(name, "", 1)
        defer { unsetenv(name) }
        #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.environment(name).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
    }

    @Test(arguments: [("file-pin\n", "file-pin"), ("file-pin\r\n", "file-pin"), ("file-pin", "file-pin"), ("a b\n", "a b"),
                      ("\u{FEFF}file-pin\r\n", "file-pin")])
    func readsAFileRemovingOneLineEnding(content: String, expected: String) throws {
        let path = try temporaryFile(content, mode: 0o600)
        defer { unlink(path) }
        var warnings: [String] = []
        let pin = try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { warnings.append($0) })
        #expect(pin.isEqual(to: PIN(expected)))
        #expect(warnings.isEmpty)
    }

    /// What a person could not have meant as the PIN is refused before anything reaches the
    /// token (a wrong PIN costs one of its tries).
    @Test(arguments: ["a b\n\n", "pin \n", "pin\t\r\n", "pin\nsecond\n", "\r\n", "\u{FEFF}\n"])
    func aPINFileThatIsNotOneLineOfPINIsRefused(content: String) throws {
        let path = try temporaryFile(content, mode: 0o600)
        defer { unlink(path) }
        #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
    }

    @Test func warnsWhenThePINFileIsReadableByOthers() throws {
        let path = try temporaryFile("pin\n", mode: 0o644)
        defer { unlink(path) }
        var warnings: [String] = []
        _ = try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { warnings.append($0) })
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("chmod 600") == true)
        #expect(warnings.first?.contains("PIN file") == true)
        // The path is not repeated: a path given by mistake could be a PIN.
        #expect(warnings.first?.contains(path) == false)
    }

    /// Whoever else could write the PIN file could make the tool send wrong PINs until the
    /// token locks: refused before anything is sent, without the path.
    @Test(arguments: [0o620, 0o602, 0o666])
    func aPINFileOthersCanWriteIsRefused(mode: Int) throws {
        let path = try temporaryFile("pin\n", mode: mode_t(mode))
        defer { unlink(path) }
        let refused = #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
        #expect(refused?.reason.contains("writable by group or others") == true && refused?.reason.contains(path) == false)
    }

    @Test func anEmptyOrMissingFileIsAnError() throws {
        let path = try temporaryFile("\n", mode: 0o600)
        defer { unlink(path) }
        #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
        #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.file("/nonexistent/pin").readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
    }

    @Test func aPromptWithoutTerminalSaysHowToPassAPIN() {
        do {
            _ = try PINSource.prompt.readPIN(prompter: nil, promptText: "PIN: ", warn: { _ in })
            Issue.record("expected an error")
        } catch {
            // The fact; the command line adds which flag to pass (CLIErrorTests).
            #expect(error.code == .noPINSource)
            #expect(error.reason.contains("not a terminal"))
            #expect(!error.reason.contains("--"))
        }
    }

    private func temporaryFile(_ content: String, mode: mode_t) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pin-\(UUID())").path
        try Data(content.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        return path
    }

    @Test(arguments: ["env:pin918273", "file:/nonexistent/918273", "file:918273"])
    func anUnresolvablePinSourceIsNotEchoed(text: String) throws {
        let source = try PINSource(parsing: text)
        #expect(!source.description.contains("918273"))
        do {
            _ = try source.readPIN(prompter: nil, promptText: "", warn: { _ in })
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("918273"), "\(error)")
            #expect(!"\(error)".contains("9182"))
        }
    }

    @Test(arguments: ["918273", "env:918273", "12", "pin=918273", "envv:918273"])
    func aMalformedPinSourceIsNotEchoedEvenInPart(text: String) {
        do {
            _ = try PINSource(parsing: text, origin: "--pin-source")
            Issue.record("expected an error")
        } catch {
            #expect(!"\(error)".contains("9182"), "\(error)")
            #expect(!"\(error)".contains("8273"), "\(error)")
            #expect("\(error)".hasPrefix("--pin-source: "))
        }
    }
}
