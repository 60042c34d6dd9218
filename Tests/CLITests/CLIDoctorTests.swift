import Foundation
import SoftHSMTestSupport
import Testing

/// `doctor`: every check holds on a working set-up, and each failure names itself, its fix
/// and its exit code.
@Suite("Command line: doctor")
struct CLIDoctorTests {
    private func checks(_ result: ProcessResult) throws -> [String: [String: Any]] {
        let document = try #require(try result.json() as? [String: Any], "\(result.standardOutput)")
        let list = try #require(document["checks"] as? [[String: Any]])
        return Dictionary(list.map { (($0["name"] as? String) ?? "", $0) }, uniquingKeysWith: { first, _ in first })
    }

    @Test func aWorkingSetUpPassesEveryCheckAndTheAPIsToo() throws {
        let apiKey = UUID().uuidString.lowercased()
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey)
        defer { sandbox.stop(); cli.remove() }
        let result = try cli.runOnToken(["doctor", "--key", "admin", "--json"] + api)
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let found = try checks(result)
        for name in ["module", "softhsm", "token", "pin source", "key", "audit", "state", "companion", "api", "api key", "clock"] {
            #expect(found[name]?["status"] as? String == "ok", "\(name): \(found[name] ?? [:])")
        }
        #expect(!result.standardOutput.contains(cli.userPIN), "the PIN is never shown")
        let text = try cli.runOnToken(["doctor", "--key", "admin"] + api)
        #expect(text.status == 0 && text.standardOutput.contains("✓ api key"), "\(text.standardOutput)")
    }

    @Test func eachFailureNamesItsCheckItsFixAndItsExitCode() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        // An API key the API does not know: refused (exit 8), the local checks still hold.
        var wrongKey = api
        if let index = wrongKey.firstIndex(of: "--api-key") { wrongKey[index + 1] = UUID().uuidString.lowercased() }
        let refused = try cli.runOnToken(["doctor", "--key", "admin", "--json"] + wrongKey)
        #expect(refused.status == 8, "\(refused.standardOutput)\(refused.standardError)")
        let found = try checks(refused)
        #expect(found["api key"]?["status"] as? String == "failed" && found["token"]?["status"] as? String == "ok")

        // A shell without SoftHSM's configuration: the token is not found, and the fix says why.
        var environment = cli.environment()
        environment.removeValue(forKey: "SOFTHSM2_CONF")
        let lost = try Subprocess.run(CLIHarness.binary, ["doctor", "--module", SoftHSM.modulePath, "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN"],
                                      environment: environment, workingDirectory: cli.files)
        #expect(lost.status == 4, "\(lost.standardOutput)")
        #expect(lost.standardOutput.contains("SOFTHSM2_CONF is not set"), "\(lost.standardOutput)")

        // A PIN source that cannot be read: exit 5, never its name or value; the API is not tried.
        let noPIN = try cli.run(["doctor", "--token", cli.label, "--key", "admin", "--pin-source", "env:NOT_SET_ANYWHERE"] + api)
        #expect(noPIN.status == 5, "\(noPIN.standardOutput)")
        #expect(noPIN.standardOutput.contains("✗ pin source") && !noPIN.standardOutput.contains("NOT_SET_ANYWHERE"), "\(noPIN.standardOutput)")
        #expect(noPIN.standardOutput.contains("– api"), "\(noPIN.standardOutput)")

        // State others could write: what onboard and key delete would refuse, with its fix.
        let state = cli.directory.path + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o777)
        let open = try cli.runOnToken(["doctor", "--json"])
        #expect(open.status == 3, "\(open.standardOutput)")
        #expect((try checks(open)["state"]?["detail"] as? String)?.contains("chmod go-w '\(state)'") == true, "\(open.standardOutput)")
        chmod(state, 0o700)
    }
}
