@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// What uses the network (`request`, `api-user`, `onboard --submit`, `serve`, `bench proxy`) runs
/// in the companion executable, `fireblocks-hsm-net`.
@Suite("Command line: the companion executable")
struct CLICompanionTests {
    @Test func serveHelpIsTheCompanionsAndItsErrorsAreTheToolsOwn() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let help = try cli.run(["serve", "--help"], module: nil)
        #expect(help.status == 0)
        #expect(help.standardOutput.contains("--listen <address>"), "\(help.standardOutput)")
        #expect(help.standardOutput.contains("USAGE: fireblocks-hsm serve"))
        let benchHelp = try cli.run(["bench", "proxy", "--help"], module: nil)
        #expect(benchHelp.status == 0 && benchHelp.standardOutput.contains("--workers <n>"), "\(benchHelp.standardOutput)")

        // `help serve` and shell completion know serve's options: it is declared in the tool.
        let helpCommand = try cli.run(["help", "serve"], module: nil)
        #expect(helpCommand.status == 0 && helpCommand.standardOutput.contains("--listen <address>"), "\(helpCommand.standardOutput)")
        let completion = try cli.run(["--generate-completion-script", "bash"], module: nil)
        #expect(completion.standardOutput.contains("--listen") && completion.standardOutput.contains("--client-token-file"))

