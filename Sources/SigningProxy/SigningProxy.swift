import ProxySettings
import AsyncHTTPClient
import AsyncHTTPTransport
import AuditTrail
import CoreMetrics
import FireblocksAPI
import FireblocksHSM
import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle
import Synchronization
import TokenKeys

/// The signing proxy: applications (an unmodified official SDK, curl) send Fireblocks API
/// requests to a local socket; the proxy checks them against its policy, records them in the
/// token's audit trail, signs a fresh JWT on the token for exactly the bytes it forwards, sends
/// them on, and streams the answer back unchanged. Applications never hold the key.
public final class SigningProxy: Sendable {
    /// Where it listens (with the port actually bound).
    public let address: ListenAddress
    /// The signing pool (statistics, for `bench`).
    public let pool: SigningPool
    private let group: ServiceGroup
    private let running: Task<Void, any Error>
    private let finished: Task<Void, Never>

    private init(address: ListenAddress, pool: SigningPool, group: ServiceGroup, running: Task<Void, any Error>,
                 finished: Task<Void, Never>) {
        self.address = address
        self.pool = pool
        self.group = group
        self.running = running
        self.finished = finished
    }

    /// Opens the token, checks the key, makes the pool and the audit trail, binds the listener
    /// and starts serving; returns once the socket is bound.
    /// - Parameters:
    ///   - auditDirectory: the token's audit log (required: every request is recorded).
    ///   - handlingSignals: SIGTERM and SIGINT shut the proxy down gracefully (for `serve`).
    public static func start(configuration: ProxyConfiguration, token target: TokenTarget, auditDirectory: URL,
                             poolSize: Int? = nil, handlingSignals: Bool = false, observer: any OperationObserver,
                             logger: Logger) async throws -> SigningProxy {
        try configuration.validate()
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)

        // The login, the key's checks, the pool's sessions and the audit trail (which reads the
        // log and may wait for its lock) block: off the cooperative pool.
        let checkpointEvery = configuration.checkpointEvery
        let (minimumFree, diskInterval) = (configuration.minimumFreeAudit, configuration.auditDiskCheckInterval)
        let (pair, usable, pool, auditor) = try await BlockingBridge.run {
            let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: auditDirectory)
            let key = try target.requireKey()
            let pair = try KeyStore.findUsable(key, in: opened.session)
            let usable = try UsableKey(pair, slot: opened.token.slot)
            let pool = try SigningPool(key: usable, pinSource: target.pinSource, size: poolSize, metricsFactory: factory)
            let audit = AuditService(opened: opened, directory: auditDirectory, observer: observer)
            return (pair, usable, pool, try ProxyAuditor(service: audit, every: checkpointEvery, minimumFree: minimumFree, diskInterval: diskInterval, logger: logger))
        }
        let issuer = try RequestTokenIssuer(apiKey: configuration.apiKey, signer: PoolJWTSigner(pool), lifetime: configuration.jwtLifetime)

        let bindAddress: BindAddress
        switch configuration.listen {
        case .unix(let path):
            try UnixSocketPath.prepare(path)
            bindAddress = .unixDomainSocket(path: path)
        case .loopback(let host, let port):
            bindAddress = .hostname(host, port: port)
        }

        // The request's deadline covers the answer's head only; an upstream that goes silent
        // while the body comes is cut off after the same time without a byte (an answer is
        // streamed back as it comes, so its whole length is not bounded).
        let upstreamTimeout = TimeAmount.nanoseconds(configuration.upstreamTimeout.nanoseconds)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: AsyncHTTPClientTransport.clientConfiguration(
            connectTimeout: min(upstreamTimeout, .seconds(10)), readTimeout: upstreamTimeout, retryConnectionEstablishment: true))

        // A disk already low is said now (and every request refused until there is room); the
        // proxy still starts, so that /healthz and /metrics tell monitoring why.
        _ = auditor.diskReading
        let metrics = ProxyMetrics(factory: factory, registry: registry, poolSize: pool.size)
        let responder = ProxyResponder(configuration: configuration, issuer: issuer, pool: pool, auditor: auditor, httpClient: client,
                                       metrics: metrics, health: HealthCheck(pool: pool, cacheDuration: configuration.healthCacheDuration,
                                                           upstreamInterval: configuration.upstreamCheckInterval, factory: factory),
                                       logger: logger)
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        let connections = ConnectionPolicy.Count(maximum: configuration.maximumConnections)
        let deadline = TimeAmount.nanoseconds(Int64(configuration.requestTimeout.components.seconds) * 1_000_000_000)
        let bound = BoundAddress()
        let application = Application(
            responder: responder,
            server: .http1(configuration: HTTP1Channel.Configuration(
                additionalChannelHandlers: [ConnectionPolicy(connections: connections, deadline: deadline,
                                                             log: { logger.warning("\($0)") })])),
            configuration: ApplicationConfiguration(address: bindAddress, serverName: nil),
            onServerRunning: { channel in bound.set(channel.localAddress) },
            logger: quiet)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [application, CheckpointTimer(auditor: auditor, interval: configuration.checkpointInterval)],
            gracefulShutdownSignals: handlingSignals ? [.sigterm, .sigint] : [], logger: quiet))

        var started: [String: AuditValue] = [
            "listen": .string(configuration.listen.description), "upstream": .string(configuration.upstream.description),
            "key": .string(pair.label), "spkiSHA256": .string(usable.publicKey.fingerprint),
            "allow": .array(configuration.rules.map { .string($0.description) }),
            "clients": .integer(configuration.clients?.count ?? 0), "poolSize": .integer(pool.size),
        ]
        if let policy = configuration.policy {
            // Which policy governs the requests that follow (and, at each reload, the next).
            policy.attach(auditor)
            started["policyFile"] = .string(policy.file.path)
            started["policySHA256"] = .string(policy.file.sha256)
        }
        try await auditor.record(AuditEntry(event: "proxy.started", facts: started), sync: true)

        let running = bound.run { try await group.run() }
        // After the server stopped (signal or shutdown): the final record and checkpoint.
        let finished = Task {
            _ = try? await running.value
            _ = try? await auditor.record(AuditEntry(event: "proxy.stopped", facts: [
                "signatures": .integer(pool.statistics.signatures), "relogins": .integer(pool.statistics.relogins),
            ]), sync: true)
            await auditor.checkpointIfNeeded()
            pool.close()
            try? await client.shutdown()
            if case .unix(let path) = configuration.listen { unlink(path) }
            logger.info("proxy stopped", metadata: ["audit.records": "\(auditor.status.records)"])
        }

        switch await bound.wait() {
        case .success(let local):
            let address: ListenAddress
            switch configuration.listen {
            case .unix(let path):
                chmod(path, 0o600)
                address = .unix(path: path)
            case .loopback(let host, _):
                address = .loopback(host: host, port: local.port ?? 0)
            }
            logger.info("proxy listening", metadata: [
                "listen": "\(address)", "upstream": "\(configuration.upstream)", "key": "\(pair.label)",
                "pool.size": "\(pool.size)", "allow": "\(configuration.rules.map(\.description))",
            ])
            return SigningProxy(address: address, pool: pool, group: group, running: running, finished: finished)
        case .failure(let failure):
            await group.triggerGracefulShutdown()
            await finished.value
            throw ProxyConfigurationError(.cannotListen, "cannot listen on \(configuration.listen): \(failure.reason)")
        }
    }

    /// Stops accepting, lets requests in flight finish, writes the final record and checkpoint.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
        await finished.value
    }

    /// Runs until ``shutdown()`` or a handled signal, and the final checkpoint is written.
    public func waitUntilClosed() async {
        await finished.value
    }
}

