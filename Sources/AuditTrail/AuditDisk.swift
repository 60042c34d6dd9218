import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import Synchronization

/// How much space the audit directory's filesystem must have free for new work to start: an
/// operation whose record could not be written must not begin, and one whose record is cut
/// short by a full disk half-way is worse than one refused up front. The threshold is a reserve,
/// not a quota: the records of work already under way (its outcome, a failure, a checkpoint)
/// still use it.
public enum AuditDiskThreshold: Sendable, Hashable, CustomStringConvertible {
    /// The smaller of 1 GiB and 5 % of the filesystem's size: 1 GiB on any disk of 20 GiB or
    /// more, and still usable on a small one (a test's tmpfs, a small dedicated volume).
    case standard
    /// At least this many bytes; 0 turns the check off.
    case bytes(Int64)
    /// At least this share of the filesystem's size, in percent (more than 0, at most 100).
    case percent(Double)

    /// The standard threshold's absolute part.
    public static let standardBytes: Int64 = 1 << 30
    /// The standard threshold's share of the filesystem, in percent.
    public static let standardPercent: Double = 5

    /// A size (`2GiB`, `500MiB`, `1073741824`, `0`; `K`/`KB`/`KiB` and so on up to `T` are
    /// binary multiples, in any case) or a share of the filesystem (`10%`, `0.5%`); nil for
    /// anything else, a negative or fractional size, or a share over 100 %.
    public init?(parsing text: String) {
        if text.hasSuffix("%") {
            let number = text.dropLast()
            // Digits and at most one point: no exponent, sign, inf or nan.
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  number.filter({ $0 == "." }).count <= 1, let value = Double(number), value > 0, value <= 100 else { return nil }
            self = .percent(value)
            return
        }
        let units: [(suffix: String, shift: Int64)] = [
            ("kib", 10), ("mib", 20), ("gib", 30), ("tib", 40), ("kb", 10), ("mb", 20), ("gb", 30), ("tb", 40),
            ("k", 10), ("m", 20), ("g", 30), ("t", 40), ("b", 0),
        ]
        let lowered = text.lowercased()
        var digits = Substring(lowered)
        var shift: Int64 = 0
        for unit in units where lowered.hasSuffix(unit.suffix) {
            digits = lowered.dropLast(unit.suffix.count)
            shift = unit.shift
            break
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let count = Int64(digits) else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: Int64(1) << shift)
        guard !overflow else { return nil }
        self = .bytes(bytes)
    }

    /// The bytes that must stay free on a filesystem of `filesystemBytes` (rounded up).
    public func minimumFreeBytes(filesystemBytes: Int64) -> Int64 {
        switch self {
        case .standard:
            return min(Self.standardBytes, Self.share(Self.standardPercent, of: filesystemBytes))
        case .bytes(let bytes):
            return max(0, bytes)
        case .percent(let percent):
            return Self.share(percent, of: filesystemBytes)
        }
    }

    private static func share(_ percent: Double, of total: Int64) -> Int64 {
        let value = (Double(max(0, total)) * min(max(percent, 0), 100) / 100).rounded(.up)
        return value >= Double(Int64.max) ? Int64.max : Int64(value)
    }

    /// `1 GiB or 5 % of the filesystem, whichever is smaller`, `2 GiB`, `10 %`.
    public var description: String {
        switch self {
        case .standard: return "\(AuditDiskSpace.format(Self.standardBytes)) or \(Self.percentText(Self.standardPercent)) of the filesystem, whichever is smaller"
        case .bytes(let bytes): return AuditDiskSpace.format(bytes)
        case .percent(let percent): return "\(Self.percentText(percent)) of the filesystem"
        }
    }

    private static func percentText(_ percent: Double) -> String {
        percent == percent.rounded() ? "\(Int(percent)) %" : "\(percent) %"
    }

    /// The threshold this process's operations keep (``standard`` unless the program set
    /// another, as the command line does from its options): read when an audit trail is opened
    /// for an operation.
    public static var processWide: AuditDiskThreshold {
        get { configured.withLock { $0 } }
        set { configured.withLock { $0 = newValue } }
    }

    private static let configured = Mutex<AuditDiskThreshold>(.standard)
}

/// What the audit directory's filesystem has free, as `statvfs` tells it.
public struct AuditDiskSpace: Sendable, Hashable {
    /// The directory measured: the audit directory, or its nearest existing parent before the
    /// directory is made.
    public let path: String
    /// Bytes a writer without root's reserve can still use (`f_bavail × f_frsize`).
    public let availableBytes: Int64
    /// The filesystem's size (`f_blocks × f_frsize`).
    public let totalBytes: Int64

    /// A measurement (for tests and callers that measure otherwise).
    public init(path: String, availableBytes: Int64, totalBytes: Int64) {
        self.path = path
        self.availableBytes = availableBytes
        self.totalBytes = totalBytes
    }

