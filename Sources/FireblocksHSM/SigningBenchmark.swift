import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys

/// `bench sign`: signatures through the ``SigningPool`` the proxy uses, from N concurrent
/// workers, for a fixed time after a warm-up.
public enum SigningBenchmark {
    /// What a run measured.
    public struct Result: Sendable, Codable, Equatable {
        /// Signatures per second over the measured window.
        public let signaturesPerSecond: Double
        /// Median latency of one signature (queueing for a session included), milliseconds.
        public let p50Ms: Double
        /// 99th percentile latency, milliseconds.
        public let p99Ms: Double
        /// Concurrent signers.
        public let workers: Int
        /// Sessions in the pool.
        public let poolSize: Int
        /// Signatures in the measured window.
        public let signatures: Int
        /// The measured window, seconds.
        public let durationSeconds: Double
        /// The key's modulus size.
        public let keyBits: Int
        /// Bytes signed each time.
        public let messageBytes: Int
        /// Signatures checked with the public key (the first of each worker, then one in 64).
        public let verified: Int
    }

    /// Opens the token, makes a pool of `workers` sessions and measures.
    /// - Parameter auditDirectory: where a refused login is recorded.
    public static func run(token target: TokenTarget, workers: Int, duration: Duration, messageBytes: Int,
                           auditDirectory: URL? = nil, observer: any OperationObserver) async throws -> Result {
        // The opened token stays with the pool until the end (its session keeps the login).
        let (opened, pool) = try await BlockingBridge.run {
            let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: auditDirectory)
            let pair = try KeyStore.findUsable(try target.requireKey(), in: opened.session)
            return (opened, try SigningPool(key: try UsableKey(pair, slot: opened.token.slot), pinSource: target.pinSource, size: workers))
        }
        defer {
            pool.close()
            withExtendedLifetime(opened) {}
        }
        return try await measure(pool: pool, workers: workers, duration: duration, messageBytes: messageBytes)
    }

    /// Measures an existing pool.
    public static func measure(pool: SigningPool, workers: Int, duration: Duration, messageBytes: Int) async throws -> Result {
        let message = [UInt8]((0..<messageBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let publicKey = pool.key.publicKey
        // Warm-up: every session opened and the token's caches filled, outside the window.
        let warmUp = min(Duration.seconds(1), duration / 4)
        _ = try await run(pool: pool, workers: workers, until: .now + warmUp, message: message, publicKey: publicKey)
        let start = ContinuousClock.now
        let perWorker = try await run(pool: pool, workers: workers, until: start + duration, message: message, publicKey: publicKey)
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let latencies = perWorker.flatMap(\.latencies).sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !latencies.isEmpty else { return 0 }
            let index = min(latencies.count - 1, max(0, Int((fraction * Double(latencies.count)).rounded(.up)) - 1))
            return latencies[index]
        }
        return Result(signaturesPerSecond: seconds > 0 ? Double(latencies.count) / seconds : 0,
                      p50Ms: percentile(0.50), p99Ms: percentile(0.99), workers: workers, poolSize: pool.size,
                      signatures: latencies.count, durationSeconds: seconds, keyBits: publicKey.bits, messageBytes: messageBytes,
                      verified: perWorker.map(\.verified).reduce(0, +))
    }

    private static func run(pool: SigningPool, workers: Int, until deadline: ContinuousClock.Instant, message: [UInt8],
                            publicKey: TokenRSAPublicKey) async throws -> [(latencies: [Double], verified: Int)] {
        try await withThrowingTaskGroup(of: (latencies: [Double], verified: Int).self) { group in
            for _ in 0..<workers {
                group.addTask {
                    var latencies: [Double] = []
                    var verified = 0
                    while ContinuousClock.now < deadline {
                        let started = ContinuousClock.now
                        let signature = try await pool.signRS256(message)
                        let elapsed = started.duration(to: .now)
                        latencies.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                        if latencies.count % 64 == 1 {
                            guard publicKey.isValidRS256Signature(signature, for: message) else {
                                throw OperationError(.signatureCheckFailed, "a signature from the pool does not verify with the key's public half")
                            }
                            verified += 1
                        }
                    }
                    return (latencies, verified)
                }
            }
            var results: [(latencies: [Double], verified: Int)] = []
            for try await result in group { results.append(result) }
            return results
        }
    }
}
