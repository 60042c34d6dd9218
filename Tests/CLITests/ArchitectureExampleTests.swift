import ArgumentParser
import FireblocksHSM
@testable import FireblocksHSMCommandLine
import Foundation
import Testing

// docs/architecture.md's "adding a network command", verbatim: it compiles with the tests.
struct WorkspaceCommand: NetworkCommand {                        // 1: the hand-over is the protocol's
    static let configuration = CommandConfiguration(commandName: "workspace")   // 2
    @OptionGroup var token: TokenOptions; @OptionGroup var key: KeyOptions       // 3
    @OptionGroup var api: APIOptions; @OptionGroup var audit: AuditOptions      // 4
    func run(network: Network) async throws {                    // 5: runs in fireblocks-hsm-net
        let profile = try token.loadProfile()
        _ = try await APIOperations.request(
            token: try token.target(key: key.key ?? profile?.key, profile: profile),
            api: try api.target(profile: profile, auditDirectory: audit.directory(profile: profile), transport: network.transport),
            method: "GET", path: "/v1/workspace", body: nil, idempotencyKey: nil, observer: Console())
    }
}

/// The architecture guide's example is real code, and what it promises holds: conforming is
/// all it takes for the command tree to know it as a network command.
@Suite("docs/architecture.md: adding a network command")
struct ArchitectureExampleTests {
    private struct ExampleRoot: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "fireblocks-hsm", subcommands: [WorkspaceCommand.self, JWTCommand.self])
    }

    @Test func theGuidesExampleIsCompiledVerbatimAndIsANetworkCommand() throws {
        let here = URL(fileURLWithPath: #filePath)
        let doc = try String(contentsOf: here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/architecture.md"), encoding: .utf8)
        let compiled = try String(contentsOf: here, encoding: .utf8)
        let blocks = doc.components(separatedBy: "```swift\n").dropFirst().compactMap { $0.components(separatedBy: "```\n").first }
        #expect(blocks.count == 1)
        for block in blocks { #expect(compiled.contains(block), "docs/architecture.md's example is not this file's code:\n\(block)") }
        #expect(CommandTree.networkCommands(under: ExampleRoot.self) == ["workspace"])
        _ = try WorkspaceCommand.parse(["--token", "fb", "--env", "sandbox", "--api-key", "00000000-0000-4000-8000-000000000000"])
    }
}