/// Signs a checkpoint every interval when records are pending; ends with the service group.
private struct CheckpointTimer: Service {
    let auditor: ProxyAuditor
    let interval: Duration

    func run() async throws {
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await gracefulShutdownAware { try await Task.sleep(for: interval) }
            await auditor.checkpointIfNeeded()
        }
    }

    private func gracefulShutdownAware(_ body: @escaping @Sendable () async throws -> Void) async throws {
        try await cancelWhenGracefulShutdown { try await body() }
    }
}

/// A unix socket's place: its directory 0700 and this user's (made if missing), and no live
/// socket there already (a stale one, from a proxy that died, is removed).
enum UnixSocketPath {
    static func prepare(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        var status = stat()
        if lstat(directory, &status) != 0 {
            guard errno == ENOENT, mkdir(directory, 0o700) == 0 || errno == EEXIST, lstat(directory, &status) == 0 else {
                throw ProxyConfigurationError(.cannotListen, "cannot make the socket directory \(directory) (\(String(cString: strerror(errno))))")
            }
        }
        guard (status.st_mode & S_IFMT) == S_IFDIR else {
            throw ProxyConfigurationError(.cannotListen, "the socket directory \(directory) is not a directory (a symlink is refused)")
        }
        guard status.st_uid == geteuid(), status.st_mode & 0o077 == 0 else {
            throw ProxyConfigurationError(.cannotListen, "the socket directory \(directory) must be this user's and mode 0700 (chmod 700 \(directory)): whoever can reach the socket can sign as the API user")
        }
        if lstat(path, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFSOCK else {
                throw ProxyConfigurationError(.cannotListen, "\(path) exists and is not a socket; remove it or choose another path")
            }
            switch probe(path) {
            case .listening:
                throw ProxyConfigurationError(.cannotListen, "another process is serving on \(path)")
            case .stale:
                unlink(path)
            case .unknown(let reason):
                // Only a refused connection proves nobody serves there: anything else could be
                // a live proxy, whose socket is never removed.
                throw ProxyConfigurationError(.cannotListen, "cannot tell whether another process is serving on \(path) (\(reason)); if none is, remove the socket")
            }
        }
        // The socket is made with the process umask, before chmod can run: make it private.
        umask(0o077)
    }

    enum Probe: Equatable {
        /// A process accepted the connection.
        case listening
        /// The connection was refused: a socket left by a process that is gone.
        case stale
        /// Neither could be told (an error other than a refusal).
        case unknown(String)
    }

    /// Connects to the socket at `path` to learn whether a process serves there. Without
    /// blocking: a listener whose queue of connections is full would hold a blocking connect
    /// until it accepts; a non-blocking one answers `EAGAIN`, which only a live listener gives.
    static func probe(_ path: String) -> Probe {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else { return .unknown("socket: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return .unknown("the path is too long for a unix socket") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        while true {
            let result = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if result == 0 { return .listening }
            switch errno {
            case EINTR: continue
            case EAGAIN, EINPROGRESS: return .listening
            case ECONNREFUSED: return .stale
            default: return .unknown(String(cString: strerror(errno)))
            }
        }
    }
}
