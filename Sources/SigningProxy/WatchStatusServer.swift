import FireblocksHSM
import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus
import ProxySettings
import ServiceLifecycle
import Synchronization

/// `approvals watch --listen`: `/healthz` and `/metrics` for systemd and monitoring, on a
/// loopback address or a unix socket (the same places, and the same checks, as `serve`'s),
/// served by Hummingbird with the connection policy `serve` uses. It answers nothing else and
/// acts on nothing: it reports what the watch loop tells it (``WatchEvents``).
public final class WatchStatusServer: WatchEvents, Sendable {
    /// Where it listens (with the port actually bound).
    public let address: ListenAddress
    private let state: WatchStatusState
    private let group: ServiceGroup
    private let finished: Task<Void, Never>

    private init(address: ListenAddress, state: WatchStatusState, group: ServiceGroup, finished: Task<Void, Never>) {
        self.address = address
        self.state = state
        self.group = group
        self.finished = finished
    }

    /// Binds `listen` and serves; returns once the socket is bound. /healthz is 200 while the
    /// last pass succeeded and is at most `stale` old, else 503.
    public static func start(listen: ListenAddress, interval: TimeInterval, logger: Logger) async throws -> WatchStatusServer {
        let registry = PrometheusCollectorRegistry()
        // A pass takes `interval` ±20 %; three of them missed (or a minute past one) is stale.
        let state = WatchStatusState(registry: registry, stale: max(3 * interval * 1.2, interval * 1.2 + 60))
        let bindAddress: BindAddress
        switch listen {
        case .unix(let path):
            try UnixSocketPath.prepare(path)
            bindAddress = .unixDomainSocket(path: path)
        case .loopback(let host, let port):
            bindAddress = .hostname(host, port: port)
        }
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .warning)
        let bound = BoundAddress()
        let application = Application(
            responder: WatchStatusResponder(state: state),
            server: .http1(configuration: HTTP1Channel.Configuration(
                additionalChannelHandlers: [ConnectionPolicy(connections: ConnectionPolicy.Count(maximum: 16), deadline: .seconds(10),
                                                             log: { logger.warning("\($0)") })])),
            configuration: ApplicationConfiguration(address: bindAddress, serverName: nil),
            onServerRunning: { channel in bound.set(channel.localAddress) },
            logger: quiet)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [application], gracefulShutdownSignals: [], logger: quiet))
        let running = bound.run { try await group.run() }
        let finished = Task {
            _ = try? await running.value
            if case .unix(let path) = listen { unlink(path) }
        }
        switch await bound.wait() {
        case .success(let local):
            switch listen {
            case .unix(let path):
                chmod(path, 0o600)
                return WatchStatusServer(address: .unix(path: path), state: state, group: group, finished: finished)
            case .loopback(let host, _):
                return WatchStatusServer(address: .loopback(host: host, port: local.port ?? 0), state: state, group: group, finished: finished)
            }
        case .failure(let failure):
            await group.triggerGracefulShutdown()
            await finished.value
            throw ProxyConfigurationError(.cannotListen, "cannot listen on \(listen): \(failure.reason)")
        }
    }

    public func passed(_ pass: WatchPass, at time: Date) { state.passed(pass, at: time) }

    public func passFailed(_ reason: String, at time: Date) { state.passFailed(reason, at: time) }

    /// Stops serving (connections in flight finish) and removes a unix socket.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
        await finished.value
    }
}

/// What the watch loop reported, and its Prometheus counters.
final class WatchStatusState: Sendable {
    private struct Facts {
        var lastSuccess: Date?
        var lastFailure: (time: Date, reason: String)?
        var decisions: [String: Int] = [:]
    }

    private let facts = Mutex(Facts())
    let registry: PrometheusCollectorRegistry
    let stale: TimeInterval
    private let started = Date()
    private let pollsOK: Counter
    private let pollsFailed: Counter
    private let decisionCounters: [String: Counter]
    private let pollErrors: Counter
    private let decisionErrors: Counter
    private let lastSuccessGauge: Gauge

    /// The outcomes counted (a policy decides approve, reject or skip; an expired request is left).
    static let outcomes = ["approve", "reject", "skip", "expired"]

