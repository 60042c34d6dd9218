import Dispatch
import Synchronization

/// A value one thread hands to another once, or the error that stopped it. The first
/// ``put(_:)`` counts; ``wait()`` blocks until there is one, and may be called more than once.
final class Handoff<Value: Sendable>: Sendable {
    private let outcome = Mutex<Result<Value, any Error>?>(nil)
    private let ready = DispatchSemaphore(value: 0)

    /// Hands over `result`, unless something was already handed over.
    func put(_ result: Result<Value, any Error>) {
        let first = outcome.withLock { outcome -> Bool in
            guard outcome == nil else { return false }
            outcome = result
            return true
        }
        if first { ready.signal() }
    }

    /// The value, or its error, once handed over.
    func wait() throws -> Value {
        ready.wait()
        ready.signal()
        guard let result = outcome.withLock({ $0 }) else {
            preconditionFailure("Handoff signalled without a result")
        }
        return try result.get()
    }
}

/// Work started on a Dispatch thread while the caller goes on with its own; ``wait()`` returns
/// its result. Used where two token operations on separate sessions can overlap (a signature and
/// the audit record of that signature), so that a one-shot command uses two cores.
///
/// Always ``wait()`` before leaving the scope that owns what the work uses (a module, a slot's
/// sessions): nothing may be finalised or closed under a call in flight.
final class BackgroundWork<Value: Sendable>: Sendable {
    private let result = Handoff<Value>()

    /// Starts `work` now.
    init(_ work: @escaping @Sendable () throws -> Value) {
        DispatchQueue.global(qos: .userInitiated).async { [result] in
            result.put(Result { try work() })
        }
    }

    /// Blocks until the work is done; its value or its error. May be called more than once.
    func wait() throws -> Value {
        try result.wait()
    }
}
