import Foundation
import PolicyLimits
import SQLiteNIO
import Testing
import TransactionPolicy

/// The embedded limit store: atomic reservations, releases, and totals that survive a restart.
@Suite struct SQLiteLimitStoreTests {
    static func temporaryPath() throws -> (directory: String, path: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fbhsm-limits-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return (directory, directory + "/limits.sqlite")
    }

    static func reservation(_ amount: String, client: String = "payouts", asset: String = "USDC", maximum: String = "1000",
                            seconds: Int64 = 86_400) -> WindowReservation {
        WindowReservation(client: client, rule: "usdc-payouts", assetId: asset, amount: ExactDecimal(amount)!,
                          window: RollingWindow(seconds: seconds, maximumTotal: ExactDecimal(maximum)!))
    }

    @Test func fiftyConcurrentReservationsNeverPassTheLimit() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        // 50 × 30.01 asked against 1000: exactly 33 fit (990.33), the 34th would make 1020.34.
        let decisions = try await withThrowingTaskGroup(of: LimitDecision.self) { group in
            for _ in 0..<50 {
                group.addTask { try await store.reserve(Self.reservation("30.01"), at: 1_000_000) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let reserved = decisions.compactMap { decision -> ExactDecimal? in
            if case .reserved(_, let total) = decision { return total }
            return nil
        }
        #expect(reserved.count == 33)
        #expect(reserved.max() == ExactDecimal("990.33"))
        #expect(Set(reserved).count == 33, "each reservation saw the one before it")
        await store.close()
    }

    /// A reload may change a rule's period: windows of two lengths over one client and asset
    /// count the same reservations, and neither misses one the other made.
    @Test func windowsOfTwoLengthsOverOneAssetSeeEachOthersReservations() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        let day: Int64 = 86_400, halfDay: Int64 = 43_200
        guard case .reserved = try await store.reserve(Self.reservation("900", seconds: day), at: 10_000) else {
            Issue.record("refused")
            return
        }
        guard case .reserved(_, let first) = try await store.reserve(Self.reservation("50", seconds: day), at: 10_001) else {
            Issue.record("refused")
            return
        }
        #expect(first == ExactDecimal("950"))
        // The policy now says 12 hours: the window is read from the file, 950 in it.
        guard case .reserved(_, let second) = try await store.reserve(Self.reservation("50", seconds: halfDay), at: 10_002) else {
            Issue.record("refused")
            return
        }
        #expect(second == ExactDecimal("1000"))
        // Back to 24 hours: the 1000 made under the 12-hour window count; nothing more fits.
        #expect(try await store.reserve(Self.reservation("1", seconds: day), at: 10_003) == .exceeded(total: ExactDecimal("1000")!))
        #expect(try await store.reserve(Self.reservation("1", seconds: halfDay), at: 10_004) == .exceeded(total: ExactDecimal("1000")!))
        await store.close()
    }

    @Test func aReleaseFreesTheAmountAndTheWindowRollsOn() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        guard case .reserved(let first, _) = try await store.reserve(Self.reservation("600"), at: 1000) else {
            Issue.record("the first reservation was refused")
            return
        }
        #expect(try await store.reserve(Self.reservation("400.000001"), at: 1001) == .exceeded(total: ExactDecimal("600")!))
        try await store.release(first)
        guard case .reserved = try await store.reserve(Self.reservation("1000"), at: 1002) else {
            Issue.record("the released amount still counts")
            return
        }
        #expect(try await store.reserve(Self.reservation("0.1"), at: 1002 + 86_399) == .exceeded(total: ExactDecimal("1000")!))
        guard case .reserved(_, let total) = try await store.reserve(Self.reservation("0.1"), at: 1002 + 86_400) else {
            Issue.record("a reservation a window old still counts")
            return
        }
        #expect(total == ExactDecimal("0.1"))
        // Per client and per asset.
        guard case .reserved = try await store.reserve(Self.reservation("999", client: "other"), at: 1002 + 86_400),
              case .reserved = try await store.reserve(Self.reservation("999", asset: "EURC"), at: 1002 + 86_400) else {
            Issue.record("another client's or asset's total was counted")
            return
        }
        await store.close()
    }

