#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// Measures how far this host's clock is from the API's, from the `Date` header of responses.
///
/// `Date` has one-second resolution and the request takes time, so offsets within
/// ``threshold`` are treated as none.
public final class ClockSkewMonitor: Sendable {
    /// Smallest offset that counts as skew.
    public let threshold: TimeInterval
    private let measured = Mutex<TimeInterval?>(nil)

    /// Creates the value from its parts.
    public init(threshold: TimeInterval = 3) {
        self.threshold = threshold
    }

    /// Records a response's `Date`, taking the middle of the request as the local time it was
    /// written. Returns the offset (server minus local) when it exceeds the threshold.
    @discardableResult
    public func record(serverDate: Date, sentAt: Date, receivedAt: Date) -> TimeInterval? {
        let local = sentAt.addingTimeInterval(receivedAt.timeIntervalSince(sentAt) / 2)
        // Within a second either way: the server's Date is truncated to whole seconds.
        let offset = serverDate.timeIntervalSince(local)
        measured.withLock { $0 = offset }
        return abs(offset) > threshold ? offset : nil
    }

    /// The last measured offset when it exceeds the threshold (server minus local, seconds).
    public var significantOffset: TimeInterval? {
        measured.withLock { offset in
            guard let offset, abs(offset) > threshold else { return nil }
            return offset
        }
    }

    /// The last measured offset, whatever its size.
    public var lastOffset: TimeInterval? { measured.withLock { $0 } }
}
