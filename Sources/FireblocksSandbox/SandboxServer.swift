import FireblocksAPI
import Foundation
import HTTPTypes
import HTTPServing
import ProxySettings
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import ServiceLifecycle
import Synchronization

/// The stand-in on a loopback socket, served by Hummingbird 2 (HTTP/1.1 with keep-alive), run
/// by a swift-service-lifecycle `ServiceGroup` for a graceful shutdown.
///
/// A test tool, but one that must not be held hostage by a bad client: a connection that does
/// not complete a request within ``Limits/requestTimeout`` of connecting, or of its previous
/// answer (slow or idle senders, half-sent headers), is closed; at most
/// ``Limits/maximumConnections`` connections are open at once (more are closed on accept);
/// request bodies over ``Limits/maximumBodySize`` are answered 413.
public final class SandboxServer: Sendable {
    /// Bounds on what one client can hold.
    public struct Limits: Sendable {
        /// Time a client has to send a whole request, from connecting or from its previous
        /// answer (the answer's configured delay is added).
        public var requestTimeout: TimeInterval
        /// Connections served at once.
        public var maximumConnections: Int
        /// Largest request body accepted.
        public var maximumBodySize: Int
        /// Time a client has to send a request's head (at most ``requestTimeout``).
        public var headTimeout: TimeInterval

        /// Creates the value from its parts.
        public init(requestTimeout: TimeInterval = 10, maximumConnections: Int = 128, maximumBodySize: Int = 1 << 20,
                    headTimeout: TimeInterval = 5) {
            self.requestTimeout = requestTimeout
            self.maximumConnections = maximumConnections
            self.maximumBodySize = maximumBodySize
            self.headTimeout = headTimeout
        }
    }

    /// The port actually bound (useful with port 0).
    public let port: Int
    /// The address bound.
    public let host: String
    private let group: ServiceGroup
    private let running: Task<Void, any Error>

    private init(group: ServiceGroup, running: Task<Void, any Error>, host: String, port: Int) {
        self.group = group
        self.running = running
        self.host = host
        self.port = port
    }

    /// Binds `host:port` and starts serving; returns once the socket is bound.
    ///
    /// Only loopback is accepted (the stand-in trusts whoever holds a registered key): a
    /// loopback literal (`127.0.0.1`, another `127.x.y.z`, `::1`) or `localhost`, which is bound as
    /// 127.0.0.1 without asking a resolver.
    /// - Parameter handlingSignals: SIGTERM and SIGINT shut the server down gracefully (for an
    ///   executable; a library user leaves it off and calls ``shutdown()``).
    public static func start(service: SandboxService, host: String = "127.0.0.1", port: Int, limits: Limits = Limits(),
                             handlingSignals: Bool = false,
                             log: @escaping @Sendable (String) -> Void = { _ in }) async throws -> SandboxServer {
        guard let bindHost = LoopbackAddress.bindHost(host) else {
            throw SandboxError("the host must be a loopback literal (127.0.0.1, another 127.x.y.z, ::1) or the word localhost, not '\(host)': the stand-in trusts whoever holds a registered key, so no resolver decides where it listens", setting: "host")
        }
        guard (0...65535).contains(port) else {
            throw SandboxError("the port must be 0 to 65535 (0: any free port), not \(port)", setting: "port")
        }
        guard limits.requestTimeout.isFinite, (0.001...3600).contains(limits.requestTimeout), limits.maximumConnections > 0,
              limits.maximumBodySize > 0, limits.headTimeout.isFinite, (0.001...3600).contains(limits.headTimeout) else {
            throw SandboxError("the request and head timeouts, connection cap and body limit must be positive")
        }
        try service.configuration.validate()

        let connections = ConnectionPolicy.Count(maximum: limits.maximumConnections)
        let deadline = TimeAmount.milliseconds(Int64((limits.requestTimeout + service.configuration.delay) * 1000))
        var logger = Logger(label: "fireblocks-sandbox")
        logger.logLevel = .critical
        let bound = BoundAddress()
        let application = Application(
            responder: SandboxResponder(service: service, maximumBodySize: limits.maximumBodySize, log: log),
            server: .http1(configuration: HTTP1Channel.Configuration(
                additionalChannelHandlers: [ConnectionPolicy(connections: connections, deadline: deadline,
                                                               headDeadline: .milliseconds(Int64(limits.headTimeout * 1000)), log: log)])),
            configuration: ApplicationConfiguration(address: .hostname(bindHost, port: port), serverName: "fireblocks-hsm-sandbox"),
            onServerRunning: { channel in bound.set(channel.localAddress) },
            logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [application], gracefulShutdownSignals: handlingSignals ? [.sigterm, .sigint] : [], logger: logger))
        let running = bound.run { try await group.run() }