    /// Measures the filesystem holding `directory` (or, while it does not exist, the one its
    /// nearest existing parent is on, where it will be made). Throws
    /// ``AuditError/Code/unreadable`` when the filesystem cannot be asked.
    public static func measure(_ directory: String) throws -> AuditDiskSpace {
        var path = directory.isEmpty ? "." : directory
        while true {
            var status = statvfs()
            if statvfs(path, &status) == 0 {
                let unit = Int64(clamping: UInt64(status.f_frsize))
                let (available, availableOverflow) = Int64(clamping: UInt64(status.f_bavail)).multipliedReportingOverflow(by: unit)
                let (total, totalOverflow) = Int64(clamping: UInt64(status.f_blocks)).multipliedReportingOverflow(by: unit)
                return AuditDiskSpace(path: path, availableBytes: availableOverflow ? .max : available, totalBytes: totalOverflow ? .max : total)
            }
            let code = errno
            guard code == ENOENT, let parent = Self.parent(of: path) else {
                throw AuditError(.unreadable, "cannot measure the free space of \(path) (\(String(cString: strerror(code))))",
                                 facts: .init(path: path))
            }
            path = parent
        }
    }

    private static func parent(of path: String) -> String? {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard trimmed != "/", trimmed != "." else { return nil }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The bytes `threshold` keeps free on this filesystem.
    public func minimumFreeBytes(_ threshold: AuditDiskThreshold) -> Int64 {
        threshold.minimumFreeBytes(filesystemBytes: totalBytes)
    }

    /// Whether less than `threshold` is free.
    public func isBelow(_ threshold: AuditDiskThreshold) -> Bool {
        availableBytes < minimumFreeBytes(threshold)
    }

    /// `812.3 MiB`, `2 GiB`, `512 bytes`: binary units, one decimal when it is not whole.
    public static func format(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        guard bytes >= 1024 else { return "\(bytes) bytes" }
        var unit = 0
        var divisor: Int64 = 1024
        while unit + 1 < units.count, bytes / divisor >= 1024 {
            unit += 1
            divisor <<= 10
        }
        // Tenths, rounded down (never shows more space than there is).
        let whole = bytes / divisor
        let tenths = min(9, Int64((Double(bytes % divisor) * 10 / Double(divisor)).rounded(.down)))
        return tenths == 0 ? "\(whole) \(units[unit])" : "\(whole).\(tenths) \(units[unit])"
    }
}

/// The audit disk as a long-running process watches it (the signing proxy, before every
/// request): a measurement is reused for `interval` (one `statvfs` a second, however many
/// requests), and taken again at once after ``invalidate()`` (a record that could not be
/// written). When the disk has room again, the next measurement says so: nothing needs a restart.
public final class AuditDiskMonitor: Sendable {
    /// The directory watched.
    public let directory: String
    /// The threshold kept.
    public let threshold: AuditDiskThreshold
    private let interval: Duration
    private let measure: @Sendable (String) throws -> AuditDiskSpace
    private let last = Mutex<(at: ContinuousClock.Instant, reading: Reading)?>(nil)

    /// A reading: the space measured, or why it could not be (then the disk counts as low:
    /// what cannot be measured cannot be relied on).
    public struct Reading: Sendable, Hashable {
        /// The measurement, when there is one.
        public let space: AuditDiskSpace?
        /// Why there is none.
        public let failure: String?
        /// The bytes the threshold keeps free (nil without a measurement).
        public let minimumFreeBytes: Int64?

        /// Whether new work must be refused: less free than the threshold, or not measurable.
        public var isLow: Bool {
            guard let space, let minimumFreeBytes else { return true }
            return space.availableBytes < minimumFreeBytes
        }
    }

    /// Watches `directory` against `threshold`, measuring with `measure` (``AuditDiskSpace/measure(_:)``
    /// unless a test gives another).
    public init(directory: String, threshold: AuditDiskThreshold, interval: Duration = .seconds(1),
                measure: @escaping @Sendable (String) throws -> AuditDiskSpace = { try AuditDiskSpace.measure($0) }) {
        self.directory = directory
        self.threshold = threshold
        self.interval = interval
        self.measure = measure
    }

    /// The latest reading, measured again when the last one is older than the interval.
    public var reading: Reading {
        let now = ContinuousClock.now
        if let cached = last.withLock({ $0 }), cached.at.duration(to: now) < interval { return cached.reading }
        let reading: Reading
        do {
            let space = try measure(directory)
            reading = Reading(space: space, failure: nil, minimumFreeBytes: space.minimumFreeBytes(threshold))
        } catch {
            reading = Reading(space: nil, failure: "\(error)", minimumFreeBytes: nil)
        }
        last.withLock { $0 = (now, reading) }
        return reading
    }

    /// Forgets the last reading: the next one measures (after a write failed, the disk may
    /// have filled up since).
    public func invalidate() {
        last.withLock { $0 = nil }
    }
}
