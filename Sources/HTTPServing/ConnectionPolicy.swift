import ErrorShape
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension ConnectionPolicy {
    /// How many connections are open, in all and per peer (a local user, on a unix socket),
    /// shared by every connection's policy; and whether the listener accepts more.
    public final class Count: Sendable {
        private let state = Mutex<(total: Int, byPeer: [String: Int], paused: Bool)>((0, [:], false))
        private let maximum: Int
        private let perPeer: Int

        /// At most `maximum` at once, and at most `perPeer` (default: half of them) from one local
        /// user of a unix socket.
        public init(maximum: Int, perPeer: Int? = nil) {
            self.maximum = maximum
            self.perPeer = max(1, perPeer ?? max(1, maximum / 2))
        }

        /// Counts one more connection; whether the listener must stop accepting (the cap is
        /// reached: the kernel's backlog holds new connections until one closes). A connection
        /// the listener had already accepted when it paused (one read's batch) is counted and
        /// served, not closed: it may be the client the cap is there for.
        func open() -> Bool {
            state.withLock { state in
                state.total += 1
                let pause = state.total >= maximum && !state.paused
                if pause { state.paused = true }
                return pause
            }
        }

        /// Counts one more from `peer`; false when that peer holds its share already.
        func admit(peer: String) -> Bool {
            state.withLock { state in
                let held = state.byPeer[peer, default: 0]
                guard held < perPeer else { return false }
                state.byPeer[peer] = held + 1
                return true
            }
        }

        /// Whether the listener should accept now (under the cap).
        var accepting: Bool { state.withLock { $0.total < maximum } }

        /// Sets the listener's accepting to what the count says *when this runs* on the
        /// listener's own event loop: pauses and resumes decided on different connections' loops
        /// then cannot arrive in the wrong order and leave it paused under the cap.
        func updateAccepting(_ listener: (any Channel)?) {
            guard let listener else { return }
            listener.eventLoop.execute { [self] in
                listener.setOption(ChannelOptions.autoRead, value: accepting).whenFailure { _ in }
            }
        }

        /// One connection fewer (and one fewer of `peer`, if it was admitted as one); whether the
        /// listener may accept again.
        func close(peer: String?) -> Bool {
            state.withLock { state in
                state.total -= 1
                if let peer {
                    let held = state.byPeer[peer, default: 1] - 1
                    state.byPeer[peer] = held > 0 ? held : nil
                }
                let resume = state.paused && state.total < maximum
                if resume { state.paused = false }
                return resume
            }
        }
    }
}

/// `struct ucred` of `SO_PEERCRED` (pid_t, uid_t, gid_t: three 32-bit fields in this order on
/// Linux), which Glibc's module map leaves out without _GNU_SOURCE.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Per connection: the cap on open connections (at the cap the listener stops accepting, so new
/// connections wait in the kernel's backlog instead of being refused), a share per local user on
/// a unix socket (`SO_PEERCRED`), a deadline for a request's head (an idle or slowly trickling
/// connection is reaped quickly: it holds a place others need), and the deadline for each whole
/// request — from connecting or from the previous answer to the request's end. A client that
/// sends whole requests is never cut off.
public final class ConnectionPolicy: ChannelDuplexHandler, RemovableChannelHandler {
    /// A response header the policy turns back into `Date`: Hummingbird stamps every answer
    /// with the host's time, so a server that relays another clock's `Date` (the stand-in's
    /// offset clock, the proxy's upstream) sets this instead.
    public static let originalDate = HTTPField.Name("X-Original-Date")!

    /// A response header a responder sets (and the policy removes before anything is sent) to
    /// have the connection closed once that answer is written: for answers to clients that did
    /// not authenticate, so that a connection kept alive by requests without a credential never
    /// holds a place an authenticated client needs.
    public static let closeAfterAnswer = HTTPField.Name("X-Connection-Policy-Close")!

    /// How long a connection may take to send a request's head, by default.
    public static let defaultHeadDeadline = TimeAmount.seconds(5)

    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    private let connections: Count
    private let deadline: TimeAmount
    private let headDeadline: TimeAmount
    private let log: @Sendable (String) -> Void
    private var counted = false
    private var peer: String?
    private var timer: Scheduled<Void>?
    private var headTimer: Scheduled<Void>?
    private var closing = false

