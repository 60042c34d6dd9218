import ErrorShape
import Synchronization
import TransactionPolicy

/// Where the rolling totals of the policy's windows are kept: a reservation is checked against
/// the window's total and recorded in one atomic step before the token signs, and released when
/// the upstream refuses the transaction. Totals survive a restart.
public protocol LimitStore: Sendable {
    /// Reserves `reservation` at `secondsSince1970` when the client's total of the asset over the
    /// window, with it, stays at or under the window's maximum; otherwise records nothing.
    /// Returns once the reservation is durable.
    func reserve(_ reservation: WindowReservation, at secondsSince1970: Int64) async throws(LimitStoreError) -> LimitDecision
    /// The same decision, returned as soon as it is made and before it is durable: the
    /// reservation counts for every later decision from then on, and `PendingCommit.wait()`
    /// returns once it is durable, or throws when it could not be made durable (then it does not
    /// count, as if refused). Nothing that relies on the reservation may leave the process before
    /// `wait()` returned. A store that cannot tell the two apart returns `PendingCommit.done`
    /// after `reserve` (the default).
    func decide(_ reservation: WindowReservation, at secondsSince1970: Int64) async throws(LimitStoreError) -> (LimitDecision, PendingCommit)
    /// Releases a reservation (the upstream refused the transaction): it no longer counts.
    func release(_ id: ReservationID) async throws(LimitStoreError)
    /// Closes the store.
    func close() async
}

extension LimitStore {
    public func decide(_ reservation: WindowReservation, at secondsSince1970: Int64) async throws(LimitStoreError) -> (LimitDecision, PendingCommit) {
        (try await reserve(reservation, at: secondsSince1970), .done)
    }
}

/// What remains of a decision once it is made: its commit, which may still be under way.
public struct PendingCommit: Sendable {
    private let commit: Task<LimitStoreError?, Never>?

    /// Nothing remains: durable already (or nothing was written).
    public static let done = PendingCommit(commit: nil)

    /// A commit under way: `commit` returns its failure, or nil once durable.
    public init(_ commit: Task<LimitStoreError?, Never>) { self.commit = commit }

    private init(commit: Task<LimitStoreError?, Never>?) { self.commit = commit }

    /// Returns once the reservation is durable; throws when it could not be made so (the
    /// reservation then does not count, and whatever relied on it must not go out).
    public func wait() async throws(LimitStoreError) {
        if let failure = await commit?.value { throw failure }
    }
}

/// A reservation's id in its store.
public struct ReservationID: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { value }
}

/// The store's answer to a reservation.
public enum LimitDecision: Sendable, Hashable {
    /// Reserved: the window's total, with it, is `total`.
    case reserved(ReservationID, total: ExactDecimal)
    /// Refused: the window already holds `total`, and the amount would pass the maximum.
    case exceeded(total: ExactDecimal)
}

/// The limit store cannot be used; the proxy then signs nothing that needs it.
public struct LimitStoreError: LibraryError, Hashable {
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The store could not be opened (the file, the server, the schema).
        public static let unavailable = Code("limitStoreUnavailable")
        /// A reservation or release failed.
        public static let failed = Code("limitStoreFailed")
        /// The store holds what cannot be read back (an amount that is not a decimal).
        public static let corrupt = Code("limitStoreCorrupt")
        /// The store's file or directory could have been written by someone else.
        public static let untrusted = Code("limitStoreUntrusted")
        /// The store's address is not one this store takes.
        public static let badLocation = Code("limitStoreBadLocation")
    }

    public let code: Code
    public let reason: String
    public let location: ErrorLocation
    public let path: String?
    public var facts: ErrorFacts { ErrorFacts(path: path) }

    public init(_ code: Code, _ reason: String, path: String? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.path = path
        self.location = ErrorLocation(file: file, line: line)
    }

    public var description: String { reason }
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// One waiter at a time, first come first served: the check and the insert of a reservation
/// are one step for the tasks of this process (the database's own lock covers other processes).
/// A free gate is taken without suspending (no hop to another executor on the request's path).
final class SerialGate: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    func enter() async {
        let taken = state.withLock { state -> Bool in
            guard state.busy else {
                state.busy = true
                return true
            }
            return false
        }
        if taken { return }
        await withCheckedContinuation { continuation in
            // Freed meanwhile: taken now; otherwise queued, and handed the gate by `leave`.
            let now = state.withLock { state -> Bool in
                guard state.busy else {
                    state.busy = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
