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
        for bad in ["postgres://127.0.0.1/limits", "postgres://u@127.0.0.1/", "mysql://u@127.0.0.1/x", "postgres://u@/limits",
                    "postgres://u@127.0.0.1/x?port=5432", "postgres://u@127.0.0.1/x?host=relative/dir"] {
            #expect(throws: LimitStoreError.self, "\(bad)") { try PostgresLocation(parsing: bad) }
        }
    }

    /// A host off loopback is reached over verified TLS or not at all; the weaker modes, and
    /// TLS files where no TLS is, are refused naming why.
    @Test func tlsIsVerifiedOffLoopbackAndNeverHalfway() throws {
        let remote = try PostgresLocation(parsing: "postgres://limits@db.example:6432/limits?sslrootcert=/etc/pg/ca.pem")
        #expect(remote.security == .verifyFull(rootCertificates: "/etc/pg/ca.pem", clientCertificate: nil, clientKey: nil), "verify-full by default")
        let pinned = try PostgresLocation(parsing: "postgresql://limits@db.example/limits?sslrootcert=/etc/pg/ca.pem&sslcert=/etc/pg/c.pem&sslkey=/etc/pg/c.key")
        #expect(pinned.security == .verifyFull(rootCertificates: "/etc/pg/ca.pem", clientCertificate: "/etc/pg/c.pem", clientKey: "/etc/pg/c.key"))
        #expect(pinned.description == "postgres://limits@db.example:5432/limits?sslmode=verify-full")
        #expect(try PostgresLocation(parsing: "postgres://u@127.0.0.1/x").security == .plain)
        #expect(try PostgresLocation(parsing: "postgres://u@127.0.0.1/x?sslmode=disable").security == .plain)
        #expect(try PostgresLocation(parsing: "postgres://u@localhost/x?sslmode=verify-full&sslrootcert=/ca.pem").security
                == .verifyFull(rootCertificates: "/ca.pem", clientCertificate: nil, clientKey: nil))
        for loopback in ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "[::1]", "[0:0:0:0:0:0:0:1]"] {
            #expect(try PostgresLocation(parsing: "postgres://u@\(loopback)/x").security == .plain, "\(loopback)")
        }
        let refused: [(String, String)] = [
            ("postgres://u@db.example/x?sslmode=disable", "not on loopback"),
            ("postgres://u@db.example/x", "needs sslrootcert"),
            ("postgres://u@db.example/x?sslmode=verify-full", "needs sslrootcert"),
            ("postgres://u@127.0.0.1.attacker.example/x", "needs sslrootcert"),
            ("postgres://u@127.db.example/x?sslmode=disable", "not on loopback"),
            ("postgres://u@localhost.attacker.example/x?sslmode=disable", "not on loopback"),
            ("postgres://u@[::ffff:127.0.0.1]/x?sslmode=disable", "not on loopback"),
            ("postgres://u@2130706433/x?sslmode=disable", "not on loopback"),
            ("postgres://u@db.example/x?sslrootcert", "has no value"),
            ("postgres://u@10.0.0.5/x?sslmode=disable", "not on loopback"),
            ("postgres://u@db.example/x?sslmode=require", "verify-full"),
            ("postgres://u@db.example/x?sslmode=verify-ca", "verify-full"),
            ("postgres://u@db.example/x?sslmode=prefer", "verify-full"),
            ("postgres://u@db.example/x?sslcert=/c.pem&sslrootcert=/ca.pem", "both sslcert and sslkey"),
            ("postgres://u@db.example/x?sslrootcert=ca.pem", "absolute path"),
            ("postgres://u@db.example/x?sslmode=verify-full&sslmode=disable", "twice"),
            ("postgres://u@127.0.0.1/x?sslrootcert=/ca.pem", "sslmode=verify-full"),
            ("postgres://u@127.0.0.1/x?sslmode=disable&sslrootcert=/ca.pem", "turns off"),
            ("postgres://u@/x?host=/run/postgresql&sslmode=verify-full", "unix socket"),
            ("postgres://u@/x?host=/run/postgresql&sslrootcert=/ca.pem", "unix socket"),
            ("postgres://u@db.example/x?password=hunter2secret", "parameters"),
        ]
        for (address, reason) in refused {
            do {
                _ = try PostgresLocation(parsing: address)
                Issue.record("accepted: \(address)")
            } catch {
                #expect(error.code == .badLocation && error.reason.contains(reason), "\(address): \(error.reason)")
                #expect(!error.reason.contains("hunter2secret"))
            }
        }
    }
}

