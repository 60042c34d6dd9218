#if DEBUG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#endif

/// Named points where a debug build can be stopped, so that tests can prove a run interrupted
/// there is resumable or repairable. Two forms:
///
/// - a process test sets `FIREBLOCKS_HSM_FAULT` to the point's name, and the process dies
///   there as `kill -9` would (SIGKILL);
/// - an in-process test binds ``interruption`` (a task-local) to the point's name around the
///   call, and ``point(_:)`` throws ``Interrupted`` there instead: the run stops at that point
///   (what it made so far stays on the token and in the state directory), and the test then
///   runs it again to resume it. Other tasks of the process are not affected.
///
/// Release builds compile both to nothing (``point(_:)`` never throws, and never reads the
/// environment or the task-local).
public enum FaultInjection {
    /// The environment variable naming the point to die at.
    public static let environmentVariable = "FIREBLOCKS_HSM_FAULT"

    /// Whether this build stops at fault points at all (debug builds only).
    public static var isAvailable: Bool {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }

    /// The point at which the current task (and the blocking work it hands to
    /// ``carrying(_:)``) stops by throwing ``Interrupted``; nil: none.
    @TaskLocal public static var interruption: String?

    /// What ``point(_:)`` throws at the point ``interruption`` names.
    public struct Interrupted: Error, Sendable, Equatable, CustomStringConvertible {
        /// The point's name.
        public let point: String

        /// Creates the value from its parts.
        public init(point: String) { self.point = point }

        /// How it reads in messages.
        public var description: String { "interrupted at fault point '\(point)' (a test's fault injection)" }
    }

    /// Stops here when a debug build is told to: throws ``Interrupted`` when the current task
    /// binds ``interruption`` to `name`, dies with SIGKILL when `FIREBLOCKS_HSM_FAULT` is `name`.
    @inline(__always)
    public static func point(_ name: StaticString) throws {
        #if DEBUG
        if let armed = interruption, armed == name.description { throw Interrupted(point: armed) }
        guard let value = getenv(environmentVariable), String(cString: value) == name.description else { return }
        kill(getpid(), SIGKILL)
        #endif
    }

    /// `work`, bound to the calling task's ``interruption``, for running on another thread
    /// (a Dispatch thread sees no task-locals of the task that queued the work).
    public static func carrying<R>(_ work: @escaping @Sendable () throws -> R) -> @Sendable () throws -> R {
        #if DEBUG
        guard let armed = interruption else { return work }
        return { try $interruption.withValue(armed) { try work() } }
        #else
        return work
        #endif
    }
}
