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

    /// The PIN file's directory, and every one on its way, is judged too: whoever can write it
    /// can put another PIN file at the path. Refused before anything is sent, without a path; a
    /// sticky directory (as /tmp) passes.
    @Test(arguments: ["directory", "ancestor", "owner", "symlink"])
    func aPINFileWhoseWayOthersCanWriteIsRefused(how: String) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("pindir-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let holder = base + "/secrets"
        try FileManager.default.createDirectory(atPath: holder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let file = holder + "/pin"
        try Data("pin\n".utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o600)
        var path = file
        let expected: String
        switch how {
        case "directory":
            chmod(holder, 0o777)
            expected = "the directory holding the PIN file is writable by group or others (mode 777)"
        case "ancestor":
            chmod(base, 0o777)
            expected = "a directory further up the PIN file's path is writable by group or others (mode 777)"
        case "owner":
            #expect(chown(holder, 65534, 65534) == 0, "the tests run as root")
            expected = "the directory holding the PIN file belongs to another user (uid 65534)"
        default:
            let open = base + "/open"
            try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: true)
            chmod(open, 0o777)
            path = open + "/pin"
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: file)
            expected = "the directory holding a symlink on the PIN file's path is writable by group or others"
        }
        let refused = #expect(throws: TokenKeysError(.pinUnavailable, "")) {
            try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { _ in })
        }
        #expect(refused?.reason.contains(expected) == true, "\(String(describing: refused))")
        #expect(refused?.reason.contains(base) == false, "no path is shown")

        // Sticky (as /tmp), or private again: read.
        for directory in [holder, base, base + "/open"] where FileManager.default.fileExists(atPath: directory) {
            chmod(directory, 0o1777)
        }
        #expect(chown(holder, getuid(), getgid()) == 0)
        #expect(try PINSource.file(path).readPIN(prompter: nil, promptText: "", warn: { _ in }).isEqual(to: PIN("pin")))
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