    init(registry: PrometheusCollectorRegistry, stale: TimeInterval) {
        self.registry = registry
        self.stale = stale
        // fireblocks_hsm_approvals_watch_<name>_<unit>
        func named(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "fireblocks_hsm", subsystem: "approvals_watch", metricName: name, unitName: unit, helpText: help)
        }
        let polls = named("polls", "total", "Passes of approvals watch (listing the pending requests), by result.")
        pollsOK = registry.makeCounter(descriptor: polls, labels: [("result", "ok")])
        pollsFailed = registry.makeCounter(descriptor: polls, labels: [("result", "failed")])
        let decisions = named("decisions", "total", "Requests decided by approvals watch and acted on, by outcome.")
        decisionCounters = Dictionary(uniqueKeysWithValues: Self.outcomes.map {
            ($0, registry.makeCounter(descriptor: decisions, labels: [("outcome", $0)]))
        })
        let errors = named("errors", "total",
                           "Errors of approvals watch: a pass that failed (tried again), or a decision that could not be carried out (left for people).")
        pollErrors = registry.makeCounter(descriptor: errors, labels: [("kind", "poll")])
        decisionErrors = registry.makeCounter(descriptor: errors, labels: [("kind", "decision")])
        lastSuccessGauge = registry.makeGauge(descriptor: named("last_success_timestamp", "seconds",
                                                                "When the last pass succeeded, epoch seconds (0: none yet)."))
    }

    func passed(_ pass: WatchPass, at time: Date) {
        pollsOK.increment()
        lastSuccessGauge.set(time.timeIntervalSince1970.rounded(.down))
        var counted: [String: Int] = [:]
        for decision in pass.decided {
            if decision.state == "done" {
                let outcome = Self.outcomes.contains(decision.decision) ? decision.decision : "skip"
                decisionCounters[outcome]?.increment()
                counted[outcome, default: 0] += 1
            } else {
                decisionErrors.increment()
                counted["failed", default: 0] += 1
            }
        }
        facts.withLock { facts in
            facts.lastSuccess = time
            facts.lastFailure = nil
            facts.decisions.merge(counted) { $0 + $1 }
        }
    }

    func passFailed(_ reason: String, at time: Date) {
        pollsFailed.increment()
        pollErrors.increment()
        facts.withLock { $0.lastFailure = (time, reason) }
    }

    /// /healthz: whether it is healthy, and the document.
    func health(now: Date = Date()) -> (ok: Bool, body: [UInt8]) {
        let facts = facts.withLock { $0 }
        var failing: String?
        if let failure = facts.lastFailure {
            failing = "the last pass failed: \(failure.reason)"
        } else if let success = facts.lastSuccess {
            if now.timeIntervalSince(success) > stale { failing = "no successful pass for \(Int(now.timeIntervalSince(success))) s" }
        } else {
            failing = "no successful pass yet"
        }
        var decisions: [String: Int] = Dictionary(uniqueKeysWithValues: (Self.outcomes + ["failed"]).map { ($0, 0) })
        decisions.merge(facts.decisions) { $1 }
        var document: [String: Any] = [
            "status": failing == nil ? "ok" : "failing: " + (failing ?? ""),
            "lastSuccessfulPoll": facts.lastSuccess.map { $0.formatted(.iso8601) as Any } ?? NSNull(),
            "lastSuccessfulPollEpoch": facts.lastSuccess.map { Int64($0.timeIntervalSince1970.rounded(.down)) as Any } ?? NSNull(),
            "staleAfterSeconds": Int(stale),
            "decisions": decisions,
            "decisionsMade": decisions.filter { $0.key != "failed" }.values.reduce(0, +),
        ]
        if let failure = facts.lastFailure {
            document["lastFailure"] = ["time": failure.time.formatted(.iso8601), "reason": failure.reason]
        }
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{\"status\":\"failing\"}".utf8)
        return (failing == nil, Array(data) + [0x0A])
    }
}

/// Answers GET /healthz and GET /metrics; 404 for anything else.
struct WatchStatusResponder: HTTPResponder {
    typealias Context = ProxyRequestContext
    let state: WatchStatusState

    func respond(to request: Request, context: Context) async throws -> Response {
        let target = request.head.path ?? "/"
        guard request.method == .get || request.method == .head else {
            return Response(status: .methodNotAllowed, headers: [.allow: "GET, HEAD"])
        }
        switch target {
        case "/healthz":
            let (ok, body) = state.health()
            return Response(status: ok ? .ok : .serviceUnavailable, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        case "/metrics":
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: state.registry.emitToBuffer())))
        default:
            return Response(status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: "approvals watch answers GET /healthz and GET /metrics only\n")))
        }
    }
}
