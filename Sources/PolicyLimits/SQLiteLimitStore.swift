import DurableFiles
#if canImport(Glibc)
import Glibc
#endif
import SQLiteNIO
import Synchronization
import TransactionPolicy
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The embedded store: one SQLite file (by default in the tool's state directory). Reservations
/// of this process are serialised by a gate; `BEGIN IMMEDIATE` takes the database's write lock,
/// so a second process on the same file waits rather than racing.
///
/// A reservation is decided before it is durable (`decide`): the insert and the commit, with its
/// fsync, follow while the proxy records and signs, and the proxy forwards nothing before they
/// ended well (docs/policy.md).
///
/// Each window's reservations and total are also kept in memory (read from the file once), so
/// that a reservation costs the same with ten thousand in its window as with none; the cache is
/// read again whenever another connection has written the file (`PRAGMA data_version`), a
/// reservation was released, or the clock went back.
public final class SQLiteLimitStore: LimitStore {
    private let connection: SQLiteConnection
    private let gate = SerialGate()
    private let cache = Mutex(WindowCache())

    /// The windows read so far, by client, asset and length.
    struct WindowCache {
        struct Key: Hashable {
            let client: String
            let asset: String
            let seconds: Int64
        }
        struct Window {
            /// Reservations within the window, oldest first.
            var entries: [(at: Int64, amount: ExactDecimal)] = []
            var first = 0
            var total = ExactDecimal.zero
            var lastNow: Int64 = .min
        }
        var windows: [Key: Window] = [:]
        var dataVersion: Int?
        /// When reservations no window can count are next dropped.
        var nextPurge: Int64 = .min
    }
    /// The file.
    public let path: String

    private init(connection: SQLiteConnection, path: String) {
        self.connection = connection
        self.path = path
    }

    /// Opens (creating when absent) the store at `path`.
    public static func open(path: String) async throws(LimitStoreError) -> SQLiteLimitStore {
        try requirePrivate(path)
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
            _ = try await connection.query(
                "CREATE INDEX IF NOT EXISTS window_reservations_by_time ON window_reservations (reserved_at)")
        } catch {
            try? await connection.close()
            throw LimitStoreError(.unavailable, "cannot prepare the limit store: \(error)", path: path)
        }
        return SQLiteLimitStore(connection: connection, path: path)
    }

    /// Whoever can write the store can lower the totals it holds, and with them every limit:
    /// its directory and files (the database, SQLite's `-wal`, `-shm` and `-journal`) must be
    /// this user's (or root's), writable by nobody else, never links, as the audit trail's are.
    /// A missing database is made 0600 (SQLite gives its other files the database's mode).
    static func requirePrivate(_ path: String) throws(LimitStoreError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try TrustedFile.verifyPrivateState(directory, kind: .directory)
            for file in [path, path + "-wal", path + "-shm", path + "-journal"] {
                try TrustedFile.verifyPrivateState(file, kind: .file)
            }
        } catch {
            let fix = TrustedFile.remedy(for: error).map { "; once you know nobody else changed it, fix it with: \($0)" } ?? ""
            throw LimitStoreError(.untrusted, "\(error): the policy's limit totals cannot be trusted when others could have written them\(fix)", path: path)
        }
        let descriptor = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        if descriptor >= 0 {
            _ = Glibc.close(descriptor)
        } else if errno != EEXIST {
            throw LimitStoreError(.unavailable, "cannot create the limit store (\(String(cString: strerror(errno))))", path: path)
        }
    }

    /// One statement, its rows read on sqlite-nio's thread pool: one hop there and back (the
    /// `[SQLiteRow]` form of `query` also goes through the connection's event loop).
    private func run(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        nonisolated(unsafe) var rows: [SQLiteRow] = []
        try await connection.query(sql, binds) { rows.append($0) }
        return rows
    }

    public func reserve(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> LimitDecision {
        let (decision, commit) = try await decide(reservation, at: now)
        try await commit.wait()
        return decision
    }

    /// The decision under the database's write lock (`BEGIN IMMEDIATE`, then `PRAGMA
    /// data_version` and, when the window is not in memory, its reservations), returned at once;
    /// the insert and the `COMMIT` with its fsync (`synchronous = FULL`) follow in the background
    /// while the caller records and signs. The gate and the write lock are held until that
    /// commit ends, so the next decision, in this process or another, sees it or its failure.
    public func decide(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> (LimitDecision, PendingCommit) {
        await gate.enter()
        let decided: Decided
        do {
            decided = try await decideAlone(reservation, at: now)
        } catch {
            _ = try? await run("ROLLBACK")
            cache.withLock { $0.windows = [:] }
            gate.leave()
            throw error
        }
        let commit = Task { [self] () -> LimitStoreError? in
            let failure = await self.complete(decided, reservation, at: now)
            self.gate.leave()
            return failure
        }
        switch decided.decision {
        case .reserved: return (decided.decision, PendingCommit(commit))
        // Nothing was written: the rollback that follows is no one's concern.
        case .exceeded: return (decided.decision, .done)
        }
    }

    /// A decision made, its transaction still open.
    private struct Decided: Sendable {
        let decision: LimitDecision
        let id: ReservationID?
    }

    /// The check, in the transaction it opens; the caller holds the gate. The window in memory
    /// already counts the reservation when it is made.
    private func decideAlone(_ reservation: WindowReservation, at now: Int64) async throws(LimitStoreError) -> Decided {
        do {
            _ = try await run("BEGIN IMMEDIATE")
            let since = now - reservation.window.seconds
            let key = WindowCache.Key(client: reservation.client, asset: reservation.assetId, seconds: Int64(reservation.window.seconds))
            let version = try await run("PRAGMA data_version").first?.column("data_version")?.integer
            // Taken out of the cache while it is changed (and put back below), so that it is
            // changed in place: a copy shared with the cache would copy every entry of the window
            // on each reservation. A decision that throws leaves it out, to be read again.
            var window = cache.withLock { cache -> WindowCache.Window? in
                if cache.dataVersion != version {
                    // Another connection wrote the file: what was read may be stale.
                    cache.windows = [:]
                    cache.dataVersion = version
                }
                return cache.windows.removeValue(forKey: key)
            }
            if window.map({ now < $0.lastNow }) ?? true {
                let rows = try await run(
                    "SELECT amount, reserved_at FROM window_reservations WHERE client = ? AND asset = ? AND reserved_at > ? ORDER BY reserved_at",
                    [.text(reservation.client), .text(reservation.assetId), .integer(Int(since))])
                var read = WindowCache.Window()
                for row in rows {
                    guard let text = row.column("amount")?.string, let amount = ExactDecimal(text),
                          let at = row.column("reserved_at")?.integer else {
                        throw LimitStoreError(.corrupt, "a reservation's amount is not a decimal", path: path)
                    }
                    read.entries.append((Int64(at), amount))
                    read.total = read.total + amount
                }
                window = read
            }
            guard var current = window.take() else { throw LimitStoreError(.failed, "the window could not be read", path: path) }
            // What the window no longer holds leaves its total.
            while current.first < current.entries.count, current.entries[current.first].at <= since {
                guard let rest = ExactDecimal.subtracting(current.entries[current.first].amount, from: current.total) else {
                    throw LimitStoreError(.corrupt, "the window's total went below zero", path: path)
                }
                current.total = rest
                current.first += 1
            }
            if current.first > 1024, current.first * 2 > current.entries.count {
                current.entries.removeFirst(current.first)
                current.first = 0
            }
            current.lastNow = now
            let total = current.total
            let after = total + reservation.amount
            let decided: Decided
            if reservation.window.maximumTotal < after {
                decided = Decided(decision: .exceeded(total: total), id: nil)
            } else {
                let id = ReservationID(UUID().uuidString.lowercased())
                current.entries.append((now, reservation.amount))
                current.total = after
                decided = Decided(decision: .reserved(id, total: after), id: id)
            }
            cache.withLock { cache in
                // A window of another length over the same client and asset (a reload changed the
                // rule's period) did not see this reservation: it is read again when next used.
                if decided.id != nil, !cache.windows.isEmpty {
                    let stale = cache.windows.keys.filter { $0.client == key.client && $0.asset == key.asset && $0.seconds != key.seconds }
                    for other in stale { cache.windows[other] = nil }
                }
                cache.windows[key] = current
            }
            return decided
        } catch let error as LimitStoreError {
            throw error
        } catch {
            throw LimitStoreError(.failed, "the reservation failed: \(error)", path: path)
        }
    }

    /// Ends the transaction `decideAlone` opened: a reservation is inserted and committed (the
    /// fsync), a refusal rolled back. On failure nothing was written, and the windows in memory
    /// (which counted the reservation) are read again by the next decision. The caller holds the
    /// gate.
    private func complete(_ decided: Decided, _ reservation: WindowReservation, at now: Int64) async -> LimitStoreError? {
        guard let id = decided.id else {
            _ = try? await run("ROLLBACK")
            return nil
        }
        do {
            _ = try await run(
                "INSERT INTO window_reservations (id, client, asset, rule, amount, reserved_at) VALUES (?, ?, ?, ?, ?, ?)",
                [.text(id.value), .text(reservation.client), .text(reservation.assetId), .text(reservation.rule),
                 .text(reservation.amount.description), .integer(Int(now))])
            if cache.withLock({ now >= $0.nextPurge }) {
                // What no window can still count (the longest is 366 days) is dropped, once an hour.
                _ = try await run("DELETE FROM window_reservations WHERE reserved_at < ?", [.integer(Int(now - 367 * 86_400))])
                cache.withLock { $0.nextPurge = now + 3600 }
            }
            _ = try await run("COMMIT")
            return nil
        } catch {
            _ = try? await run("ROLLBACK")
            cache.withLock { $0.windows = [:]; $0.nextPurge = .min }
            return LimitStoreError(.failed, "the reservation could not be committed: \(error)", path: path)
        }
    }

    public func release(_ id: ReservationID) async throws(LimitStoreError) {
        await gate.enter()
        var failure: (any Error)?
        do {
            _ = try await run("DELETE FROM window_reservations WHERE id = ?", [.text(id.value)])
        } catch {
            failure = error
        }
        // Released amounts are rare (a refused transaction): the windows are read again.
        cache.withLock { $0.windows = [:] }
        gate.leave()
        if let failure { throw LimitStoreError(.failed, "the release failed: \(failure)", path: path) }
    }

    public func close() async {
        // After the commit under way, if any.
        await gate.enter()
        try? await connection.close()
        gate.leave()
    }
}
