import ArgumentParser
import DurableFiles
import FireblocksAPI
import FireblocksSandbox
import Foundation

/// `fireblocks-sandbox`: the offline stand-in of the Fireblocks API, a test tool of its own (the
/// binary that holds production keys does not carry it).
@main
struct SandboxMain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireblocks-sandbox",
        abstract: "An offline stand-in of the Fireblocks API, for testing provisioning pipelines.",
        discussion: """
            Serves on loopback only. See docs/sandbox.md.

            Examples:
              fireblocks-sandbox serve --port 8088 --trust admin.pub=$ADMIN_API_KEY:ADMIN
            """,
        version: "0.3.0",
        subcommands: [ServeCommand.self, ApproveCommand.self, SetUserCommand.self, ApprovalsCommand.self]
    )

    /// One line on stderr and a documented exit code for every failure (docs/exit-codes.md).
    /// The flag that sets a configuration property: `trusted` is `--trust`, the others are
    /// their names in kebab case (`autoApproveAfter` is `--auto-approve-after`).
    static func flag(for setting: String) -> String {
        if setting == "trusted" { return "--trust" }
        return "--" + setting.unicodeScalars.map { $0.properties.isUppercase ? "-" + String($0).lowercased() : String($0) }.joined()
    }

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as SandboxError {
            Diagnostics.line("fireblocks-sandbox: error: \(error.setting.map { Self.flag(for: $0) + ": " } ?? "")\(error.description)")
            Foundation.exit(error.code == .file ? 3 : 2)
        } catch let error as APIClientError {
            Diagnostics.line("fireblocks-sandbox: error: \(error.reason)")
            Foundation.exit(2)
        } catch let error as FileOutputError {
            Diagnostics.line("fireblocks-sandbox: error: \(error.description)")
            Foundation.exit(3)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            if code == .validationFailure {
                Diagnostics.line("fireblocks-sandbox: error: \(message(for: error)) (see --help)")
                Foundation.exit(2)
            }
            Diagnostics.line("fireblocks-sandbox: error: unexpected error: \(message(for: error))")
            Foundation.exit(1)
        }
    }
}

/// Lines on standard error, control characters escaped (request targets come from clients).
enum Diagnostics {
    static func line(_ text: String) {
        let safe = text.unicodeScalars.map { scalar -> String in
            scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) ? "\\u{" + String(scalar.value, radix: 16) + "}" : String(scalar)
        }.joined()
        FileHandle.standardError.write(Data((safe + "\n").utf8))
    }
}
