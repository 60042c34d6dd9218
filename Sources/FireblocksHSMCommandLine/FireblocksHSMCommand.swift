import ArgumentParser
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// The command line of `fireblocks-hsm`: the one command tree of both executables. Every
/// command is parsed and validated by `fireblocks-hsm`; a ``NetworkCommand`` then runs in the
/// companion executable `fireblocks-hsm-net`, which parses this same tree (``CompanionCommand``).
package struct FireblocksHSMCommand: AsyncParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "fireblocks-hsm",
        abstract: "Onboard Fireblocks API users with RSA keys that never leave a PKCS#11 token.",
        discussion: """
            The key pair is generated inside the token (sign-only, sensitive, never
            extractable, proven by reading its attributes back); the CSR and every API
            JWT are signed on the token.

            Examples:
              fireblocks-hsm token list
              fireblocks-hsm key generate --token fb --key api-user-1
              fireblocks-hsm csr --token fb --key api-user-1 --cn api-user-1 \\
                  --o "Acme Corp" --c US --out api_user.csr
              fireblocks-hsm onboard --token fb --key ci-bot --name ci-bot \\
                  --role SIGNER --o "Acme Corp" --submit --admin-key admin \\
                  --api-key "$ADMIN_API_KEY" --env sandbox

            PINs come from --pin-source prompt|env:NAME|file:PATH, never from a flag.
            Exit codes: docs/exit-codes.md.
            """,
        version: FireblocksHSMVersion.current,
        subcommands: [
            TokenCommand.self, KeyCommand.self, CSRSubcommand.self,
            JWTCommand.self, RequestCommand.self, APIUserCommand.self, ApprovalKeyCommand.self, ApprovalsCommand.self, OnboardSubcommand.self, AuditCommand.self, EvidenceCommand.self,
            ServeCommand.self, PolicyCommand.self, BenchCommand.self, DoctorCommand.self, DoctorNetworkCommand.self,
        ]
    )
}

/// The command tree, as data.
package enum CommandTree {
    /// The paths (`api-user create`, `bench proxy`) of the commands under `root` that are
    /// ``NetworkCommand``s, in the tree's order.
    package static func networkCommands(under root: any ParsableCommand.Type = FireblocksHSMCommand.self, visibleOnly: Bool = false) -> [String] {
        leaves(under: root).filter { $0.type is any NetworkCommand.Type && (!visibleOnly || $0.type.configuration.shouldDisplay) }.map(\.path)
    }

    /// Every runnable command under `root` (a command without subcommands), with its path.
    package static func leaves(under root: any ParsableCommand.Type) -> [(path: String, type: any ParsableCommand.Type)] {
        func walk(_ command: any ParsableCommand.Type, _ prefix: [String]) -> [(path: String, type: any ParsableCommand.Type)] {
            let subcommands = command.configuration.subcommands
            let path = prefix + [command._commandName]
            if subcommands.isEmpty { return [(path.joined(separator: " "), command)] }
            return subcommands.flatMap { walk($0, path) }
        }
        return root.configuration.subcommands.flatMap { walk($0, []) }
    }
}

/// Runs a command line of this tool: both executables (`fireblocks-hsm` and its companion
/// `fireblocks-hsm-net`) start here.
package enum CommandLineRunner {
    /// Parses the process's arguments against `root`, runs the command, and turns every
    /// failure into one line on stderr (and, with `--json`, one `{"error": …}` document on
    /// stdout) and a documented exit code.
    ///
    /// On the main actor: the process's main thread parses and runs a synchronous command
    /// itself (a one-shot `jwt` signs there); a nonisolated one would first hop to a thread of
    /// the cooperative pool, which costs a thread start and a hand-over on every run.
    @MainActor
    package static func run(_ root: any ParsableCommand.Type) async -> Never {
        // A file-size limit (ulimit -f) reached by a write makes the write fail with EFBIG
        // instead of killing the process: an audit append then takes its partial bytes back
        // and the command fails with its error, as on a full disk.
        signal(SIGXFSZ, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        let command: any ParsableCommand
        do {
            command = try root.parseAsRoot(arguments)
        } catch {
            // Help and --version exit 0; every parse or validation error is a usage error.
            if root.exitCode(for: error) == .success { root.exit(withError: error) }
            usageFailure(error, root: root, arguments: arguments, json: arguments.contains("--json"))
        }
        // Asked of the parsed command (a second parse would cost a second walk of the command
        // tree by reflection: measurable in every one-shot command's start-up).
        let json = (command as? any JSONReporting)?.wantsJSON ?? false
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch let exitCode as ExitCode {
            exit(exitCode.rawValue)
        } catch {
            // Help requested or validation failing inside run() still belongs to ArgumentParser.
            switch root.exitCode(for: error) {
            case .success:
                root.exit(withError: error)
            case .validationFailure:
                usageFailure(error, root: root, arguments: arguments, json: json)
            default:
                break
            }
            fail(ErrorReport(error), json: json)
        }
        exit(0)
    }

    /// Prints the failure and exits with its class's code.
    static func fail(_ report: ErrorReport, json: Bool) -> Never {
        Console().diagnostic("fireblocks-hsm: error: \(report.message)")
        if json { Console().output(report.json) }
        exit(report.status.rawValue)
    }

    /// A usage error: one line, pointing at --help (the full usage would bury the message). A
    /// mistyped subcommand is named, with the nearest real one.
    private static func usageFailure(_ error: any Error, root: any ParsableCommand.Type, arguments: [String], json: Bool) -> Never {
        let text = SubcommandSuggestion.message(for: arguments, root: root)
            ?? "\(withoutValues(root.message(for: error), arguments: arguments)) (see --help)"
        fail(ErrorReport(status: .usage, message: text), json: json)
    }

    /// `message` without any value given on the command line: a PIN or a token typed into the
    /// wrong option (`--bits 123456`, `--audit-min-free s3cret`) must not be repeated on the
    /// terminal, in a CI log or in `--json`. Each quoted word that is not an option's name is
    /// replaced by its length; the option named beside it says which one it was.
    static func withoutValues(_ message: String, arguments: [String]) -> String {
        var values = Set<String>()
        for word in arguments where !word.isEmpty {
            if word.hasPrefix("-") {
                if let equals = word.firstIndex(of: "="), word.index(after: equals) < word.endIndex {
                    values.insert(String(word[word.index(after: equals)...]))
                }
            } else {
                values.insert(word)
            }
        }
        var text = message
        // Longest first, so that a value inside another is not half replaced.
        for value in values.sorted(by: { $0.count > $1.count }) where text.contains("'\(value)'") {
            text = text.replacing("'\(value)'", with: "(\(value.count) characters, not shown)")
        }
        return text
    }
}

/// Commands with a `--json` flag: their failures are also reported as JSON on stdout. The
/// conformances are never actor-isolated (`SendableMetatype`), so asking a parsed command
/// leaves it free to be run off the main actor.
package protocol JSONReporting: SendableMetatype {
    var wantsJSON: Bool { get }
}
