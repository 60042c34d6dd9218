import ProxySettings
import AsyncHTTPClient
import FireblocksAPI
import FireblocksHSM
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// `bench proxy`: what the proxy adds. The same requests, from the same number of concurrent
/// clients, first sent directly (a JWT signed through the proxy's own pool, then the request)
/// and then through the proxy; the difference of the medians is the proxy's added latency.
public enum ProxyBenchmark {
    /// What a run measured.
    public struct Result: Sendable, Codable, Equatable {
        /// Requests per second sent directly, each with a JWT signed through the pool.
        public let directRequestsPerSecond: Double
        /// Requests per second through the proxy.
        public let proxiedRequestsPerSecond: Double
        /// Median latency, direct, milliseconds.
        public let directP50Ms: Double
        /// Median latency through the proxy, milliseconds.
        public let proxiedP50Ms: Double
        /// 99th percentile, direct.
        public let directP99Ms: Double
        /// 99th percentile, through the proxy.
        public let proxiedP99Ms: Double
        /// `proxiedP50Ms - directP50Ms`: what the proxy adds over signing and sending yourself.
        public let addedLatencyP50Ms: Double
        /// Concurrent clients.
        public let workers: Int
        /// Requests measured through the proxy.
        public let proxiedRequests: Int
        /// The request each client repeated.
        public let request: String
    }

    /// Starts a proxy (loopback, any port) allowing `GET path`, measures, and stops it.
    public static func run(upstream: APIBaseURL, apiKey: String, path: String, token: TokenTarget, auditDirectory: URL,
                           workers: Int, duration: Duration, observer: any OperationObserver) async throws -> Result {
        var logger = Logger(label: "fireblocks-hsm.bench")
        logger.logLevel = .error
        let uri = try upstream.resolve(path: path).uri
        var configuration = ProxyConfiguration(listen: .loopback(host: "127.0.0.1", port: 0), upstream: upstream, apiKey: apiKey,
                                               rules: [try AllowRule(parsing: "GET " + (uri.split(separator: "?").first.map(String.init) ?? uri))])
        configuration.checkpointEvery = 1_000_000
        let proxy = try await SigningProxy.start(configuration: configuration, token: token, auditDirectory: auditDirectory,
                                                 poolSize: workers, observer: observer, logger: logger)
        let client = HTTPClient(eventLoopGroupProvider: .singleton,
                                configuration: .init(redirectConfiguration: .disallow, decompression: .disabled))
        do {
            guard case .loopback(_, let port) = proxy.address else { throw ProxyConfigurationError("the proxy did not bind a port") }
            let issuer = try RequestTokenIssuer(apiKey: apiKey, signer: PoolJWTSigner(proxy.pool))
            let direct: @Sendable () async throws -> Int = {
                var request = HTTPClientRequest(url: upstream.origin + uri)
                request.headers.add(name: "X-API-Key", value: apiKey)
                let jwt = try await issuer.token(uri: uri, body: nil, issuedAt: Int(Date().timeIntervalSince1970),
                                                 nonce: UUID().uuidString.lowercased())
                request.headers.add(name: "Authorization", value: "Bearer \(jwt)")
                let response = try await client.execute(request, timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 24)
                return Int(response.status.code)
            }
            let proxied: @Sendable () async throws -> Int = {
                let response = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(uri)"), timeout: .seconds(30))
                _ = try await response.body.collect(upTo: 1 << 24)
                return Int(response.status.code)
            }
            let directRun = try await measure(direct, workers: workers, duration: duration)
            let proxiedRun = try await measure(proxied, workers: workers, duration: duration)
            try await client.shutdown()
            await proxy.shutdown()
            return Result(directRequestsPerSecond: directRun.rate, proxiedRequestsPerSecond: proxiedRun.rate,
                          directP50Ms: directRun.p50, proxiedP50Ms: proxiedRun.p50, directP99Ms: directRun.p99, proxiedP99Ms: proxiedRun.p99,
                          addedLatencyP50Ms: proxiedRun.p50 - directRun.p50, workers: workers, proxiedRequests: proxiedRun.count,
                          request: "GET \(uri)")
        } catch {
            try? await client.shutdown()
            await proxy.shutdown()
            throw error
        }
    }

    private static func measure(_ send: @escaping @Sendable () async throws -> Int, workers: Int,
                                duration: Duration) async throws -> (rate: Double, p50: Double, p99: Double, count: Int) {
        // Warm-up: connections made, sessions opened.
        _ = try await loop(send, workers: workers, until: .now + min(.milliseconds(500), duration / 4))
        let start = ContinuousClock.now
        let latencies = try await loop(send, workers: workers, until: start + duration).sorted()
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        func percentile(_ fraction: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            return latencies[min(latencies.count - 1, max(0, Int((fraction * Double(latencies.count)).rounded(.up)) - 1))]
        }
        return (Double(latencies.count) / seconds, percentile(0.5), percentile(0.99), latencies.count)
    }

    private static func loop(_ send: @escaping @Sendable () async throws -> Int, workers: Int,
                             until deadline: ContinuousClock.Instant) async throws -> [Double] {
        try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<workers {
                group.addTask {
                    var latencies: [Double] = []
                    while ContinuousClock.now < deadline {
                        let started = ContinuousClock.now
                        let status = try await send()
                        guard (200...299).contains(status) else {
                            throw ProxyConfigurationError("the benchmark's request was answered HTTP \(status)")
                        }
                        let elapsed = started.duration(to: .now)
                        latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                    }
                    return latencies
                }
            }
            var all: [Double] = []
            for try await latencies in group { all += latencies }
            return all
        }
    }
}