    /// A policy for one connection: counted in `connections`, closed when a request's head has
    /// not arrived `headDeadline` after connecting or after the previous answer, or the whole
    /// request `deadline` after.
    public init(connections: Count, deadline: TimeAmount, headDeadline: TimeAmount = ConnectionPolicy.defaultHeadDeadline,
                log: @escaping @Sendable (String) -> Void) {
        self.connections = connections
        self.deadline = deadline
        self.headDeadline = min(headDeadline, deadline)
        self.log = log
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        counted = true
        if connections.open() {
            log("the connection cap is reached: new connections wait in the backlog")
            connections.updateAccepting(context.channel.parent)
        }
        arm(context)
        admitPeer(context)
    }

    /// On a unix socket: the peer's uid (the kernel's word, `SO_PEERCRED`), held to its share.
    /// On TCP every local user is 127.0.0.1: no share, the head deadline does the work.
    private func admitPeer(_ context: ChannelHandlerContext) {
        guard let address = context.channel.remoteAddress, case .unixDomainSocket = address,
              let provider = context.channel as? any SocketOptionProvider else { return }
        let channel = context.channel
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let credentials: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_PEERCRED))
        credentials.whenComplete { result in
            let policy = loopBound.value
            guard policy.counted, case .success(let credentials) = result else { return }
            let peer = "uid \(credentials.uid)"
            if policy.connections.admit(peer: peer) {
                policy.peer = peer
            } else {
                policy.log("connection closed: \(peer) holds its share of the connections")
                channel.close(promise: nil)
            }
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        headTimer?.cancel()
        headTimer = nil
        if counted {
            counted = false
            if connections.close(peer: peer) {
                connections.updateAccepting(context.channel.parent)
            }
            peer = nil
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            headTimer?.cancel()
            headTimer = nil
        case .end:
            timer?.cancel()
            timer = nil
        default:
            break
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.headerFields[Self.originalDate] != nil || head.headerFields[Self.closeAfterAnswer] != nil:
            if head.headerFields[Self.originalDate] != nil {
                head.headerFields[.date] = head.headerFields[Self.originalDate]
                head.headerFields[Self.originalDate] = nil
            }
            if head.headerFields[Self.closeAfterAnswer] != nil {
                head.headerFields[Self.closeAfterAnswer] = nil
                head.headerFields[.connection] = "close"
                closing = true
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            if closing {
                let channel = context.channel
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
                written.futureResult.cascade(to: promise)
                context.writeAndFlush(data, promise: written)
                return
            }
            arm(context)
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        headTimer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
        headTimer = context.eventLoop.scheduleTask(in: headDeadline) { channel.close(promise: nil) }
    }
}

/// The address a server bound, once it has, or why it could not: set from Hummingbird's
/// `onServerRunning` and the service group's failure, waited for by whoever started it.
public final class BoundAddress: Sendable {
    private let state = Mutex<(address: SocketAddress?, failure: String?)>((nil, nil))

    /// Nothing bound yet.
    public init() {}

    /// The server is running on `address`.
    public func set(_ address: SocketAddress?) { state.withLock { $0.address = address ?? $0.address } }

    /// The server failed (to bind, or later).
    public func fail(_ error: any Error) { state.withLock { $0.failure = "\(error)" } }

    /// Runs a server (its service group) in a task; a failure is reported to the waiter.
    public func run(_ server: @escaping @Sendable () async throws -> Void) -> Task<Void, any Error> {
        Task {
            do {
                try await server()
            } catch {
                self.fail(error)
                throw error
            }
        }
    }

    /// Waits for the bind: the address, or why there is none. Counted in polls of 10 ms rather
    /// than by the clock: the server's own task needs the same cooperative threads, so on a
    /// machine whose threads are all busy the wait stretches with it instead of giving up on a
    /// server that merely has not been scheduled yet. A failure to bind is reported at once.
    public func wait(polls: Int = 6000) async -> Result<SocketAddress, BindFailure> {
        for _ in 0..<max(1, polls) {
            let (address, failure) = state.withLock { ($0.address, $0.failure) }
            if let address { return .success(address) }
            if let failure { return .failure(BindFailure(reason: failure)) }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return .failure(BindFailure(reason: "no socket after \(polls / 100) s"))
    }

    /// Why a server has no address.
    public struct BindFailure: LibraryError {
        /// One code: the server could not take its address.
        public struct Code: ErrorCode {
            public let name: String
            private init(_ name: String) { self.name = name }
            /// In use, not permitted, or not bound in time.
            public static let cannotBind = Code("cannotBind")
        }
        public var code: Code { .cannotBind }
        /// Why.
        public let reason: String
        public var description: String { reason }
        public let location: ErrorLocation

        init(reason: String, file: String = #fileID, line: UInt = #line) {
            self.reason = reason
            self.location = ErrorLocation(file: file, line: line)
        }
    }
}
