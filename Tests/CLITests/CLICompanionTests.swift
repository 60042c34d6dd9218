@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// `serve` and `bench proxy` run in the companion executable, `fireblocks-hsm-serve`.
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

        // A proxy configuration error: a usage error in the tool's own words and code.
        let refused = try cli.run(["serve", "--listen", "0.0.0.0:8787", "--allow", "GET /v1/workspace", "--json"], module: nil)
        #expect(refused.status == 2)
        #expect(refused.standardError.hasPrefix("fireblocks-hsm: error: "))
        #expect((try refused.json() as? [String: Any])?["error"] != nil)
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
        try "#!/bin/sh\ntouch \(marker)\n".write(toFile: decoys + "/fireblocks-hsm-serve", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: decoys + "/fireblocks-hsm-serve")

        let path = decoys + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        for arguments in [["serve", "--listen", "unix:/tmp/x.sock"], ["bench", "proxy", "--json"]] {
            let result = try Subprocess.run(alone + "/fireblocks-hsm", arguments, environment: cli.environment(["PATH": path]),
                                            workingDirectory: cli.files)
            #expect(result.status == 3, "\(result.standardError)")
            #expect(result.standardError.contains("cannot run \(alone)/fireblocks-hsm-serve (No such file or directory)"))
            #expect(!FileManager.default.fileExists(atPath: marker))
        }
        let json = try Subprocess.run(alone + "/fireblocks-hsm", ["bench", "proxy", "--json"], environment: cli.environment(),
                                      workingDirectory: cli.files)
        #expect((try json.json() as? [String: [String: Any]])?["error"]?["class"] as? String == "io")
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
