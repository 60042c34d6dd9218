import CoreMetrics
import Dispatch
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import PKCS11
import Synchronization

/// A bounded pool of sessions signing with one ``UsableKey``: what a long-running process (the
/// signing proxy, a benchmark) uses instead of one ``TokenSigner`` per call.
///
/// - One module initialisation and one login per process: the pool borrows the caller's
///   (login state is per token and process in PKCS#11, shared by every session).
/// - At most ``size`` sessions, opened on demand: by default one per core, never more than the
///   token's `ulMaxSessionCount` allows (one is left for the caller's own session). Each session
///   is used by one signer at a time; callers beyond that wait (counted in ``Statistics/waits``),
///   and stop waiting with `CancellationError` when their task is cancelled.
/// - The private key's handle is looked up once per session and cached with it.
/// - `C_Sign` runs on a Dispatch thread, never on Swift's cooperative pool.
///
/// Recovery, without a restart:
/// - `CKR_USER_NOT_LOGGED_IN`: log in again, once, from the same non-interactive PIN source
///   (single-flight: concurrent signers wait for one `C_Login`). A PIN the token refuses is
///   never sent again: the pool fails every later signature at once with that error.
/// - `CKR_SESSION_HANDLE_INVALID`, `CKR_SESSION_CLOSED`, `CKR_DEVICE_REMOVED`,
///   `CKR_TOKEN_NOT_PRESENT`, `CKR_KEY_HANDLE_INVALID`: the session is dropped (never returned
///   to the pool), a new one is opened with backoff and the signature is retried once.
/// - In a child process after `fork()`: the module is initialised again, the parent's sessions
///   are forgotten (their handles are not the child's) and the user logged in again.
public final class SigningPool: Sendable {
    /// What the pool has done so far.
    public struct Statistics: Sendable, Equatable {
        /// Sessions open now.
        public var open = 0
        /// Sessions idle now.
        public var idle = 0
        /// Signatures made.
        public var signatures = 0
        /// Times a signer found every session busy and waited.
        public var waits = 0
        /// Logins made again after `CKR_USER_NOT_LOGGED_IN`.
        public var relogins = 0
        /// `C_Login` attempts the pool made (successful or not).
        public var loginAttempts = 0
        /// Sessions dropped and opened again.
        public var reopenedSessions = 0
        /// Signatures that failed after recovery was tried.
        public var failures = 0
    }

    /// The key.
    public let key: UsableKey
    /// The most sessions the pool opens.
    public let size: Int

    private let pinSource: PINSource
    private let state: Mutex<State>
    private let login: Mutex<LoginState>
    private let loginSerializer = Mutex<Void>(())
    private let metrics: PoolMetrics
    private let expectedLength: Int

    private struct State {
        var idle: [PooledSession] = []
        var open = 0
        var waiters: [Waiter] = []
        var lastWaiter: UInt64 = 0
        var statistics = Statistics()
        var process = getpid()
        var closed = false
    }

    /// What a waiting signer is handed.
    private enum Handoff {
        case session(PooledSession)
        /// A place in the pool freed by a dropped session: open a new one.
        case open
        case closed
        /// Its task was cancelled while it waited.
        case cancelled
    }

    /// A signer waiting for a session, known by its number so that its cancellation finds it.
    private struct Waiter {
        let number: UInt64
        let continuation: CheckedContinuation<Handoff, Never>
    }

    private struct LoginState {
        /// Bumped after every login the pool made: a signer that saw `CKR_USER_NOT_LOGGED_IN`
        /// under an older generation finds the login already done.
        var generation = 0
        var refused: (any Error & Sendable)?
    }

    /// Makes a pool for `key`, whose token the caller has logged in to.
    /// - Parameters:
    ///   - pinSource: where a new login reads the PIN; a prompt cannot be read again, so with
    ///     `.prompt` a lost login is an error rather than a question.
    ///   - size: the most sessions; default one per core. Capped by the token's limit.
    ///   - metricsFactory: where the pool's metrics go (swift-metrics; the global factory by default).
    public init(key: UsableKey, pinSource: PINSource, size: Int? = nil,
                metricsFactory: (any MetricsFactory)? = nil) throws {
        let info = try key.slot.tokenInfo()
        let wanted = size ?? ProcessInfo.processInfo.activeProcessorCount
        guard wanted >= 1, wanted <= 1024 else {
            throw TokenKeysError(.invalidArgument, "the pool size must be 1 to 1024, not \(wanted)")
        }
        let tokenLimit = info.maximumSessionCount.map { Int(clamping: $0) }
        self.size = tokenLimit.map { max(1, min(wanted, $0 - 1)) } ?? wanted
        self.key = key
        self.pinSource = pinSource
        self.state = Mutex(State())
        self.login = Mutex(LoginState())
        self.metrics = PoolMetrics(factory: metricsFactory ?? MetricsSystem.factory)
        self.expectedLength = (key.publicKey.bits + 7) / 8
        // One session now, so that a pool that cannot sign fails here rather than on first use.
        let first = try openSession()
        state.withLock { $0.idle.append(first); $0.open = 1 }
        metrics.sessions.record(1)
    }