        // A proxy configuration error found by the companion: a usage error in the tool's own
        // words and code.
        let refused = try cli.run(["serve", "--listen", "0.0.0.0:8787", "--allow", "GET /v1/workspace", "--env", "sandbox",
                                   "--api-key", "00000000-0000-4000-8000-000000000000"], module: nil)
        #expect(refused.status == 2, "\(refused.standardError)")
        #expect(refused.standardError.hasPrefix("fireblocks-hsm: error: --listen '0.0.0.0:8787': the proxy listens on loopback literals only"),
                "\(refused.standardError)")
        // And one found by the tool itself, before the companion starts.
        let noRule = try cli.run(["serve", "--listen", "unix:/tmp/x.sock", "--json"], module: nil)
        #expect(noRule.status == 2 && noRule.standardError.contains("--allow"), "\(noRule.standardError)")
    }

    @Test func aMissingCompanionIsNamedNotSoughtInPATH() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // The tool alone in a directory, and a decoy companion on PATH that must not run.
        let alone = cli.files + "/alone"
        let decoys = cli.files + "/decoys"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: decoys, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLIHarness.binary, toPath: alone + "/fireblocks-hsm")
        let marker = cli.files + "/decoy-ran"
        try "#!/bin/sh\ntouch \(marker)\n".write(toFile: decoys + "/fireblocks-hsm-net", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: decoys + "/fireblocks-hsm-net")

        let path = decoys + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let api = ["--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]
        // The API commands hand over before anything else: a prompted PIN is never asked for
        // (there is no terminal here, so asking would fail differently), no profile is read.
        let token = ["--module", SoftHSM.modulePath, "--token", cli.label, "--pin-source", "prompt"]
        for arguments in [["serve", "--listen", "unix:/tmp/x.sock", "--allow", "GET /v1/workspace"], ["bench", "proxy", "--json"],
                          ["request", "GET", "/v1/workspace"] + api + token,
                          ["api-user", "list", "--json"] + api + token,
                          ["onboard", "--key", "ci-bot", "--name", "ci-bot", "--role", "SIGNER", "--o", "Acme", "--submit",
                           "--admin-key", "admin"] + api + token] {
            let result = try Subprocess.run(alone + "/fireblocks-hsm", arguments, environment: cli.environment(["PATH": path]),
                                            workingDirectory: cli.files)
            #expect(result.status == 3, "\(arguments): \(result.standardError)")
            #expect(result.standardError.contains("cannot run \(alone)/fireblocks-hsm-net (No such file or directory)"),
                    "\(result.standardError)")
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
        let json = try Subprocess.run(alone + "/fireblocks-hsm", ["bench", "proxy", "--json"], environment: cli.environment(),
                                      workingDirectory: cli.files)
        #expect((try json.json() as? [String: [String: Any]])?["error"]?["class"] as? String == "io")

        // A usage error in an API command is the signing binary's own: no companion needed.
        let usage = try Subprocess.run(alone + "/fireblocks-hsm", ["api-user", "wait", "--until", "SOMEDAY"] + api,
                                       environment: cli.environment(), workingDirectory: cli.files)
        #expect(usage.status == 2, "\(usage.standardError)")
        let help = try Subprocess.run(alone + "/fireblocks-hsm", ["api-user", "create", "--help"], environment: cli.environment(),
                                      workingDirectory: cli.files)
        #expect(help.status == 0 && help.standardOutput.contains("--co-signer-setup"), "\(help.standardOutput)")

        // An onboarding that only makes the key and the CSR uses no network and no companion.
        let offline = try Subprocess.run(alone + "/fireblocks-hsm", [
            "onboard", "--key", "offline", "--bits", "2048", "--name", "offline", "--role", "SIGNER", "--o", "Acme",
            "--module", SoftHSM.modulePath, "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN",
        ], environment: cli.environment(), workingDirectory: cli.files)
        #expect(offline.status == 0, "\(offline.standardError)")
        #expect(FileManager.default.fileExists(atPath: cli.files + "/offline.csr"))
    }

    /// The companion runs with the command's PIN source: one that others could have written is
    /// refused, as a PKCS#11 module would be, before it runs.
    @Test func aCompanionOthersCouldHaveWrittenIsNotRun() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let alone = cli.files + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLIHarness.binary, toPath: alone + "/fireblocks-hsm")
        let marker = cli.files + "/planted-ran"
        try "#!/bin/sh\ntouch \(marker)\n".write(toFile: alone + "/fireblocks-hsm-net", atomically: true, encoding: .utf8)
        let request = ["request", "GET", "/v1/workspace", "--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"]

        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: alone + "/fireblocks-hsm-net")
        let writable = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(writable.status == 3, "\(writable.standardError)")
        #expect(writable.standardError.contains("is writable by group or others (mode 777)"), "\(writable.standardError)")

        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: alone + "/fireblocks-hsm-net")
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: alone)
        let openDirectory = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(openDirectory.status == 3, "\(openDirectory.standardError)")
        #expect(openDirectory.standardError.contains("directory \(alone) is writable by group or others"), "\(openDirectory.standardError)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the planted companion ran")

        // Made safe again, the same file does run (so the refusals above were the check's).
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: alone)
        _ = try Subprocess.run(alone + "/fireblocks-hsm", request, environment: cli.environment(), workingDirectory: cli.files)
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test func aCompanionThatIsTheToolItselfIsRefusedNotLooped() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let alone = cli.files + "/alone"
        try FileManager.default.createDirectory(atPath: alone, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLIHarness.binary, toPath: alone + "/fireblocks-hsm")
        try FileManager.default.createSymbolicLink(atPath: alone + "/fireblocks-hsm-net", withDestinationPath: "fireblocks-hsm")
        let result = try Subprocess.run(alone + "/fireblocks-hsm", ["request", "GET", "/v1/workspace", "--env", "sandbox",
                                                                     "--api-key", "00000000-0000-4000-8000-000000000000"],
                                        environment: cli.environment(), workingDirectory: cli.files)
        #expect(result.status == 3, "\(result.standardError)")
        #expect(result.standardError.contains("cannot run \(alone)/fireblocks-hsm-net (it is fireblocks-hsm itself"),
                "\(result.standardError)")
    }

    @Test func serverAnswersKeepEveryDigitWhenWrappedAsJSON() throws {
        let text = #"{"amount":12345678901234567890.123456789,"big":98765432109876543210,"list":[true,null,"a/b",-0.5,1e3],"nested":{"x":""}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let again = String(decoding: try encoder.encode(value), as: UTF8.self)
        #expect(again == #"{"amount":12345678901234567890.123456789,"big":98765432109876543210,"list":[true,null,"a/b",-0.5,1000],"nested":{"x":""}}"#)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(JSONValue.self, from: Data("{".utf8)) }
    }
}