        // Wait for the bind (or the failure to bind).
        switch await bound.wait() {
        case .success(let address):
            return SandboxServer(group: group, running: running, host: bindHost, port: address.port ?? port)
        case .failure(let failure):
            await group.triggerGracefulShutdown()
            throw SandboxError(.listen, "cannot listen on \(host):\(port): \(failure.reason)")
        }
    }

    /// `http://host:port/v1`.
    public var baseURL: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "http://\(hostPart):\(port)/v1"
    }

    /// Stops accepting, lets requests in flight finish, and returns when the server has stopped.
    public func shutdown() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
    }

    /// Runs until ``shutdown()`` (or a signal the group handles).
    public func waitUntilClosed() async throws {
        try await running.value
    }
}

/// The request context: Hummingbird's, plus the connection (to drop it without an answer).
struct SandboxRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Every request to the pure ``SandboxService``.
struct SandboxResponder: HTTPResponder {
    typealias Context = SandboxRequestContext

    let service: SandboxService
    let maximumBodySize: Int
    let log: @Sendable (String) -> Void

    func respond(to request: Request, context: Context) async throws -> Response {
        let target = request.head.path ?? "/"
        let method = request.method.rawValue
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maximumBodySize)
        } catch {
            log("\(method) \(target) -> 413 (body over \(maximumBodySize) bytes)")
            return Self.response(status: 413, headers: [("X-Request-ID", UUID().uuidString.lowercased()), ("Content-Type", "application/json")],
                                 body: Array(SandboxService.errorBody(type: "VALIDATION", message: "Body too large").utf8))
        }
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let incoming = SandboxRequest(method: method, target: target, headers: headers, body: Array(buffer: body))

        switch service.handle(incoming) {
        case .drop:
            log("\(method) \(target) -> connection closed without an answer (fault injection)")
            try? await context.channel.close().get()
            return Response(status: .internalServerError)
        case .respond(let status, let responseHeaders, let responseBody):
            let requestID = responseHeaders.first { $0.0 == "X-Request-ID" }?.1 ?? "-"
            log("\(method) \(target) -> \(status) [X-Request-ID: \(requestID)]")
            let delay = service.configuration.delay
            if delay > 0 { try await Task.sleep(for: .milliseconds(Int64(delay * 1000))) }
            return Self.response(status: status, headers: responseHeaders, body: responseBody)
        }
    }

    /// The service's `Date` travels as ``ConnectionPolicy/originalDate`` to the connection
    /// policy, which puts it back: Hummingbird stamps every answer with the host's time, and
    /// the stand-in's clock may be set apart from it (`--clock-offset`).
    static let serviceDate = ConnectionPolicy.originalDate

    static func response(status: Int, headers: [(String, String)], body: [UInt8]) -> Response {
        var fields = HTTPFields()
        for (name, value) in headers {
            if name.lowercased() == "date" {
                fields.append(HTTPField(name: serviceDate, value: value))
            } else if let name = HTTPField.Name(name) {
                fields.append(HTTPField(name: name, value: value))
            }
        }
        // A caller that did not authenticate does not keep its connection (it would hold a place
        // an authenticated client needs).
        if status == 401 { fields[ConnectionPolicy.closeAfterAnswer] = "1" }
        return Response(status: HTTPResponse.Status(code: status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
