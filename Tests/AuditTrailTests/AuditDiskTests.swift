import AuditTrail
import Foundation
import SoftHSMTestSupport
import Synchronization
import Testing

/// The audit disk's threshold (parsed, and the smaller of 1 GiB and 5 % by default), its
/// measurement (against coreutils' `stat -f`), and the proxy's cached watch of it.
@Suite("Audit log: free space on its disk")
struct AuditDiskTests {
    private static let gib: Int64 = 1 << 30
    private static let mib: Int64 = 1 << 20

    @Test(arguments: [
        ("2GiB", AuditDiskThreshold.bytes(2 << 30)), ("2gib", .bytes(2 << 30)), ("2G", .bytes(2 << 30)), ("2GB", .bytes(2 << 30)),
        ("500MiB", .bytes(500 << 20)), ("512K", .bytes(512 << 10)), ("1TiB", .bytes(1 << 40)), ("1073741824", .bytes(1 << 30)),
        ("4096B", .bytes(4096)), ("0", .bytes(0)), ("10%", .percent(10)), ("0.5%", .percent(0.5)), ("100%", .percent(100)),
    ])
    func aThresholdIsASizeOrAShare(text: String, expected: AuditDiskThreshold) {
        #expect(AuditDiskThreshold(parsing: text) == expected)
    }

    @Test(arguments: ["", "%", "0%", "101%", "-1", "-5%", "1.5GiB", "GiB", "1e3", "1e1%", "nan%", "inf%", "+5%", "2 GiB", " 2GiB",
                      "9223372036854775807GiB", "99999999999999999999", "１GiB", "5%%", "1..5%", "12parsecs"])
    func anythingElseIsRefused(text: String) {
        #expect(AuditDiskThreshold(parsing: text) == nil, "\(text)")
    }

    @Test func theStandardThresholdIsTheSmallerOfOneGiBAndFivePercent() {
        let standard = AuditDiskThreshold.standard
        // 5 % of 100 GiB is 5 GiB: 1 GiB. 5 % of 20 GiB is exactly 1 GiB.
        #expect(standard.minimumFreeBytes(filesystemBytes: 100 * Self.gib) == Self.gib)
        #expect(standard.minimumFreeBytes(filesystemBytes: 20 * Self.gib) == Self.gib)
        // 5 % of 10 GiB is 512 MiB; of a 4 MiB tmpfs, 209,716 bytes (rounded up).
        #expect(standard.minimumFreeBytes(filesystemBytes: 10 * Self.gib) == 512 * Self.mib)
        #expect(standard.minimumFreeBytes(filesystemBytes: 4 * Self.mib) == 209_716)
        #expect(standard.minimumFreeBytes(filesystemBytes: 0) == 0)
        #expect(AuditDiskThreshold.percent(10).minimumFreeBytes(filesystemBytes: 1000) == 100)
        #expect(AuditDiskThreshold.percent(100).minimumFreeBytes(filesystemBytes: 1000) == 1000)
        #expect(AuditDiskThreshold.bytes(2 * Self.gib).minimumFreeBytes(filesystemBytes: Self.gib) == 2 * Self.gib, "a size is a size, whatever the disk")
        #expect(AuditDiskThreshold.percent(100).minimumFreeBytes(filesystemBytes: .max) == .max)
    }

    @Test func aDiskIsLowWhenLessThanTheThresholdIsFree() {
        // statvfs values as a 10 GiB disk with 600 MiB free would give (512 MiB kept free).
        let disk = AuditDiskSpace(path: "/var/lib/audit", availableBytes: 600 * Self.mib, totalBytes: 10 * Self.gib)
        #expect(!disk.isBelow(.standard))
        #expect(disk.isBelow(.bytes(Self.gib)))
        #expect(disk.isBelow(.percent(10)))
        #expect(!disk.isBelow(.bytes(0)))
        #expect(!disk.isBelow(.bytes(600 * Self.mib)), "exactly the threshold free is enough")
        #expect(disk.isBelow(.bytes(600 * Self.mib + 1)))
        let full = AuditDiskSpace(path: "/var/lib/audit", availableBytes: 0, totalBytes: 10 * Self.gib)
        #expect(full.isBelow(.standard) && !full.isBelow(.bytes(0)))
    }

