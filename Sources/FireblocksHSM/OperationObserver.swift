import TokenKeys

/// What a use case tells its caller while it works, and how it asks a person for a PIN. The
/// use cases never print, prompt or exit themselves: a command line shows these on a terminal,
/// a service logs them, a test collects them.
public protocol OperationObserver: Sendable {
    /// A fact worth showing while the operation goes on: a warning, a resumption, a wait for
    /// another process. One line, no secrets.
    func note(_ message: String)

    /// A slow step is under way (key generation takes seconds on RSA-4096): `work` runs it, and
    /// the observer may show progress meanwhile.
    func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R

    /// Who can be asked for a PIN; nil when nobody can.
    var pinPrompter: (any PINPrompter)? { get }
}

/// Shows nothing and asks nobody: for services and tests.
public struct SilentObserver: OperationObserver {
    /// Creates one.
    public init() {}
    /// Drops the note.
    public func note(_ message: String) {}
    /// Runs the step, showing nothing.
    public func slowStep<R>(_ description: String, _ work: () throws -> R) rethrows -> R { try work() }
    /// The PIN prompter.
    public var pinPrompter: (any PINPrompter)? { nil }
}
