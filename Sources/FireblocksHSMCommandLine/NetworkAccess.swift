import FireblocksAPI
import Synchronization

/// How the commands that call the Fireblocks API reach it.
///
/// `fireblocks-hsm` carries no HTTP stack: SwiftNIO and AsyncHTTPClient would be loaded, relocated
/// and scanned by the runtime on every one-shot `jwt` (about 1 ms and 3 MiB, docs/performance.md).
/// It parses and validates an API command itself (usage errors and help are its own), then
/// hands the unchanged command line to the companion executable `fireblocks-hsm-net`, which
/// installs ``AsyncHTTPClientTransport`` here at start and runs the same command types.
package enum NetworkAccess {
    private static let installed = Mutex<(transport: any HTTPTransport, proxies: any ProxyCommandRunner)?>(nil)

    /// Called once by the companion executable, before it parses its command line.
    package static func install(_ transport: any HTTPTransport, proxies: any ProxyCommandRunner) {
        installed.withLock { $0 = (transport, proxies) }
    }

    /// The transport API requests go through. Without one (in `fireblocks-hsm`), this process
    /// becomes the companion, with the same arguments, and this returns only by throwing.
    ///
    /// A command calls this first, before it reads a profile, a PIN or a body, opens the token
    /// or takes a lock: `execv` keeps descriptors and file locks, and the companion starts the
    /// command from the beginning.
    package static func transport() throws(CompanionExecutableError) -> any HTTPTransport {
        try companion().transport
    }

    /// What runs `serve` and `bench proxy`; in `fireblocks-hsm`, the companion, as above.
    static func proxyCommands() throws(CompanionExecutableError) -> any ProxyCommandRunner {
        try companion().proxies
    }

    private static func companion() throws(CompanionExecutableError) -> (transport: any HTTPTransport, proxies: any ProxyCommandRunner) {
        if let installed = installed.withLock({ $0 }) { return installed }
        try CompanionCommand.exec(Array(CommandLine.arguments.dropFirst()))
    }
}

/// Runs the proxy's commands: the companion executable's, which links the server stack.
package protocol ProxyCommandRunner: Sendable {
    /// `serve`, parsed and validated.
    func serve(_ command: ServeCommand) async throws
    /// `bench proxy`, parsed and validated.
    func benchProxy(_ command: BenchProxyCommand) async throws
}
