import DurableFiles
#if canImport(Glibc)
import Glibc
#endif

/// What talks to the network (every ``NetworkCommand``) runs in the companion executable `fireblocks-hsm-net`, installed beside `fireblocks-hsm`. The
/// network stack (SwiftNIO, AsyncHTTPClient, Hummingbird, full Foundation, Prometheus, service
/// lifecycle) then stays out of the binary that every one-shot signing command starts: its
/// start-up is paid on each `jwt` (docs/performance.md). The arguments go over unchanged with
/// `execv`: the same process, environment, descriptors and signals; the companion parses them
/// again, into the same command types.
enum CompanionCommand {
    /// The companion's file name.
    static let executableName = "fireblocks-hsm-net"

    /// Replaces this process with the companion; returns only by throwing.
    ///
    /// The companion is `fireblocks-hsm-net` in the directory of this executable, symlinks
    /// resolved (so a link in /usr/local/bin to an installation directory finds the companion
    /// there), never looked up in `PATH`. It runs with this command's PIN source and token, so
    /// it must pass what a PKCS#11 module must (``TrustedFile``: yours or root's, and neither
    /// it nor its directory writable by others), and it must not be this executable itself
    /// (a copy or link in its place would hand the command to itself for ever).
    static func exec(_ arguments: [String]) throws(CompanionExecutableError) -> Never {
        let (path, companion) = try locate()
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        execv(companion, argv + [nil])
        throw CompanionExecutableError(path: path, why: String(cString: strerror(errno)))
    }

    /// Where the companion is (as found, and resolved), once it passed every check ``exec(_:)``
    /// makes before running it; `doctor` reports the same.
    static func locate() throws(CompanionExecutableError) -> (path: String, resolved: String) {
        guard let own = ownPath() else { throw CompanionExecutableError(path: executableName, why: String(cString: strerror(errno))) }
        let path = (own.lastIndex(of: "/").map { String(own[..<$0]) } ?? ".") + "/" + executableName
        let companion: String
        do {
            companion = try TrustedFile.verify(path, for: .runs)
        } catch let error {
            guard error.code == .unreadable, error.subject == .file(path) else {
                throw CompanionExecutableError(path: path, why: "\(error): it runs with this command's PIN source, so it must be yours or root's and writable by nobody else")
            }
            throw CompanionExecutableError(path: path, why: String(cString: strerror(error.errno ?? 0)))
        }
        guard companion != own else { throw CompanionExecutableError(path: path, why: "it is fireblocks-hsm itself, not its companion") }
        guard access(companion, X_OK) == 0 else { throw CompanionExecutableError(path: path, why: String(cString: strerror(errno))) }
        return (path, companion)
    }

    /// This executable's path, symlinks resolved.
    private static func ownPath() -> String? {
        guard let resolved = realpath("/proc/self/exe", nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// The companion executable could not be started.
package struct CompanionExecutableError: Error, CustomStringConvertible {
    let path: String
    let why: String

    package var description: String {
        "cannot run \(path) (\(why)): the commands that use the network ("
            + CommandTree.networkCommands(visibleOnly: true).map { "'\($0)'" }.joined(separator: ", ") + ") run the companion executable "
            + "\(CompanionCommand.executableName), which is installed beside fireblocks-hsm; install both from the same build"
    }
}