    /// What the pool has done so far.
    public var statistics: Statistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.open = state.open
            statistics.idle = state.idle.count
            return statistics
        }
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message` with the pool's key, on a session of the
    /// pool, off the cooperative thread pool; recovers as the type's documentation says.
    public func signRS256(_ message: [UInt8]) async throws -> [UInt8] {
        let lease = try await checkOut()
        let started = ContinuousClock.now
        let outcome: Result<(signature: [UInt8], session: PooledSession?), any Error> = await withCheckedContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(returning: Result { try self.signRecovering(message, lease: lease) })
            }
        }
        switch outcome {
        case .success(let (signature, session)):
            checkIn(session)
            metrics.signatures.increment()
            let elapsed = started.duration(to: .now).components
            metrics.signatureDuration.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
            state.withLock { $0.statistics.signatures += 1 }
            return signature
        case .failure(let error):
            checkIn(nil)
            state.withLock { $0.statistics.failures += 1 }
            metrics.failures.increment()
            throw error
        }
    }

    /// Closes the idle sessions and refuses further signatures (those in flight finish).
    public func close() {
        let (idle, waiters) = state.withLock { state -> ([PooledSession], [Waiter]) in
            state.closed = true
            let idle = state.idle
            state.open -= idle.count
            state.idle = []
            let waiters = state.waiters
            state.waiters = []
            return (idle, waiters)
        }
        for session in idle { session.close() }
        for waiter in waiters { waiter.continuation.resume(returning: .closed) }
    }

    // MARK: Checking sessions out and in

    /// A session to sign with: an idle one, a new one while under ``size``, or the next one
    /// returned. `nil` in the lease means "open one" (done on the signing thread).
    private func checkOut() async throws -> Lease {
        enum Decision { case use(PooledSession), open, wait(number: UInt64), closed, forked }
        let decision = state.withLock { state -> Decision in
            if state.closed { return .closed }
            if state.process != getpid() { return .forked }
            if let session = state.idle.popLast() { return .use(session) }
            if state.open < size { state.open += 1; return .open }
            state.statistics.waits += 1
            state.lastWaiter &+= 1
            return .wait(number: state.lastWaiter)
        }
        switch decision {
        case .use(let session): return Lease(session: session)
        case .open: return Lease(session: nil)
        case .closed: throw TokenKeysError(.invalidArgument, "the signing pool is closed")
        case .forked:
            try afterFork()
            return try await checkOut()
        case .wait(let number):
            metrics.waits.increment()
            // A signer whose task is cancelled stops waiting (and takes no place in the pool);
            // one already handed a session signs with it.
            let handoff = await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Handoff, Never>) in
                    let now = state.withLock { state -> Handoff? in
                        // Returned between our decision and now?
                        if let session = state.idle.popLast() { return .session(session) }
                        if state.closed { return .closed }
                        if state.open < size { state.open += 1; return .open }
                        // Cancelled before it could be found waiting.
                        if Task.isCancelled { return .cancelled }
                        state.waiters.append(Waiter(number: number, continuation: continuation))
                        return nil
                    }
                    if let now { continuation.resume(returning: now) }
                }
            } onCancel: {
                let waiter = state.withLock { state -> Waiter? in
                    guard let index = state.waiters.firstIndex(where: { $0.number == number }) else { return nil }
                    return state.waiters.remove(at: index)
                }
                waiter?.continuation.resume(returning: .cancelled)
            }
            switch handoff {
            case .session(let session): return Lease(session: session)
            case .open: return Lease(session: nil)
            case .closed: throw TokenKeysError(.invalidArgument, "the signing pool is closed")
            case .cancelled: throw CancellationError()
            }
        }
    }

    /// Returns a session to the pool, or with `nil` gives back the place of one that was
    /// dropped; either goes to the longest waiting signer first.
    private func checkIn(_ session: PooledSession?) {
        let (waiter, handoff, closeIt, open) = state.withLock { state -> (Waiter?, Handoff, Bool, Int) in
            if state.closed || state.process != getpid() {
                state.open -= 1
                return (nil, .closed, session != nil, state.open)
            }
            guard let session else {
                guard !state.waiters.isEmpty else {
                    state.open -= 1
                    return (nil, .closed, false, state.open)
                }
                return (state.waiters.removeFirst(), .open, false, state.open)
            }
            if !state.waiters.isEmpty { return (state.waiters.removeFirst(), .session(session), false, state.open) }
            state.idle.append(session)
            return (nil, .closed, false, state.open)
        }
        waiter?.continuation.resume(returning: handoff)
        if closeIt, let session { session.close() }
        metrics.sessions.record(open)
    }

    // MARK: Signing with recovery (on a Dispatch thread)

    /// A checked-out session, or nil: open one (on the signing thread).
    private struct Lease: Sendable {
        let session: PooledSession?
    }

    private func signRecovering(_ message: [UInt8], lease: Lease) throws -> (signature: [UInt8], session: PooledSession?) {
        var session = try lease.session ?? openSession()
        var reloggedIn = false
        var reopened = false
        while true {
            if let refused = login.withLock({ $0.refused }) {
                // Never send a refused PIN again.
                drop(session)
                throw refused
            }
            let generation = login.withLock { $0.generation }
            do {
                let signature = try session.sign(message, expectedLength: expectedLength)
                return (signature, session)
            } catch let error as PKCS11Error {
                if !reloggedIn, Self.isLoggedOut(error, session: session) {
                    // Logged out underneath: private objects (and so the cached handle) are
                    // gone from every session. Log in once, then find the key again.
                    reloggedIn = true
                    do {
                        try logInAgain(after: generation)
                    } catch {
                        drop(session)
                        throw error
                    }
                    drop(session)
                    session = try reopenWithBackoff()
                } else if !reopened, Self.dropsSession(error.returnValue) {
                    reopened = true
                    drop(session)
                    session = try reopenWithBackoff()
                    state.withLock { $0.statistics.reopenedSessions += 1 }
                    metrics.reopens.increment()
                } else {
                    drop(session)
                    throw error
                }
            } catch {
                drop(session)
                throw error
            }
        }
    }

    /// `CKR_USER_NOT_LOGGED_IN`, or a key handle that vanished because the user was logged
    /// out (modules answer `CKR_OBJECT_HANDLE_INVALID` or `CKR_KEY_HANDLE_INVALID` then).
    private static func isLoggedOut(_ error: PKCS11Error, session: PooledSession) -> Bool {
        switch error.returnValue {
        case .userNotLoggedIn: return true
        case .keyHandleInvalid, .objectHandleInvalid: return session.isUserLoggedIn() == false
        default: return false
        }
    }

    static func dropsSession(_ value: ReturnValue) -> Bool {
        [.sessionHandleInvalid, .sessionClosed, .deviceRemoved, .tokenNotPresent, .keyHandleInvalid, .objectHandleInvalid].contains(value)
    }

    private func drop(_ session: PooledSession) {
        session.close()
    }

    private func reopenWithBackoff() throws -> PooledSession {
        var delay: useconds_t = 50_000
        var lastError: any Error = TokenKeysError(.invalidArgument, "no session")
        for attempt in 0..<4 {
            if attempt > 0 { usleep(delay); delay *= 3 }
            do {
                return try openSession()
            } catch let error as PKCS11Error where error.returnValue == .userNotLoggedIn {
                throw error
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Opens a session and finds the key's private half in it (the handle is cached with it).
    private func openSession() throws -> PooledSession {
        let session = try key.slot.openSession(readWrite: false)
        let template: [Attribute] = key.keyPair.id.isEmpty
            ? [.class(.privateKey), .label(key.keyPair.label)]
            : [.class(.privateKey), .id(key.keyPair.id)]
        let generation = login.withLock { $0.generation }
        var handles = try session.findObjects(template)
        if handles.isEmpty {
            // A session that looked while logged out sees no private object: log in (unless
            // another signer did since the look) and look again. Again also when the session
            // is logged in by now: another signer's login may have come between the look and
            // the question.
            if try !session.state().isUserLoggedIn {
                try logInAgain(after: generation)
            }
            handles = try session.findObjects(template)
        }
        guard handles.count == 1, let handle = handles.first else {
            throw TokenKeysError(handles.isEmpty ? .keyNotFound : .ambiguousKey,
                                 "key '\(key.keyPair.label)' is \(handles.isEmpty ? "no longer" : "more than once") on token '\(key.keyPair.token.label)'")
        }
        return PooledSession(session: session, keyHandle: handle)
    }

    /// Logs in again unless another signer already did since `generation`.
    private func logInAgain(after generation: Int) throws {
        try loginSerializer.withLock { _ in
            let current = login.withLock { $0 }
            if let refused = current.refused { throw refused }
            if current.generation != generation { return }
            guard !pinSource.mayRetry else {
                let error = TokenKeysError(.pinUnavailable, "the token logged this process out and its PIN came from a prompt, which cannot be asked again here; it needs a PIN source that can be read again (env:NAME or file:PATH)")
                login.withLock { $0.refused = error }
                throw error
            }
            let session = try key.slot.openSession(readWrite: false)
            defer { try? session.close() }
            if try session.state().isUserLoggedIn {
                login.withLock { $0.generation += 1 }
                return
            }
            state.withLock { $0.statistics.loginAttempts += 1 }
            do {
                let pin = try pinSource.readPIN(prompter: nil, promptText: "", warn: { _ in })
                try session.login(.user, pin: pin)
            } catch let error as PKCS11Error where error.returnValue == .userAlreadyLoggedIn {
                // Someone else in this process logged in: as good.
            } catch let error as PKCS11Error {
                let info = (try? key.slot.tokenInfo()) ?? key.keyPair.token
                let failure: any Error & Sendable
                if case .fail(let reason) = TokenLogin.afterFailure(error, source: pinSource, attempt: TokenLogin.promptAttempts, token: info),
                   let reason = reason as? TokenKeysError {
                    failure = reason
                } else {
                    failure = error
                }
                if [.pinIncorrect, .pinLocked, .pinExpired, .pinInvalid, .pinLenRange].contains(error.returnValue) {
                    login.withLock { $0.refused = failure }
                }
                throw failure
            } catch let error as TokenKeysError {
                // The PIN source could not be read: not a refused PIN, but nothing to retry with now.
                throw error
            }
            login.withLock { $0.generation += 1 }
            state.withLock { $0.statistics.relogins += 1 }
            metrics.relogins.increment()
        }
    }

    /// In a forked child: initialise the module again, forget the parent's sessions, log in.
    private func afterFork() throws {
        try key.slot.module.reinitializeAfterFork()
        state.withLock { state in
            // The parent's handles mean nothing here; do not close them (that would be the
            // child closing handles numbered like the parent's).
            state.idle.forEach { $0.abandon() }
            state.idle = []
            state.open = 0
            state.process = getpid()
        }
        try logInAgain(after: login.withLock { $0.generation })
    }
}

/// A session of the pool and the key handle found in it. The session is behind a `Mutex`, as
/// the signers' are: the compiler, not a convention, keeps two threads from using it at once
/// (the pool hands each to one signer at a time, so the lock is never contended).
final class PooledSession: Sendable {
    private let session: Mutex<Session>
    let keyHandle: ObjectHandle

    init(session: sending Session, keyHandle: ObjectHandle) {
        self.session = Mutex(session)
        self.keyHandle = keyHandle
    }

    /// `CKM_SHA256_RSA_PKCS` over `message` with the key.
    func sign(_ message: [UInt8], expectedLength: Int) throws -> [UInt8] {
        try session.withLock { session in
            try session.sign(mechanism: .sha256RSAPKCS, key: keyHandle, data: message, expectedLength: expectedLength)
        }
    }

    /// Whether the session's user is logged in (nil when the token cannot say).
    func isUserLoggedIn() -> Bool? {
        session.withLock { session in (try? session.state())?.isUserLoggedIn }
    }

    /// `C_CloseSession`.
    func close() {
        session.withLock { session in try? session.close() }
    }

    /// Leaves the handle unclosed (after `fork()`, it belongs to the parent).
    func abandon() {
        session.withLock { $0.abandon() }
    }
}

/// The pool's metrics, through swift-metrics.
struct PoolMetrics: Sendable {
    let signatures: Counter
    let failures: Counter
    let signatureDuration: CoreMetrics.Timer
    let waits: Counter
    let relogins: Counter
    let reopens: Counter
    let sessions: Gauge

    init(factory: any MetricsFactory) {
        signatures = Counter(label: "fireblocks_hsm_signatures_total", factory: factory)
        failures = Counter(label: "fireblocks_hsm_signature_failures_total", factory: factory)
        signatureDuration = CoreMetrics.Timer(label: "fireblocks_hsm_signature_duration_seconds", factory: factory)
        waits = Counter(label: "fireblocks_hsm_pool_waits_total", factory: factory)
        relogins = Counter(label: "fireblocks_hsm_relogins_total", factory: factory)
        reopens = Counter(label: "fireblocks_hsm_pool_reopened_sessions_total", factory: factory)
        sessions = Gauge(label: "fireblocks_hsm_pool_sessions", factory: factory)
    }
}
