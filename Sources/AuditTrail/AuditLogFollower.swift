import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// Reads a token's log front to back and then as it grows, one pass, for whoever shows it
/// (`audit show` and its follow mode): only the bytes appended since the last read are read.
///
/// It holds the log open and keeps its place: the bytes of whole lines read so far, and the
/// next record's index. Each line is checked as the record that belongs at its place (the rule
/// of every other reader: `seq` its index, this token's serial) before it is handed out, and a
/// line is handed out only once it is whole (a record being appended is waited for). The log
/// of a trail is only ever appended to, so anything else while it is read is an
/// ``AuditError/Code/inconsistent`` error, never read past: another file at the log's path (its
/// device and inode changed: replaced, or moved away and put back), the log removed, the log
/// shorter than what was read (records cut off), or a line that is not the record belonging at
/// its place. This checks where each record is, not what it says: `verify` checks the
/// checkpoints.
public final class AuditLogFollower {
    /// The log's path.
    public let path: String
    private let serial: String
    private var descriptor: Int32 = -1
    private var identity: (device: UInt64, inode: UInt64) = (0, 0)
    /// Bytes of whole lines read.
    public private(set) var offset = 0
    /// Records read (the next record's index).
    public private(set) var records = 0

    /// A reader of `log` from its first record.
    public init(_ log: AuditLog) {
        path = log.logPath
        serial = log.token.serial
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// The whole lines appended since the last call (the first call: from the start), without
    /// their newlines, each checked in its place; at most about `limit` bytes of them (a
    /// longer single record is still returned whole). Empty when nothing whole was appended, or
    /// while the log does not exist yet.
    public func next(limit: Int = 1 << 20) throws -> [[UInt8]] {
        let limit = min(max(limit, 1), 64 << 20)
        guard try openOrCheck() else { return [] }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw AuditError(.unreadable, "cannot examine \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        let size = Int(status.st_size)
        if size < offset {
            throw AuditError(.inconsistent, "\(path) became shorter while it was read (\(offset) → \(size) bytes): records were cut off",
                             facts: ErrorFacts(path: path, recordIndex: records))
        }
        // Up to the limit, or one whole record beyond it; a line longer than any record is damage.
        let available = size - offset
        guard available > 0 else { return [] }
        let wanted = min(available, limit + LogScan.maximumLineLength + 1)
        guard let bytes = AuditFiles.readFully(descriptor, at: offset, count: wanted) else {
            // Shorter than a moment ago: an append that failed part-way cuts itself back to
            // where it started (at or after this reader's place); below it is a cut log.
            let code = errno
            if fstat(descriptor, &status) == 0 {
                if Int(status.st_size) >= offset { return [] }
                throw AuditError(.inconsistent, "\(path) became shorter while it was read (\(offset) → \(status.st_size) bytes): records were cut off",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(code))))", facts: ErrorFacts(path: path))
        }
        var lines: [[UInt8]] = []
        var start = 0
        while start < bytes.count, start < limit || lines.isEmpty, let newline = bytes[start...].firstIndex(of: 0x0A) {
            let line = bytes[start..<newline]
            if line.count > LogScan.maximumLineLength { throw tooLong() }
            if let problem = LogScan.problem(line, at: records, serial: serial) {
                throw AuditError(.inconsistent, "record \(records) of \(path): \(problem)", facts: ErrorFacts(path: path, recordIndex: records))
            }
            lines.append(Array(line))
            records += 1
            offset += line.count + 1
            start = newline + 1
        }
        if lines.isEmpty, bytes.count > LogScan.maximumLineLength { throw tooLong() }
        return lines
    }

    private func tooLong() -> AuditError {
        AuditError(.inconsistent, "record \(records) of \(path): line \(records) is longer than \(LogScan.maximumLineLength >> 20) MiB: not an audit record",
                   facts: ErrorFacts(path: path, recordIndex: records))
    }

    /// Opens the log the first time it exists; afterwards, checks that the file at its path is
    /// still the one open. False while there is no log yet.
    private func openOrCheck() throws -> Bool {
        if descriptor < 0 {
            guard let opened = try AuditFiles.open(path, O_RDONLY) else { return false }
            var status = stat()
            guard fstat(opened, &status) == 0 else {
                close(opened)
                throw AuditError(.unreadable, "cannot examine \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
            }
            descriptor = opened
            identity = (UInt64(status.st_dev), UInt64(status.st_ino))
            return true
        }
        var status = stat()
        guard lstat(path, &status) == 0 else {
            let code = errno
            if code == ENOENT {
                throw AuditError(.inconsistent, "\(path) was removed while it was read (\(records) records in): an audit log is only ever appended to",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            throw AuditError(.unreadable, "cannot examine \(path) (\(String(cString: strerror(code))))", facts: ErrorFacts(path: path))
        }
        guard UInt64(status.st_dev) == identity.device, UInt64(status.st_ino) == identity.inode else {
            throw AuditError(.inconsistent, "\(path) was replaced while it was read (another file is at its path now): an audit log is only ever appended to",
                             facts: ErrorFacts(path: path, recordIndex: records))
        }
        return true
    }
}
