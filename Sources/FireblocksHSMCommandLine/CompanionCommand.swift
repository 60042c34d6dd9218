import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// What talks to the network (the API commands, `serve`, `bench proxy`: ``NetworkAccess``) runs
/// in the companion executable `fireblocks-hsm-net`, installed beside `fireblocks-hsm`. The
/// network stack (SwiftNIO, AsyncHTTPClient, Hummingbird, full Foundation, Prometheus, service
/// lifecycle) then stays out of the binary that every one-shot signing command starts: its
/// start-up is paid on each `jwt` (docs/performance.md). The arguments go over unchanged with
/// `execv`: the same process, environment, descriptors and signals; the companion parses them
/// again, into the same command types.
enum CompanionCommand {
    /// The companion's file name.
    static let executableName = "fireblocks-hsm-net"

    /// Replaces this process with the companion; returns only by throwing.
    static func exec(_ arguments: [String]) throws(CompanionExecutableError) -> Never {
        let path = try companionPath()
        guard access(path, X_OK) == 0 else { throw CompanionExecutableError(path: path, cause: errno) }
        // A companion that is this very executable (a copy or link in its place) would hand
        // the command to itself for ever.
        if let companion = realpath(path, nil) {
            defer { free(companion) }
            if String(cString: companion) == ownPath() { throw CompanionExecutableError(path: path, cause: ELOOP) }
        }
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        execv(path, argv + [nil])
        throw CompanionExecutableError(path: path, cause: errno)
    }

    /// `fireblocks-hsm-net` in the directory of this executable, symlinks resolved (so a
    /// link in /usr/local/bin to an installation directory finds the companion there). Never
    /// looked up in PATH: what runs with the PIN source is what was installed with this tool.
    static func companionPath() throws(CompanionExecutableError) -> String {
        guard let own = ownPath() else { throw CompanionExecutableError(path: executableName, cause: errno) }
        let directory = own.lastIndex(of: "/").map { String(own[..<$0]) } ?? "."
        return directory + "/" + executableName
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
    let cause: Int32

    package var description: String {
        // ELOOP is this tool's own word for a companion that is fireblocks-hsm itself.
        let why = cause == ELOOP ? "it is fireblocks-hsm itself, not its companion" : String(cString: strerror(cause))
        return "cannot run \(path) (\(why)): the commands that use the network ('request', "
            + "'api-user', 'onboard --submit', 'serve', 'bench proxy') run the companion executable "
            + "\(CompanionCommand.executableName), which is installed beside fireblocks-hsm; install both from the same build"
    }
}
