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
    private static let installed = Mutex<(any HTTPTransport)?>(nil)

    /// Called once by the companion executable, before it parses its command line.
    package static func install(_ transport: any HTTPTransport) {
        installed.withLock { $0 = transport }
    }

    /// The transport API requests go through. Without one (in `fireblocks-hsm`), this process
    /// becomes the companion, with the same arguments, and this returns only by throwing.
    ///
    /// A command calls this first, before it reads a profile, a PIN or a body, opens the token
    /// or takes a lock: `execv` keeps descriptors and file locks, and the companion starts the
    /// command from the beginning.
    package static func transport() throws(CompanionExecutableError) -> any HTTPTransport {
        if let transport = installed.withLock({ $0 }) { return transport }
        try CompanionCommand.exec(Array(CommandLine.arguments.dropFirst()))
    }
}
