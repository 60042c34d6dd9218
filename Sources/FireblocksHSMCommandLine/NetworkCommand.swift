import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// A command that talks to the network. Conforming is the only way to reach it: the protocol's
/// `run()` performs the hand-over to the companion executable and gives the command its
/// ``Network``; nothing else in the command line can obtain a transport.
///
/// `fireblocks-hsm` carries no HTTP stack: SwiftNIO and AsyncHTTPClient would be loaded,
/// relocated and scanned by the runtime on every one-shot `jwt` (docs/performance.md). It
/// parses and validates every command itself (usage errors and help are its own, `validate()`
/// runs before any hand-over), then, for a network command, replaces itself with
/// `fireblocks-hsm-net` (same arguments, environment, descriptors), which parses the same
/// command tree (``FireblocksHSMCommand``) and runs the command with the network installed.
///
/// Adding one (docs/architecture.md has the whole example, compiled by its test):
///
///     struct WorkspaceCommand: NetworkCommand {
///         …options…
///         func run(network: Network) async throws { …network.transport… }
///     }
///
/// and list it in ``FireblocksHSMCommand``'s subcommands.
package protocol NetworkCommand: AsyncParsableCommand {
    /// The command's work, in the companion executable, with the network installed.
    ///
    /// Called before anything else the command does: `execv` keeps descriptors and file
    /// locks and the companion starts the command from the beginning, so nothing before the
    /// hand-over may read a profile, a PIN or a body, open the token or take a lock (the
    /// protocol's `run()` hands over first; `validate()` must stay free of such effects:
    /// `serve` checks its client-token file there without reading it, which the companion does).
    func run(network: Network) async throws
}

extension NetworkCommand {
    /// Hands the command over to the companion (in `fireblocks-hsm`: returns only by throwing),
    /// then runs it there with the network.
    package func run() async throws {
        try await run(network: NetworkAccess.network())
    }
}

/// What the companion executable provides to network commands.
package struct Network: Sendable {
    /// The one outbound HTTP transport (AsyncHTTPClient).
    package let transport: any HTTPTransport
    /// What runs the proxy (`serve`, `bench proxy`).
    package let proxies: any ProxyCommandRunner
    /// What reads policies (`policy check`, `policy test`): the YAML parser needs the full
    /// Foundation, which only the companion links.
    package let policies: any PolicyRunner

    package init(transport: any HTTPTransport, proxies: any ProxyCommandRunner, policies: any PolicyRunner) {
        self.transport = transport
        self.proxies = proxies
        self.policies = policies
    }
}

/// Where ``Network`` comes from: installed by the companion executable at start; absent in
/// `fireblocks-hsm`, where asking for it hands the process over.
package enum NetworkAccess {
    private static let installed = Mutex<Network?>(nil)

    /// Called once by the companion executable, before it parses its command line.
    package static func install(_ network: Network) {
        installed.withLock { $0 = network }
    }

    /// Whether this process can run network commands itself (the companion).
    package static var isInstalled: Bool { installed.withLock { $0 != nil } }

    /// The network; without one, this process becomes the companion with the same arguments.
    /// Only ``NetworkCommand`` calls this.
    fileprivate static func network() throws(CompanionExecutableError) -> Network {
        if let network = installed.withLock({ $0 }) { return network }
        try CompanionCommand.exec(Array(CommandLine.arguments.dropFirst()))
    }
}

/// Runs the proxy's commands: the companion executable's, which links the server stack.
package protocol ProxyCommandRunner: Sendable {
    /// `serve`, parsed and validated.
    func serve(_ command: ServeCommand, transport: any HTTPTransport) async throws
    /// `bench proxy`, parsed and validated.
    func benchProxy(_ command: BenchProxyCommand, transport: any HTTPTransport) async throws
    /// `approvals watch --listen`: serves /healthz and /metrics on `listen` (validated) until
    /// the endpoint is shut down; returns once it is bound.
    func watchStatus(listen: String, interval: TimeInterval) async throws -> any WatchStatusEndpoint
}

/// The `approvals watch --listen` endpoint: hears of every pass, serves /healthz and /metrics.
package protocol WatchStatusEndpoint: WatchEvents {
    /// Where it listens (`HOST:PORT` with the port bound, or `unix:PATH`).
    var listening: String { get }
    /// Stops serving and removes a unix socket.
    func shutdown() async
}
