import SQLiteNIO
import TransactionPolicy
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The embedded store: one SQLite file (by default in the tool's state directory). Reservations
/// of this process are serialised by a gate; `BEGIN IMMEDIATE` takes the database's write lock,
/// so a second process on the same file waits rather than racing.
public final class SQLiteLimitStore: LimitStore {
    private let connection: SQLiteConnection
    private let gate = SerialGate()
    /// The file.
    public let path: String

    private init(connection: SQLiteConnection, path: String) {
        self.connection = connection
        self.path = path
    }

    /// Opens (creating when absent) the store at `path`.
    public static func open(path: String) async throws(LimitStoreError) -> SQLiteLimitStore {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: .file(path: path))
        } catch {
            throw LimitStoreError(.unavailable, "cannot open the limit store: \(error)", path: path)
        }
        do {
            _ = try await connection.query("PRAGMA busy_timeout = 10000")
            _ = try await connection.query("PRAGMA journal_mode = WAL")
            _ = try await connection.query("PRAGMA synchronous = FULL")
            _ = try await connection.query("""
                CREATE TABLE IF NOT EXISTS window_reservations (
                    id TEXT PRIMARY KEY,
                    client TEXT NOT NULL,
                    asset TEXT NOT NULL,
                    rule TEXT NOT NULL,
                    amount TEXT NOT NULL,
                    reserved_at INTEGER NOT NULL
                )
                """)
            _ = try await connection.query(
                "CREATE INDEX IF NOT EXISTS window_reservations_by_window ON window_reservations (client, asset, reserved_at)")
        } catch {
            try? await connection.close()
            throw LimitStoreError(.unavailable, "cannot prepare the limit store: \(error)", path: path)
        }
        return SQLiteLimitStore(connection: connection, path: path)
    }

    public func reserve(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> LimitDecision {
        await gate.enter()
        let result: Result<LimitDecision, LimitStoreError>
        do {
            result = .success(try await reserveAlone(reservation, at: now))
        } catch {
            result = .failure(error)
        }
        await gate.leave()
        return try result.get()
    }

    /// The check and the insert, in one transaction; the caller holds the gate.
    private func reserveAlone(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> LimitDecision {
        do {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                let since = now - reservation.window.seconds
                let rows = try await connection.query(
                    "SELECT amount FROM window_reservations WHERE client = ? AND asset = ? AND reserved_at > ?",
                    [.text(reservation.client), .text(reservation.assetId), .integer(Int(since))])
                var total = ExactDecimal.zero
                for row in rows {
                    guard let text = row.column("amount")?.string, let amount = ExactDecimal(text) else {
                        throw LimitStoreError(.corrupt, "a reservation's amount is not a decimal", path: path)
                    }
                    total = total + amount
                }
                let after = total + reservation.amount
                guard !(reservation.window.maximumTotal < after) else {
                    _ = try await connection.query("ROLLBACK")
                    return .exceeded(total: total)
                }
                let id = ReservationID(UUID().uuidString.lowercased())
                _ = try await connection.query(
                    "INSERT INTO window_reservations (id, client, asset, rule, amount, reserved_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [.text(id.value), .text(reservation.client), .text(reservation.assetId), .text(reservation.rule),
                     .text(reservation.amount.description), .integer(Int(now))])
                // What no window can still count (the longest is 366 days) is dropped.
                _ = try await connection.query("DELETE FROM window_reservations WHERE reserved_at < ?", [.integer(Int(now - 367 * 86_400))])
                _ = try await connection.query("COMMIT")
                return .reserved(id, total: after)
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        } catch let error as LimitStoreError {
            throw error
        } catch {
            throw LimitStoreError(.failed, "the reservation failed: \(error)", path: path)
        }
    }

    public func release(_ id: ReservationID) async throws(LimitStoreError) {
        do {
            _ = try await connection.query("DELETE FROM window_reservations WHERE id = ?", [.text(id.value)])
        } catch {
            throw LimitStoreError(.failed, "the release failed: \(error)", path: path)
        }
    }

    public func close() async {
        try? await connection.close()
    }
}
