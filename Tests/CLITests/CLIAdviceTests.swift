import ArgumentParser
@testable import FireblocksHSMCommandLine
import Foundation
import SoftHSMTestSupport
import Testing

/// Errors that say what to do: the command line's advice for the mistakes people make first
/// (a shell without SOFTHSM2_CONF, a base URL without /v1, the wrong port, waiting for a user
/// that needs its pairing token), and help whose USAGE fits a terminal.
@Suite("Command line: advice on errors")
struct CLIAdviceTests {
    @Test func noInitialisedTokenWithoutSOFTHSM2CONFPointsAtIt() throws {
        let reason = "no token matches 'fb' in module softhsm2 (the module has no initialised token)"
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        let advice = ErrorReport.softHSMAdvice(reason: reason, environment: [:], defaultTokenDirectory: empty.path)
        #expect(advice.contains("SOFTHSM2_CONF") && advice.contains("empty"), "\(advice)")
        let unreadable = ErrorReport.softHSMAdvice(reason: reason, environment: [:], defaultTokenDirectory: empty.path + "/missing")
        #expect(unreadable.contains("SOFTHSM2_CONF") && unreadable.contains("not readable"), "\(unreadable)")
        // Set, or a system token directory with tokens in it, or another failure: no such hint.
        #expect(ErrorReport.softHSMAdvice(reason: reason, environment: ["SOFTHSM2_CONF": "/x"], defaultTokenDirectory: empty.path).isEmpty)
        #expect(ErrorReport.softHSMAdvice(reason: "no token matches 'fb' (available: 'other')", environment: [:],
                                          defaultTokenDirectory: empty.path).isEmpty)
        #expect(FileManager.default.createFile(atPath: empty.path + "/some-token", contents: nil))
        #expect(ErrorReport.softHSMAdvice(reason: reason, environment: [:], defaultTokenDirectory: empty.path).isEmpty)
    }

    @Test func aBaseURLWithoutV1SaysSoAndARefusedConnectionNamesThePort() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let withV1 = try #require(api.firstIndex(of: "--base-url").map { api[$0 + 1] })
        var withoutV1 = api
        withoutV1[try #require(api.firstIndex(of: withV1))] = String(withV1.dropLast(3))
        let lost = try cli.runOnToken(["api-user", "list", "--key", "admin"] + withoutV1)
        #expect(lost.status == 9, "\(lost.standardError)")
        #expect(lost.standardError.contains("HTTP 404") && lost.standardError.contains("lacks its /v1")
                    && lost.standardError.contains("--base-url http://HOST:PORT/v1"), "\(lost.standardError)")
        let right = try cli.runOnToken(["api-user", "list", "--key", "admin"] + api)
        #expect(right.status == 0, "\(right.standardError)")

        let port = try LoopbackPort.closed()
        var closed = api
        closed[try #require(api.firstIndex(of: withV1))] = "http://127.0.0.1:\(port)/v1"
        let refused = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin", "--attempts", "1"] + closed)
        #expect(refused.status == 10, "\(refused.standardError)")
        #expect(refused.standardError.contains("127.0.0.1:\(port): connection refused"), "\(refused.standardError)")
    }

    /// ArgumentParser wraps a discussion's lines at 80 columns where they are longer, which
    /// leaves a word or two on a line of its own and breaks an example's command line: every
    /// line of every command's discussion (groups too) fits 80 columns as written.
    @Test func everyDiscussionFitsEightyColumns() {
        func walk(_ command: any ParsableCommand.Type, _ path: [String]) -> [(String, any ParsableCommand.Type)] {
            [(path.joined(separator: " "), command)] + command.configuration.subcommands.flatMap { walk($0, path + [$0._commandName]) }
        }
        let commands = walk(FireblocksHSMCommand.self, [])
        #expect(commands.count > 40, "the whole tree is walked")
        for (path, command) in commands {
            for line in command.configuration.discussion.split(separator: "\n") {
                #expect(line.count <= 80, "'\(path)': \(line.count) columns: \(line)")
            }
        }
    }

    /// ArgumentParser prints USAGE as one line however wide; the long ones are given by hand.
    @Test func everyUsageFitsEightyColumns() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        for path in [[]] + CommandTree.leaves(under: FireblocksHSMCommand.self).map({ $0.path.split(separator: " ").map(String.init) }) {
            let help = try cli.run(path + ["--help"], module: nil, environment: ["COLUMNS": "80"])
            #expect(help.status == 0, "\(path)")
            let lines = help.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            let start = try #require(lines.firstIndex { $0.hasPrefix("USAGE: ") }, "\(path): \(help.standardOutput)")
            let usage = lines[start...].prefix { !$0.isEmpty }
            for line in usage { #expect(line.count <= 80, "\(path): \(line.count) columns: \(line)") }
            #expect(usage.joined().contains("fireblocks-hsm"))
        }
    }
}
