import ArgumentParser
import FireblocksHSM
import FireblocksHSMCommandLine

/// `fireblocks-hsm-serve`: the companion executable that `fireblocks-hsm serve` and
/// `fireblocks-hsm bench proxy` hand over to. It carries the proxy's HTTP server stack, which
/// the signing binary leaves out. It answers to the same command names, so its usage and
/// help read as `fireblocks-hsm serve …`.
@main
struct FireblocksHSMServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireblocks-hsm",
        abstract: "The signing proxy and its benchmark (run through 'fireblocks-hsm serve' and 'fireblocks-hsm bench proxy').",
        version: FireblocksHSMVersion.current,
        subcommands: [ServeCommand.self, BenchCommand.self]
    )

    struct BenchCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench",
            abstract: "Measure the signing proxy.",
            subcommands: [BenchProxyCommand.self]
        )
    }

    static func main() async {
        await CommandLineRunner.run(FireblocksHSMServeCommand.self)
    }
}
