import FireblocksAPI
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The stand-in on a loopback socket (HTTP/1.1, one request per connection).
///
/// A test tool, but one that must not be held hostage by a bad client: a connection whose
/// request is not answered within ``Limits/requestTimeout`` of connecting (slow or idle senders)
/// is closed, and at most ``Limits/maximumConnections`` are open at once (more are closed on accept).
public final class SandboxServer: Sendable {
    /// Bounds on what one client can hold.
    public struct Limits: Sendable {
        /// Time a client has from connecting to finishing its request (the answer's configured
        /// delay is added).
        public var requestTimeout: TimeInterval
        /// Connections served at once.
        public var maximumConnections: Int

        public init(requestTimeout: TimeInterval = 10, maximumConnections: Int = 128) {
            self.requestTimeout = requestTimeout
            self.maximumConnections = maximumConnections
        }
    }
    /// The port actually bound (useful with port 0).
    public let port: Int
    public let host: String
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup

    private init(channel: any Channel, group: MultiThreadedEventLoopGroup, host: String, port: Int) {
        self.channel = channel
        self.group = group
        self.host = host
        self.port = port
    }

    /// Largest request body accepted.
    static let maximumBodySize = 1 << 20

    /// Binds `host:port`; only loopback addresses are accepted (the stand-in trusts whoever
    /// holds a registered key, and is a test tool).
    public static func start(service: SandboxService, host: String = "127.0.0.1", port: Int, limits: Limits = Limits(),
                             log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> SandboxServer {
        // Literals only: a name is bound to whatever DNS says, and `127.evil.example` is not
        // loopback. `localhost` is bound as 127.0.0.1, without asking a resolver.
        guard host == "localhost" || APIBaseURL.isLoopback(host) else {
            throw SandboxError("--host must be a loopback address (127.0.0.1, another 127.x.y.z literal, ::1) or localhost, not '\(host)': the stand-in trusts whoever holds a registered key")
        }
        guard (0...65535).contains(port) else {
            throw SandboxError("--port must be 0 to 65535 (0: any free port), not \(port)")
        }
        let bindHost = host == "localhost" ? "127.0.0.1" : host
        try service.configuration.validate()
        guard limits.requestTimeout.isFinite, (0.001...3600).contains(limits.requestTimeout), limits.maximumConnections > 0 else {
            throw SandboxError("the request timeout and connection cap must be positive")
        }
        let connections = ConnectionCount(maximum: limits.maximumConnections)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.open() else {
                    log("connection refused: \(limits.maximumConnections) connections are open")
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in connections.close() }
                // Whatever the client does, the connection ends by the deadline (the answer's
                // configured delay added).
                let deadline = TimeAmount.milliseconds(Int64((limits.requestTimeout + service.configuration.delay) * 1000))
                channel.eventLoop.scheduleTask(in: deadline) { channel.close(promise: nil) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SandboxHTTPHandler(service: service, log: log))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: bindHost, port: port).get()
            let bound = channel.localAddress?.port ?? port
            return SandboxServer(channel: channel, group: group, host: bindHost, port: bound)
        } catch {
            try? await group.shutdownGracefully()
            throw SandboxError(.listen, "cannot listen on \(host):\(port): \(error)")
        }
    }

    /// `http://host:port/v1`.
    public var baseURL: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "http://\(hostPart):\(port)/v1"
    }

    /// Stops listening and waits for the event loop to end.
    public func shutdown() async throws {
        try await channel.close().get()
        try await group.shutdownGracefully()
    }

    /// Runs until the channel is closed (by ``shutdown()`` or a signal handler).
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }
}

/// How many connections are open.
private final class ConnectionCount: Sendable {
    private let count = Mutex(0)
    private let maximum: Int

    init(maximum: Int) { self.maximum = maximum }

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

/// Collects one request, asks the service, writes its reply (after the configured delay), closes.
private final class SandboxHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: SandboxService
    private let log: @Sendable (String) -> Void
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(service: SandboxService, log: @escaping @Sendable (String) -> Void) {
        self.service = service
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > SandboxServer.maximumBodySize {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if tooLarge {
                write(context: context, status: 413, headers: [("X-Request-ID", UUID().uuidString.lowercased())],
                      body: Array(SandboxService.errorBody(type: "VALIDATION", message: "Body too large").utf8))
                return
            }
            var headers: [String: String] = [:]
            for (name, value) in head.headers { headers[name.lowercased()] = value }
            let request = SandboxRequest(method: head.method.rawValue, target: head.uri, headers: headers, body: body)
            switch service.handle(request) {
            case .drop:
                log("\(head.method.rawValue) \(head.uri) -> connection closed without an answer (fault injection)")
                context.close(promise: nil)
            case .respond(let status, let responseHeaders, let responseBody):
                let requestID = responseHeaders.first { $0.0 == "X-Request-ID" }?.1 ?? "-"
                log("\(head.method.rawValue) \(head.uri) -> \(status) [X-Request-ID: \(requestID)]")
                let delay = service.configuration.delay
                if delay > 0 {
                    let loop = context.eventLoop.assumeIsolated()
                    loop.scheduleTask(in: .milliseconds(Int64(delay * 1000))) {
                        self.write(context: context, status: status, headers: responseHeaders, body: responseBody)
                    }
                } else {
                    write(context: context, status: status, headers: responseHeaders, body: responseBody)
                }
            }
        }
    }

    private func write(context: ChannelHandlerContext, status: Int, headers: [(String, String)], body: [UInt8]) {
        var fields = HTTPHeaders(headers)
        fields.replaceOrAdd(name: "Content-Length", value: String(body.count))
        fields.replaceOrAdd(name: "Connection", value: "close")
        fields.replaceOrAdd(name: "Server", value: "fireblocks-hsm-sandbox")
        let head = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: fields)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !body.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            loopBoundContext.value.close(promise: nil)
        }
    }
}
