import ArgumentParser
import AsyncHTTPTransport
import FireblocksHSM
import FireblocksHSMCommandLine

/// `fireblocks-hsm-net`: the companion executable that `fireblocks-hsm` hands every command
/// that uses the network to (`request`, `api-user`, `onboard --submit`, `serve`, `bench proxy`).
/// It carries the network stack (SwiftNIO, AsyncHTTPClient, Hummingbird), which the signing
/// binary leaves out. It answers to the same command names, so its usage and help read as
/// `fireblocks-hsm …`; the commands are the very types `fireblocks-hsm` parses.
@main
struct FireblocksHSMNetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireblocks-hsm",
        abstract: "The commands of fireblocks-hsm that use the network (run through 'fireblocks-hsm').",
        version: FireblocksHSMVersion.current,
        subcommands: [RequestCommand.self, APIUserCommand.self, OnboardSubcommand.self, ServeCommand.self, BenchCommand.self]
    )

    struct BenchCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench",
            abstract: "Measure the signing proxy.",
            subcommands: [BenchProxyCommand.self]
        )
    }

    static func main() async {
        NetworkAccess.install(AsyncHTTPClientTransport(), proxies: ProxyCommands())
        await CommandLineRunner.run(FireblocksHSMNetCommand.self)
    }
}
