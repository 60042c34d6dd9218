import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

extension ConnectionPolicy {
    /// How many connections are open, shared by every connection's policy.
    public final class Count: Sendable {
        private let count = Mutex(0)
        private let maximum: Int

        /// At most `maximum` at once.
        public init(maximum: Int) { self.maximum = maximum }

        /// Counts one more, unless the cap is reached.
        func open() -> Bool {
            count.withLock { count in
                guard count < maximum else { return false }
                count += 1
                return true
            }
        }

        func close() { count.withLock { $0 -= 1 } }
}
}

/// Per connection: the cap on open connections, and the deadline for each request — from
/// connecting or from the previous answer to the request's end. A client that idles or
/// trickles bytes loses its connection; a client that sends whole requests is never cut off.
public final class ConnectionPolicy: ChannelDuplexHandler, RemovableChannelHandler {
    /// A response header the policy turns back into `Date`: Hummingbird stamps every answer
    /// with the host's time, so a server that relays another clock's `Date` (the stand-in's
    /// offset clock, the proxy's upstream) sets this instead.
    public static let originalDate = HTTPField.Name("X-Original-Date")!

    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    private let connections: Count
    private let deadline: TimeAmount
    private let log: @Sendable (String) -> Void
    private var counted = false
    private var timer: Scheduled<Void>?

    /// A policy for one connection: counted in `connections` (closed at once over the cap),
    /// and closed when a request is not complete `deadline` after connecting or after the
    /// previous answer.
    public init(connections: Count, deadline: TimeAmount, log: @escaping @Sendable (String) -> Void) {
        self.connections = connections
        self.deadline = deadline
        self.log = log
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        guard connections.open() else {
            log("connection refused: the connection cap is reached")
            context.close(promise: nil)
            return
        }
        counted = true
        arm(context)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        if counted {
            counted = false
            connections.close()
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) {
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.headerFields[Self.originalDate] != nil:
            head.headerFields[.date] = head.headerFields[Self.originalDate]
            head.headerFields[Self.originalDate] = nil
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            arm(context)
            context.write(data, promise: promise)
        default:
            context.write(data, promise: promise)
        }
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
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
    public struct BindFailure: Error, Sendable {
        /// Why.
        public let reason: String
    }
}
