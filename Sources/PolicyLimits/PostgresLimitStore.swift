import Logging
import PostgresNIO
import TransactionPolicy
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where a shared store is: `postgres://USER@HOST[:PORT]/DATABASE`, or a unix socket's
/// directory as libpq writes it (`postgres://USER@/DATABASE?host=/run/postgresql`). A password
/// is never part of it (it would be in argv and logs): it comes from the environment
/// (`PGPASSWORD`, as libpq reads it).
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    public let user: String
    public let database: String
    /// A TCP host, or nil for a unix socket.
    public let host: String?
    public let port: Int
    /// The unix socket's directory, when no TCP host.
    public let socketDirectory: String?

    /// Parses the location; nil reasons name what is wrong (never echoing a password).
    public init(parsing text: String) throws(LimitStoreError) {
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://"),
              let components = URLComponents(string: text) else {
            throw LimitStoreError(.badLocation, "a PostgreSQL store is postgres://USER@HOST[:PORT]/DATABASE")
        }
        guard components.password == nil else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's address has a password: put it in PGPASSWORD instead, never on a command line")
        }
        guard let user = components.user, !user.isEmpty else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's address names no user (postgres://USER@HOST/DATABASE)")
        }
        let database = String(components.path.dropFirst())
        guard !database.isEmpty, !database.contains("/") else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's address names no database (postgres://USER@HOST/DATABASE)")
        }
        var socketDirectory: String?
        for item in components.queryItems ?? [] {
            guard item.name == "host", let value = item.value, value.hasPrefix("/") else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's address takes one parameter, host=/socket/directory")
            }
            socketDirectory = value
        }
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        guard (host == nil) != (socketDirectory == nil) else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's address names a TCP host or a socket directory (?host=/dir), one of them")
        }
        if let host {
            // TLS is not configured yet: a password and the limits may cross only loopback.
            guard host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.") else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store at \(host) is not on loopback; without TLS only a loopback address or a unix socket is used")
            }
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw LimitStoreError(.badLocation, "the PostgreSQL store's port is 1 to 65535") }
        self.user = user
        self.database = database
        self.host = host
        self.port = port
        self.socketDirectory = socketDirectory
    }

    /// The address, without a password (there is none).
    public var description: String {
        if let host { return "postgres://\(user)@\(host):\(port)/\(database)" }
        return "postgres://\(user)@/\(database)?host=\(socketDirectory ?? "")"
    }
}

/// The shared store: PostgreSQL, for several proxies (on several hosts) that share one limit.
/// A reservation is one transaction that takes an advisory lock on the client's and asset's
/// window, sums it exactly (NUMERIC) and inserts: two proxies never pass the limit together.
public final class PostgresLimitStore: LimitStore {
    private let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    /// Where it is.
    public let location: PostgresLocation

    private init(client: PostgresClient, runner: Task<Void, Never>, logger: Logger, location: PostgresLocation) {
        self.client = client
        self.runner = runner
        self.logger = logger
        self.location = location
    }

    /// Connects, with the password from `password` (the caller reads it from the environment),
    /// and creates the table when absent.
    public static func open(_ location: PostgresLocation, password: String?, logger: Logger) async throws(LimitStoreError) -> PostgresLimitStore {
        // One connection first: a wrong address or password fails here at once (the pool
        // would retry it in the background), and the table is made before any reservation.
        let single: PostgresConnection.Configuration
        let configuration: PostgresClient.Configuration
        if let host = location.host {
            let bare = host == "[::1]" ? "::1" : host
            single = .init(host: bare, port: location.port, username: location.user, password: password, database: location.database, tls: .disable)
            configuration = .init(host: bare, port: location.port, username: location.user, password: password, database: location.database, tls: .disable)
        } else {
            let socket = "\(location.socketDirectory ?? "")/.s.PGSQL.\(location.port)"
            single = .init(unixSocketPath: socket, username: location.user, password: password, database: location.database)
            configuration = .init(unixSocketPath: socket, username: location.user, password: password, database: location.database)
        }
        do {
            let connection = try await PostgresConnection.connect(configuration: single, id: 0, logger: logger)
            do {
                try await connection.withTransaction(logger: logger) { connection in
                    // Two proxies starting at once create the table once.
                    try await connection.query("SELECT pg_advisory_xact_lock(7243105215)", logger: logger)
                    try await connection.query("""
                        CREATE TABLE IF NOT EXISTS fireblocks_hsm_window_reservations (
                            id TEXT PRIMARY KEY,
                            client TEXT NOT NULL,
                            asset TEXT NOT NULL,
                            rule TEXT NOT NULL,
                            amount NUMERIC NOT NULL CHECK (amount >= 0),
                            reserved_at BIGINT NOT NULL
                        )
                        """, logger: logger)
                    try await connection.query("""
                        CREATE INDEX IF NOT EXISTS fireblocks_hsm_window_reservations_by_window
                        ON fireblocks_hsm_window_reservations (client, asset, reserved_at)
                        """, logger: logger)
                }
            } catch {
                try? await connection.close()
                throw error
            }
            try? await connection.close()
        } catch {
            throw LimitStoreError(.unavailable, "cannot use the PostgreSQL limit store at \(location): \(Self.describe(error))")
        }
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let runner = Task { await client.run() }
        let store = PostgresLimitStore(client: client, runner: runner, logger: logger, location: location)
        return store
    }

    public func reserve(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> LimitDecision {
        let logger = self.logger
        let since = now - reservation.window.seconds
        let key = "\(reservation.client)\u{1F}\(reservation.assetId)"
        let amount = reservation.amount.description
        let id = UUID().uuidString.lowercased()
        do {
            return try await client.withTransaction(logger: logger) { connection async throws -> LimitDecision in
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: logger)
                let rows = try await connection.query("""
                    SELECT COALESCE(SUM(amount), 0)::text FROM fireblocks_hsm_window_reservations
                    WHERE client = \(reservation.client) AND asset = \(reservation.assetId) AND reserved_at > \(since)
                    """, logger: logger)
                var held: String?
                for try await text in rows.decode(String.self) { held = text }
                guard let held, let total = ExactDecimal(held) else {
                    throw LimitStoreError(.corrupt, "the window's total is not a decimal")
                }
                let after = total + reservation.amount
                guard !(reservation.window.maximumTotal < after) else { return .exceeded(total: total) }
                try await connection.query("""
                    INSERT INTO fireblocks_hsm_window_reservations (id, client, asset, rule, amount, reserved_at)
                    VALUES (\(id), \(reservation.client), \(reservation.assetId), \(reservation.rule), \(amount)::numeric, \(now))
                    """, logger: logger)
                try await connection.query("DELETE FROM fireblocks_hsm_window_reservations WHERE reserved_at < \(now - 367 * 86_400)",
                                           logger: logger)
                return .reserved(ReservationID(id), total: after)
            }
        } catch let error as LimitStoreError {
            throw error
        } catch {
            throw LimitStoreError(.failed, "the reservation failed at \(location): \(Self.describe(error))")
        }
    }

    public func release(_ id: ReservationID) async throws(LimitStoreError) {
        do {
            try await client.query("DELETE FROM fireblocks_hsm_window_reservations WHERE id = \(id.value)", logger: logger)
        } catch {
            throw LimitStoreError(.failed, "the release failed at \(location): \(Self.describe(error))")
        }
    }

    public func close() async {
        runner.cancel()
        _ = await runner.value
    }

    /// An error of the client in one line: the server's message when it sent one (never a
    /// password: none is in any query or address).
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return "\(error.code)"
        }
        return "\(error)"
    }
}
