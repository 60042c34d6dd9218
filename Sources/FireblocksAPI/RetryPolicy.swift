#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// When and how long to wait before sending a request again.
///
/// Retried: network failures, timeouts, 5xx and 429 (honouring `Retry-After`), with
/// exponential backoff and jitter, a bounded number of times. Only requests that are safe to
/// repeat are retried: GET, and anything carrying an `Idempotency-Key`.
public struct RetryPolicy: Sendable {
    /// Sends in total, the first included.
    public var maximumAttempts: Int
    /// The initial delay.
    public var initialDelay: TimeInterval
    /// The maximum delay.
    public var maximumDelay: TimeInterval
    /// A longer `Retry-After` is cut to this.
    public var maximumRetryAfter: TimeInterval

    /// Creates the value from its parts.
    public init(maximumAttempts: Int = 4, initialDelay: TimeInterval = 0.5, maximumDelay: TimeInterval = 8,
                maximumRetryAfter: TimeInterval = 30) {
        self.maximumAttempts = max(1, maximumAttempts)
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.maximumRetryAfter = maximumRetryAfter
    }

    /// No retries.
    public static let never = RetryPolicy(maximumAttempts: 1)

    /// True for statuses worth another try.
    public static func isRetryable(status: Int) -> Bool {
        // 501 and 505 will not change on their own.
        status == 429 || ((500...599).contains(status) && status != 501 && status != 505)
    }

    /// The wait before attempt `attempt + 1`: `Retry-After` when the server gave one, otherwise
    /// half of the exponential step plus a random half (so clients that failed together do not
    /// retry together).
    public func delay(afterAttempt attempt: Int, retryAfter: TimeInterval?) -> TimeInterval {
        if let retryAfter { return min(retryAfter, maximumRetryAfter) }
        let step = min(maximumDelay, initialDelay * Double(sign: .plus, exponent: max(-64, min(attempt, 64)) - 1, significand: 1))
        return step / 2 + Double.random(in: 0...(step / 2))
    }
}
