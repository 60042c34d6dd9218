#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A small JSON state file changed only under an exclusive lock: read, let the caller change
/// the value, write it back atomically (mode 0600) when it changed. Concurrent processes see
/// each other's changes whole, never interleaved.
///
/// What it holds decides what the tool does next (which key backs which API user, which
/// Idempotency-Key and bytes are sent again), so it is held to the trust rule of the audit
/// trail's own state (``TrustedFile/verifyPrivateState(_:kind:)``) before every read: its
/// directory, the file and its lock file are this user's or root's, writable by nobody else,
/// never symbolic links (nor a file with a second name). Missing ones pass, and are made
/// private (0700, 0600). A refusal is a ``TrustedFileError``; nothing was read or written.
public struct LockedJSONFile<Value: Codable & Equatable>: Sendable {
    /// The path.
    public let path: String
    /// How long to wait for another process's change (they are quick).
    public let lockTimeout: TimeInterval
    private let empty: @Sendable () -> Value

    /// Creates the value from its parts.
    public init(path: String, lockTimeout: TimeInterval = 60, empty: @escaping @Sendable () -> Value) {
        self.path = path
        self.lockTimeout = lockTimeout
        self.empty = empty
    }

    /// Reads under the lock, runs `body`, writes back what it changed. Errors reading or
    /// writing are ``FileOutputError``s (an I/O problem, never mistaken for a refusal).
    public func update<R>(_ body: (inout Value) throws -> R) throws -> R {
        // Judged before the lock is taken (taking it makes the directory and the lock file).
        try requireTrusted()
        let lock = try FileLock.acquire(path + ".lock", timeout: lockTimeout)
        defer { lock.release() }
        var value = try read()
        let before = value
        let result = try body(&value)
        if value != before {
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data: Data
            do { data = try encoder.encode(value) } catch {
                throw FileOutputError(path: path, reason: "cannot encode the record (\(error))")
            }
            try AtomicFile.write(Array(data), to: path, overwrite: true, mode: 0o600)
        }
        return result
    }

    /// The current value (under the lock, so never a half-replaced file).
    public func read() throws -> Value {
        try requireTrusted()
        guard FileManager.default.fileExists(atPath: path) else { return empty() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileOutputError(path: path, reason: "cannot read it (permissions?)")
        }
        if data.isEmpty { return empty() }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(Value.self, from: data)
        } catch {
            throw FileOutputError(path: path, reason: "it is not a record this tool wrote (\(error)); move it aside to start afresh")
        }
    }

    /// The trust rule (see the type's description): the directory, the file and the lock file.
    public func requireTrusted() throws(TrustedFileError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try TrustedFile.verifyPrivateState(directory, kind: .directory)
        try TrustedFile.verifyPrivateState(path, kind: .file)
        try TrustedFile.verifyPrivateState(path + ".lock", kind: .file)
    }
}
