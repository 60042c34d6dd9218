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
    /// resolved (a build tree, or a link in /usr/local/bin to an installation directory), else
    /// `PREFIX/libexec/fireblocks-hsm/fireblocks-hsm-net`, where PREFIX is the parent of that
    /// directory (/usr/bin → /usr: the Debian package's layout). It is never looked up in
    /// `PATH`, and the second place is tried only when nothing is beside this executable: a
    /// file there that fails the check below is refused, not passed over. It runs with this
    /// command's PIN source and token, so it must pass what a PKCS#11 module must
    /// (``TrustedFile``: yours or root's, and neither it nor any directory on its way from `/`
    /// writable by others, so that nobody can rename a directory above it and put another there),
    /// and it must not be this executable itself (a copy or link in its place would hand the
    /// command to itself for ever).
    static func exec(_ arguments: [String]) throws(CompanionExecutableError) -> Never {
        let (path, companion) = try locate()
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        execv(companion, argv + [nil])
        throw CompanionExecutableError(tried: [(path, String(cString: strerror(errno)))])
    }

    /// Where the companion is (as found, and resolved), once it passed every check ``exec(_:)``
    /// makes before running it; `doctor` reports the same.
    static func locate() throws(CompanionExecutableError) -> (path: String, resolved: String) {
        guard let own = ownPath() else {
            throw CompanionExecutableError(tried: [(executableName, String(cString: strerror(errno)))])
        }
        var tried: [(path: String, why: String)] = []
        for path in candidates(beside: own) {
            let companion: String
            do {
                companion = try TrustedFile.verify(path, for: .runs)
            } catch let error {
                guard error.code == .unreadable, error.subject == .file(path) else {
                    throw CompanionExecutableError(tried: tried + [(path, "\(error): it runs with this command's PIN source, so it must be yours or root's and writable by nobody else")])
                }
                tried.append((path, String(cString: strerror(error.errno ?? 0))))
                // Only a companion that is not there at all sends the search on.
                guard error.errno == ENOENT || error.errno == ENOTDIR else { throw CompanionExecutableError(tried: tried) }
                continue
            }
            guard companion != own else { throw CompanionExecutableError(tried: tried + [(path, "it is fireblocks-hsm itself, not its companion")]) }
            guard access(companion, X_OK) == 0 else { throw CompanionExecutableError(tried: tried + [(path, String(cString: strerror(errno)))]) }
            return (path, companion)
        }
        throw CompanionExecutableError(tried: tried)
    }

    /// Where the companion is looked for, in order, for an executable at `own` (a real path):
    /// beside it, then in the installation prefix's libexec directory.
    static func candidates(beside own: String) -> [String] {
        let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
        var paths = [directory + "/" + executableName]
        if let slash = directory.lastIndex(of: "/") {
            let prefix = String(directory[..<slash])
            paths.append(prefix + "/libexec/fireblocks-hsm/" + executableName)
        }
        return paths
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
    /// Each place looked at, in order, and why it did not run.
    let tried: [(path: String, why: String)]

    package var description: String {
        "cannot run " + tried.map { "\($0.path) (\($0.why))" }.joined(separator: ", nor ")
            + ": the commands that use the network ("
            + CommandTree.networkCommands(visibleOnly: true).map { "'\($0)'" }.joined(separator: ", ") + ") run the companion executable "
            + "\(CompanionCommand.executableName), which is installed beside fireblocks-hsm or in PREFIX/libexec/fireblocks-hsm "
            + "(PREFIX/bin/fireblocks-hsm); install both from the same build"
    }
}
