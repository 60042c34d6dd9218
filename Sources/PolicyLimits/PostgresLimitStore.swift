#if canImport(Glibc)
import Glibc
#endif
import Logging
import PostgresNIO
import TransactionPolicy
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where a shared store is: `postgres://USER@HOST[:PORT]/DATABASE[?PARAMETERS]`, or a unix
/// socket's directory as libpq writes it (`postgres://USER@/DATABASE?host=/run/postgresql`). A
/// password is never part of it (it would be in argv and logs): it comes from the environment
/// (`PGPASSWORD`, as libpq reads it).
///
/// TLS takes libpq's parameter names. A host that is not on loopback (`localhost`, or an IP
/// literal in 127.0.0.0/8 or ::1; never a name that merely starts like one) is reached only over
/// TLS with the server's certificate checked against its name or address
/// (`sslmode=verify-full`, the default there), trusting the CA in `sslrootcert` (a PEM file,
/// required, as libpq's verify-full requires its root certificate); a client certificate is
/// `sslcert` with its key `sslkey` (a file only its owner may read). On loopback TLS is off
/// unless `sslmode=verify-full` asks for it; a unix socket has none. The weaker modes
/// (`require`, `verify-ca`, `prefer`, `allow`) are refused: a server whose name is not checked
/// could be anyone on the path, and it would be given the password and the limits.
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    /// How the connection is protected.
    public enum Security: Sendable, Hashable {
        /// No TLS: loopback or a unix socket only.
        case plain
        /// TLS, the server's certificate verified against `rootCertificates` (a PEM file of the
        /// CAs trusted for it) and against the host's name or address; a client certificate (a
        /// PEM file and its key's) when both are given.
        case verifyFull(rootCertificates: String, clientCertificate: String?, clientKey: String?)
    }

    public let user: String
    public let database: String
    /// A TCP host, or nil for a unix socket.
    public let host: String?
    public let port: Int
    /// The unix socket's directory, when no TCP host.
    public let socketDirectory: String?
    public let security: Security

    /// The parameters an address takes (libpq's names).
    static let parameters: Set<String> = ["host", "sslmode", "sslrootcert", "sslcert", "sslkey"]

    /// Parses the location; reasons name what is wrong (never echoing a password).
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
        var given: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard Self.parameters.contains(item.name) else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's address takes the parameters \(Self.parameters.sorted().joined(separator: ", ")), not '\(item.name.prefix(32))'")
            }
            guard given[item.name] == nil else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's address gives \(item.name) twice")
            }
            guard let value = item.value, !value.isEmpty else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's parameter \(item.name) has no value (\(item.name)=…)")
            }
            guard value.hasPrefix("/") || item.name == "sslmode" else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's parameter \(item.name) is an absolute path (\(item.name)=/…)")
            }
            given[item.name] = value
        }
        let socketDirectory = given["host"]
        let host = components.host.flatMap { $0.isEmpty ? nil : $0 }
        guard (host == nil) != (socketDirectory == nil) else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's address names a TCP host or a socket directory (?host=/dir), one of them")
        }
        let files = (root: given["sslrootcert"], certificate: given["sslcert"], key: given["sslkey"])
        guard (files.certificate == nil) == (files.key == nil) else {
            throw LimitStoreError(.badLocation, "the PostgreSQL store's client certificate needs both sslcert and sslkey")
        }
        let anyFile = files.root != nil || files.certificate != nil
        let loopback = host.map(Self.isLoopback) ?? true
        func verified() throws(LimitStoreError) -> Security {
            guard let root = files.root else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's TLS needs sslrootcert=/path/to/ca.pem, the CA that issued the server's certificate (libpq's verify-full needs its root certificate too)")
            }
            return .verifyFull(rootCertificates: root, clientCertificate: files.certificate, clientKey: files.key)
        }
        switch given["sslmode"] {
        case "verify-full"?:
            guard host != nil else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's unix socket has no TLS: sslmode=verify-full is for a TCP host")
            }
            security = try verified()
        case "disable"?:
            guard let host else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's unix socket has no TLS to disable: leave sslmode out")
            }
            guard loopback else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store at \(host) is not on loopback: its password and totals would cross the network in clear; leave sslmode out (verify-full)")
            }
            guard !anyFile else {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's sslrootcert, sslcert and sslkey are for TLS, which sslmode=disable turns off")
            }
            security = .plain
        case nil:
            if host == nil, anyFile {
                throw LimitStoreError(.badLocation, "the PostgreSQL store's unix socket has no TLS: sslrootcert, sslcert and sslkey are for a TCP host")
            }
            if loopback {
                guard !anyFile else {
                    throw LimitStoreError(.badLocation, "the PostgreSQL store's sslrootcert, sslcert and sslkey are for TLS: on loopback add sslmode=verify-full")
                }
                security = .plain
            } else {
                security = try verified()
            }
        case let mode?:
            throw LimitStoreError(.badLocation, "the PostgreSQL store's sslmode=\(mode.prefix(32)) is not taken: verify-full (the server's certificate checked against its name) or, on loopback, disable; a server whose name is not checked could be anyone on the path")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw LimitStoreError(.badLocation, "the PostgreSQL store's port is 1 to 65535") }
        self.user = user
        self.database = database
        self.host = host
        self.port = port
        self.socketDirectory = socketDirectory
    }

    /// `localhost`, or an IP literal on loopback (127.0.0.0/8, ::1), parsed as an address: a name
    /// such as `127.0.0.1.example.net` is not one, whatever it starts with.
    static func isLoopback(_ host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, Self.unbracketed(host), &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        return false
    }

    /// An IPv6 literal without the brackets a URL writes around it.
    static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    }

    /// The address, without a password (there is none), with how it is protected.
    public var description: String {
        guard let host else { return "postgres://\(user)@/\(database)?host=\(socketDirectory ?? "")" }
        switch security {
        case .plain: return "postgres://\(user)@\(host):\(port)/\(database)"
        case .verifyFull: return "postgres://\(user)@\(host):\(port)/\(database)?sslmode=verify-full"
        }
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
            let bare = PostgresLocation.unbracketed(host)
            let tls = try Self.tls(location)
            single = .init(host: bare, port: location.port, username: location.user, password: password, database: location.database,
                           tls: tls.map { .require($0.context) } ?? .disable)
            configuration = .init(host: bare, port: location.port, username: location.user, password: password, database: location.database,
                                  tls: tls.map { .require($0.configuration) } ?? .disable)
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

    /// The TLS context for `sslmode=verify-full` (nil without TLS): TLS 1.2 or later, the
    /// server's chain verified against the given roots only and its name or address against the
    /// host, and the client's certificate when given. A client key that others may
    /// read is refused, as libpq refuses it.
    static func tls(_ location: PostgresLocation) throws(LimitStoreError) -> (configuration: TLSConfiguration, context: NIOSSLContext)? {
        guard case .verifyFull(let roots, let certificate, let key) = location.security else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        var reading = (path: "", what: "")
        do {
            reading = (roots, "sslrootcert")
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(roots))
            if let certificate, let key {
                reading = (certificate, "sslcert")
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                reading = (key, "sslkey")
                try requirePrivateKeyFile(key)
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            }
            return (configuration, try NIOSSLContext(configuration: configuration))
        } catch let error as LimitStoreError {
            throw error
        } catch {
            let what = reading.what.isEmpty ? "the TLS settings" : "\(reading.what) (\(reading.path))"
            throw LimitStoreError(.unavailable, "cannot use \(what) for the PostgreSQL store (a readable PEM file is needed): \(error)")
        }
    }

    /// The client key is a secret: a regular file (links followed) that only its owner may read,
    /// or, owned by root, its group too (libpq's rule).
    static func requirePrivateKeyFile(_ path: String) throws(LimitStoreError) {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw LimitStoreError(.unavailable, "cannot read sslkey (\(path)): \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        let allowed: mode_t = status.st_uid == 0 ? 0o740 : 0o700
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw LimitStoreError(.untrusted, "sslkey (\(path)) is not a regular file")
        }
        guard status.st_uid == 0 || status.st_uid == geteuid() else {
            throw LimitStoreError(.untrusted, "sslkey (\(path)) belongs to another user (uid \(status.st_uid)): make it this user's (or root's), 0600")
        }
        guard mode & ~allowed == 0 else {
            throw LimitStoreError(.untrusted, "sslkey (\(path)) is a key others can read (mode \(String(mode, radix: 8))): make it 0600 and this user's (or 0640 and root's)")
        }
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
            // A failed TLS handshake or connection: what went wrong is the underlying error.
            if let underlying = error.underlying {
                if let extra = underlying as? NIOSSLExtraError, extra == .failedToValidateHostname {
                    return "the server's certificate does not name the address's host (sslmode=verify-full): \(underlying)"
                }
                if case .handshakeFailed(let detail)? = underlying as? NIOSSLError, "\(detail)".contains("CERTIFICATE_VERIFY_FAILED") {
                    return "the server's certificate is not one the CA in sslrootcert vouches for: \(underlying)"
                }
                return "\(error.code): \(underlying)"
            }
            return "\(error.code)"
        }
        return "\(error)"
    }
}
