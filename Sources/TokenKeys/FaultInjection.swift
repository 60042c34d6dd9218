#if DEBUG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#endif

/// Named points where a debug build can be made to die as `kill -9` would, so that tests can
/// prove a run interrupted there is resumable or repairable. Set `FIREBLOCKS_HSM_FAULT` to the
/// point's name. Release builds compile this to nothing.
public enum FaultInjection {
    /// The environment variable naming the point to die at.
    public static let environmentVariable = "FIREBLOCKS_HSM_FAULT"

    /// Dies with SIGKILL here when a debug build is told to.
    @inline(__always)
    public static func point(_ name: StaticString) {
        #if DEBUG
        guard let value = getenv(environmentVariable), String(cString: value) == name.description else { return }
        kill(getpid(), SIGKILL)
        #endif
    }
}