    @Test func twoStoresOnOneFileSeeEachOthersReservations() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await SQLiteLimitStore.open(path: path)
        let second = try await SQLiteLimitStore.open(path: path)
        // Each reads its window once, then learns of the other's writes (PRAGMA data_version).
        guard case .reserved = try await first.reserve(Self.reservation("400"), at: 100) else {
            Issue.record("refused")
            return
        }
        guard case .reserved(_, let seen) = try await second.reserve(Self.reservation("400"), at: 101) else {
            Issue.record("refused")
            return
        }
        #expect(seen == ExactDecimal("800"))
        #expect(try await first.reserve(Self.reservation("200.01"), at: 102) == .exceeded(total: ExactDecimal("800")!))
        guard case .reserved(_, let total) = try await first.reserve(Self.reservation("200"), at: 103) else {
            Issue.record("refused")
            return
        }
        #expect(total == ExactDecimal("1000"))
        #expect(try await second.reserve(Self.reservation("0.000001"), at: 104) == .exceeded(total: ExactDecimal("1000")!))
        await first.close()
        await second.close()
    }

    /// Runs `sql` on the store's file through a connection of its own, as another process would.
    static func onTheFile(_ path: String, _ sql: String) async throws {
        let connection = try await SQLiteConnection.open(storage: .file(path: path))
        do {
            _ = try await connection.query("PRAGMA busy_timeout = 10000")
            _ = try await connection.query(sql)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    static let refuseInserts = "CREATE TRIGGER refuse BEFORE INSERT ON window_reservations BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"

    /// The decision is returned before its commit; a commit that fails (here its insert,
    /// refused by a trigger another connection put on the table) throws from `wait()` and from
    /// `reserve`, and the reservation, which the window in memory had counted, does not count.
    @Test func aReservationWhoseCommitFailsDoesNotCount() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        guard case .reserved = try await store.reserve(Self.reservation("600"), at: 1000) else {
            Issue.record("refused")
            return
        }
        try await Self.onTheFile(path, Self.refuseInserts)
        let (decision, commit) = try await store.decide(Self.reservation("400"), at: 1001)
        guard case .reserved(_, let total) = decision else {
            Issue.record("refused before its commit: \(decision)")
            return
        }
        #expect(total == ExactDecimal("1000"))
        do {
            try await commit.wait()
            Issue.record("a commit the database refused was called durable")
        } catch {
            #expect(error.code == .failed, "\(error)")
            #expect(error.reason.contains("committed"), "\(error)")
        }
        await #expect(throws: LimitStoreError.self) { try await store.reserve(Self.reservation("1"), at: 1002) }
        try await Self.onTheFile(path, "DROP TRIGGER refuse")
        // Neither failed reservation counts, in this store or in one opened afresh.
        guard case .reserved(_, let after) = try await store.reserve(Self.reservation("400"), at: 1003) else {
            Issue.record("a reservation whose commit failed still counts")
            return
        }
        #expect(after == ExactDecimal("1000"))
        await store.close()
        let reopened = try await SQLiteLimitStore.open(path: path)
        #expect(try await reopened.reserve(Self.reservation("0.01"), at: 1004) == .exceeded(total: ExactDecimal("1000")!))
        await reopened.close()
    }

    @Test func totalsSurviveARestart() async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        _ = try await store.reserve(Self.reservation("900"), at: 5000)
        await store.close()
        let reopened = try await SQLiteLimitStore.open(path: path)
        #expect(try await reopened.reserve(Self.reservation("100.5"), at: 5001) == .exceeded(total: ExactDecimal("900")!))
        await reopened.close()
    }

    /// Whoever can write the store can lower its totals and so lift every limit: a store in a
    /// directory others can write, a database file others can write or own, or a link is
    /// refused, with the fix; a new database is made 0600.
    @Test(arguments: ["open directory", "open file", "other owner", "link"])
    func aStoreOthersCouldHaveWrittenIsRefused(change: String) async throws {
        let (directory, path) = try Self.temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteLimitStore.open(path: path)
        await store.close()
        var status = stat()
        #expect(stat(path, &status) == 0 && status.st_mode & 0o077 == 0, "a new store is private")
        switch change {
        case "open directory": chmod(directory, 0o777)
        case "open file": chmod(path, 0o666)
        case "other owner":
            guard getuid() == 0 else { return }
            chown(path, 65534, 65534)
        default:
            try FileManager.default.moveItem(atPath: path, toPath: path + ".real")
            try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: path + ".real")
        }
        do {
            _ = try await SQLiteLimitStore.open(path: path)
            Issue.record("\(change): the store was opened")
        } catch {
            #expect(error.code == .untrusted, "\(error)")
            #expect(error.reason.contains("cannot be trusted"), "\(error)")
        }
    }

    @Test func aStoreThatCannotBeOpenedSaysWhere() async throws {
        do {
            _ = try await SQLiteLimitStore.open(path: "/nonexistent-directory/limits.sqlite")
            Issue.record("opened a store in a directory that does not exist")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.path == "/nonexistent-directory/limits.sqlite")
        }
    }
}
