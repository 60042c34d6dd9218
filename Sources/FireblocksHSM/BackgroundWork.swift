import Dispatch
import Synchronization
import TokenKeys

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

/// The one way an async use case runs blocking work (a PKCS#11 login or key generation, a
/// file-lock wait of up to minutes, an audit append with its `fdatasync`): on a Dispatch thread,
/// while the calling task is suspended. Swift's cooperative pool has one thread per core for
/// every task of the process; blocking one of them (as a lock wait would) stalls unrelated work
/// (the proxy's other requests, a wait's timer).
public enum BlockingBridge {
    /// Runs `work` off the cooperative pool and returns its result.
    ///
    /// What `work` makes (an opened token, its sessions) is handed to the caller whole: the
    /// worker thread keeps no reference to it once `work` returns, so ownership moves, as
    /// `sending` would say for a Sendable-less value.
    public static func run<R>(_ work: @escaping @Sendable () throws -> R) async throws -> R {
        // A test's fault point (a task-local) holds on the worker thread too.
        let work = FaultInjection.carrying(work)
        let moved: Moved<R> = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(with: Result { Moved(try work()) })
            }
        }
        return moved.value
    }

    /// Runs `work` off the cooperative pool on `input`, which the calling task hands over for
    /// the duration (it is suspended meanwhile, so nothing else of it touches `input`).
    public static func run<Input, R>(moving input: Input, _ work: @escaping @Sendable (Input) throws -> R) async throws -> R {
        let handed = Moved(input)
        return try await run { try work(handed.value) }
    }

    /// A value moved from the worker thread to the awaiting task (see ``run(_:)``): never used
    /// by both. The invariant the compiler cannot see, so checked by review (`run` is its only
    /// maker) and exercised under concurrency by BackgroundWorkTests.
    private struct Moved<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }
}