    @Test func sizesAreShownInBinaryUnitsNeverRoundedUp() {
        #expect(AuditDiskSpace.format(512) == "512 bytes")
        #expect(AuditDiskSpace.format(1024) == "1 KiB")
        #expect(AuditDiskSpace.format(1536) == "1.5 KiB")
        #expect(AuditDiskSpace.format(Self.gib - 1) == "1023.9 MiB")
        #expect(AuditDiskSpace.format(851_705_856) == "812.2 MiB")
        #expect(AuditDiskSpace.format(5 * Self.gib) == "5 GiB")
        #expect(AuditDiskThreshold.standard.description == "1 GiB or 5 % of the filesystem, whichever is smaller")
        #expect(AuditDiskThreshold.percent(0.5).description == "0.5 % of the filesystem")
    }

    @Test(.enabled(if: Subprocess.isAvailable("stat")))
    func theMeasurementIsWhatStatvfsSaysOfTheNearestExistingDirectory() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Not made yet: its parent's filesystem is where it will be.
        let space = try AuditDiskSpace.measure(directory.path + "/audit/not-yet")
        #expect(space.path == directory.path)
        // coreutils' reading of the same filesystem: blocks available to non-root, total, and
        // the fundamental block size (f_frsize).
        let stat = try Subprocess.run("stat", ["-f", "-c", "%a %b %S", directory.path])
        let fields = stat.standardOutput.split(separator: " ").compactMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(fields.count == 3, "\(stat.standardOutput)")
        #expect(space.totalBytes == fields[1] * fields[2])
        // Others write to this disk meanwhile: the free space agrees within 256 MiB.
        #expect(abs(space.availableBytes - fields[0] * fields[2]) < 256 * Self.mib, "\(space) vs \(fields)")
    }

    @Test(.enabled(if: SmallFilesystem.isAvailable))
    func aSmallFilesystemFilledUpIsLowAndEmptiedIsNot() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID())").path
        let disk = try SmallFilesystem(at: root, bytes: 4 << 20)
        defer {
            disk.unmount()
            try? FileManager.default.removeItem(atPath: root)
        }
        let empty = try AuditDiskSpace.measure(root)
        #expect(empty.totalBytes == 4 * Self.mib && empty.availableBytes == 4 * Self.mib, "\(empty)")
        #expect(!empty.isBelow(.standard))
        try disk.fill(leaving: 64 << 10)
        let full = try AuditDiskSpace.measure(root)
        #expect(full.availableBytes <= 64 << 10)
        #expect(full.isBelow(.standard), "under 5 % of 4 MiB")
        try disk.empty()
        let emptied = try AuditDiskSpace.measure(root)
        #expect(!emptied.isBelow(.standard))
    }

    /// A disk whose free space the test sets, counting how often it is measured.
    private final class FakeDisk: Sendable {
        let measured = Mutex(0)
        let free = Mutex<Int64>(0)

        func measure(_ path: String) -> AuditDiskSpace {
            measured.withLock { $0 += 1 }
            return AuditDiskSpace(path: path, availableBytes: free.withLock { $0 }, totalBytes: 10 * AuditDiskTests.gib)
        }
    }

    @Test func theWatchMeasuresOnceAnIntervalAndAgainWhenToldTo() {
        let disk = FakeDisk()
        disk.free.withLock { $0 = 600 * Self.mib }
        let monitor = AuditDiskMonitor(directory: "/audit", threshold: .standard, interval: .seconds(3600)) { disk.measure($0) }
        #expect(!monitor.reading.isLow)
        #expect(monitor.reading.minimumFreeBytes == 512 * Self.mib)
        #expect(disk.measured.withLock { $0 } == 1, "the second reading is the first one's, within the interval")
        disk.free.withLock { $0 = 100 * Self.mib }
        #expect(!monitor.reading.isLow, "still the cached reading")
        monitor.invalidate()
        #expect(monitor.reading.isLow, "a write failed: measured again at once")
        #expect(disk.measured.withLock { $0 } == 2)
        disk.free.withLock { $0 = Self.gib }
        monitor.invalidate()
        #expect(!monitor.reading.isLow, "room again: served again, no restart")
    }

    @Test func aDiskThatCannotBeMeasuredCountsAsLow() {
        let monitor = AuditDiskMonitor(directory: "/audit", threshold: .bytes(0), interval: .zero) { path in
            throw AuditError(.unreadable, "cannot measure \(path)")
        }
        let reading = monitor.reading
        #expect(reading.isLow && reading.space == nil && reading.failure?.contains("cannot measure /audit") == true)
    }
}
