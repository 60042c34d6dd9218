import Foundation
import Logging
import PolicyLimits
import SoftHSMTestSupport
import Testing
import TransactionPolicy

/// The shared limit store against a real PostgreSQL server started for the suite (nothing
/// mocked). Disabled only outside CI on a machine without the server; in CI it always runs.
@Suite(.enabled(if: ThrowawayPostgres.available, "needs Debian's postgresql package (ci/install-deps); runs always in CI"),
       .serialized)
final class PostgresLimitStoreTests {
    let server: ThrowawayPostgres
    let logger = Logger(label: "test.policy-limits")

    init() throws { server = try ThrowawayPostgres() }
    deinit { server.stop() }

    func open() async throws -> PostgresLimitStore {
        try await PostgresLimitStore.open(try PostgresLocation(parsing: server.location), password: server.password, logger: logger)
    }

    @Test func twoProxiesSharingOneLimitNeverPassItTogether() async throws {
        let first = try await open()
        let second = try await open()
        // 50 × 30.01 against 1000, half through each store at once: exactly 33 fit.
        let decisions = try await withThrowingTaskGroup(of: LimitDecision.self) { group in
            for index in 0..<50 {
                let store = index.isMultiple(of: 2) ? first : second
                group.addTask { try await store.reserve(SQLiteLimitStoreTests.reservation("30.01"), at: 1_000_000) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let totals = decisions.compactMap { decision -> ExactDecimal? in
            if case .reserved(_, let total) = decision { return total }
            return nil
        }
        #expect(totals.count == 33)
        #expect(totals.max() == ExactDecimal("990.33"))
        #expect(Set(totals).count == 33)
        await first.close()
        await second.close()
    }

    @Test func aReleaseAndARestartAreSeenByEveryProxy() async throws {
        let first = try await open()
        let reservation = SQLiteLimitStoreTests.reservation("600", client: "restart")
        guard case .reserved(let id, _) = try await first.reserve(reservation, at: 2000) else {
            Issue.record("refused")
            return
        }
        await first.close()
        let second = try await open()
        #expect(try await second.reserve(SQLiteLimitStoreTests.reservation("400.01", client: "restart"), at: 2001)
                == .exceeded(total: ExactDecimal("600")!))
        try await second.release(id)
        guard case .reserved(_, let total) = try await second.reserve(SQLiteLimitStoreTests.reservation("1000", client: "restart"), at: 2002) else {
            Issue.record("the released amount still counts")
            return
        }
        #expect(total == ExactDecimal("1000"))
        await second.close()
    }

    @Test func aWrongPasswordIsRefusedWithoutSayingIt() async throws {
        do {
            let store = try await PostgresLimitStore.open(try PostgresLocation(parsing: server.location), password: "wrong-secret-123",
                                                          logger: logger)
            await store.close()
            Issue.record("a wrong password was accepted")
        } catch {
            #expect(error.code == .unavailable)
            #expect(!error.reason.contains("wrong-secret-123"))
            #expect(!error.reason.contains(server.password))
        }
    }
}

/// What a PostgreSQL store's address may be.
@Suite struct PostgresLocationTests {
    @Test func aPasswordInTheAddressIsRefusedAndNotRepeated() {
        do {
            _ = try PostgresLocation(parsing: "postgres://limits:hunter2secret@127.0.0.1/limits")
            Issue.record("a password in the address was accepted")
        } catch {
            #expect(error.code == .badLocation)
            #expect(!error.reason.contains("hunter2secret"))
            #expect(error.reason.contains("PGPASSWORD"))
        }
    }

    @Test func addresses() throws {
        let tcp = try PostgresLocation(parsing: "postgres://limits@127.0.0.1:6432/limits")
        #expect(tcp.host == "127.0.0.1" && tcp.port == 6432 && tcp.database == "limits" && tcp.user == "limits")
        let socket = try PostgresLocation(parsing: "postgres://limits@/limits?host=/run/postgresql")
        #expect(socket.host == nil && socket.socketDirectory == "/run/postgresql" && socket.port == 5432)
        for bad in ["postgres://127.0.0.1/limits", "postgres://u@127.0.0.1/", "mysql://u@127.0.0.1/x", "postgres://u@db.example/limits",
                    "postgres://u@/limits", "postgres://u@127.0.0.1/x?sslmode=disable"] {
            #expect(throws: LimitStoreError.self, "\(bad)") { try PostgresLocation(parsing: bad) }
        }
    }
}