/// The shared store over TLS, against a real server that takes TCP connections over TLS only
/// (so a store that opens was encrypted) and checks client certificates.
@Suite(.enabled(if: ThrowawayPostgres.available, "needs Debian's postgresql package (ci/install-deps); runs always in CI"),
       .serialized)
final class PostgresTLSTests {
    let server: ThrowawayPostgres
    let logger = Logger(label: "test.policy-limits.tls")

    init() throws { server = try ThrowawayPostgres(tls: true, clientCertificates: true) }
    deinit { server.stop() }

    var files: ThrowawayPostgres.TLSFiles { server.tls! }

    func open(_ address: String) async throws(LimitStoreError) -> PostgresLimitStore {
        try await PostgresLimitStore.open(try PostgresLocation(parsing: address), password: server.password, logger: logger)
    }

    func refusal(_ address: String) async -> LimitStoreError? {
        do {
            let store = try await open(address)
            await store.close()
            return nil
        } catch {
            #expect(!error.reason.contains(server.password))
            return error
        }
    }

    var base: String { "postgres://\(server.user)@localhost:\(server.port)/postgres" }
    var client: String { "&sslcert=\(files.clientCertificate)&sslkey=\(files.clientKey)" }

    @Test func theServerIsCheckedByNameAndTheClientByItsCertificate() async throws {
        let store = try await open("\(base)?sslmode=verify-full&sslrootcert=\(files.certificateAuthority)\(client)")
        let decision = try await store.reserve(SQLiteLimitStoreTests.reservation("10", client: "tls"), at: 5000)
        guard case .reserved = decision else {
            Issue.record("refused: \(decision)")
            return
        }
        await store.close()
    }

    @Test func whatCannotBeCheckedIsRefused() async throws {
        let roots = "sslrootcert=\(files.certificateAuthority)"
        // The server does not take a connection in clear (so one that worked was TLS).
        let clear = await refusal("postgres://\(server.user)@127.0.0.1:\(server.port)/postgres")
        #expect(clear?.code == .unavailable && clear?.reason.contains("no encryption") == true, "\(String(describing: clear))")
        // Another CA: the server's certificate is not trusted.
        let otherCA = await refusal("\(base)?sslmode=verify-full&sslrootcert=\(files.otherCertificateAuthority)\(client)")
        #expect(otherCA?.code == .unavailable && otherCA?.reason.contains("is not one the CA in sslrootcert vouches for") == true, "\(String(describing: otherCA))")
        // No CA named: the system's trust store is not taken instead (libpq's verify-full
        // needs its root certificate too).
        let system = await refusal("\(base)?sslmode=verify-full\(client)")
        #expect(system?.code == .badLocation && system?.reason.contains("needs sslrootcert") == true, "\(String(describing: system))")
        // The right CA, but the certificate names localhost, not 127.0.0.1.
        let address = await refusal("postgres://\(server.user)@127.0.0.1:\(server.port)/postgres?sslmode=verify-full&\(roots)\(client)")
        #expect(address?.code == .unavailable && address?.reason.contains("does not name the address's host") == true, "\(String(describing: address))")
        // No client certificate: the server refuses.
        let anonymous = await refusal("\(base)?sslmode=verify-full&\(roots)")
        #expect(anonymous?.code == .unavailable && anonymous?.reason.contains("client certificate") == true, "\(String(describing: anonymous))")
    }

    @Test func aClientKeyOthersCanReadIsRefusedBeforeConnecting() async throws {
        let exposed = files.directory + "/exposed.key"
        try FileManager.default.copyItem(atPath: files.clientKey, toPath: exposed)
        defer { try? FileManager.default.removeItem(atPath: exposed) }
        chmod(exposed, 0o644)
        let error = await refusal("\(base)?sslmode=verify-full&sslrootcert=\(files.certificateAuthority)&sslcert=\(files.clientCertificate)&sslkey=\(exposed)")
        #expect(error?.code == .untrusted && error?.reason.contains("644") == true, "\(String(describing: error))")
        let missing = await refusal("\(base)?sslmode=verify-full&sslrootcert=\(files.directory)/none.pem")
        #expect(missing?.code == .unavailable && missing?.reason.contains("sslrootcert") == true, "\(String(describing: missing))")
    }
}
