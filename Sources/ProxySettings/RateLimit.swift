import ErrorShape
import Synchronization

/// A rate limit (`20/s`): a token bucket (burst = one second's worth, at least 1).
public final class RateLimit: Sendable {
    /// Requests per second.
    public let perSecond: Double
    private let bucket: Mutex<(tokens: Double, at: ContinuousClock.Instant)>

    /// Parses `N/s`, `N/m` or `N/h`.
    public init(parsing text: String) throws(ProxySettingError) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let count = Double(parts[0]), count.isFinite, count > 0, count <= 1_000_000 else {
            throw ProxySettingError(.rate, "'\(text)' is not N/s, N/m or N/h with N from 1 to 1000000 (e.g. 20/s)")
        }
        let seconds: Double
        switch parts[1] {
        case "s": seconds = 1
        case "m": seconds = 60
        case "h": seconds = 3600
        default: throw ProxySettingError(.rate, "'\(text)': the unit is s, m or h")
        }
        perSecond = count / seconds
        bucket = Mutex((max(1, perSecond), ContinuousClock.now))
    }

    /// Takes a token; otherwise the seconds until one is there.
    public func take() -> Double? {
        bucket.withLock { bucket in
            let now = ContinuousClock.now
            let elapsed = Double(bucket.at.duration(to: now).components.seconds) + Double(bucket.at.duration(to: now).components.attoseconds) / 1e18
            bucket.tokens = min(max(1, perSecond), bucket.tokens + elapsed * perSecond)
            bucket.at = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / perSecond
        }
    }
}

