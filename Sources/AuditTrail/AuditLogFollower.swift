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
    /// The file being read: a sealed segment, or the active one (`<serial>.jsonl`).
    public private(set) var path: String
    private let log: AuditLog
    private let serial: String
    private var descriptor: Int32 = -1
    private var identity: (device: UInt64, inode: UInt64) = (0, 0)
    /// Where the open file's records end when it is a sealed segment (nil: the active one).
    private var sealedEnd: Int?
    /// The open file's first record, and the bytes of whole lines read from it.
    private var fileFirst = 0
    private var fileOffset = 0
    /// Bytes of whole lines read (from the log's first byte, archived segments counted).
    public private(set) var offset = 0
    /// Records read (the next record's index), archived ones passed over counted.
    public private(set) var records = 0
    /// Archived segments passed over (their records are not here): first record and count.
    public private(set) var archivedPassed: [(first: Int, count: Int)] = []

    /// A reader of `log` from its first record: its sealed segments, then the active one.
    public init(_ log: AuditLog) {
        self.log = log
        path = log.logPath
        serial = log.token.serial
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// The whole lines appended since the last call (the first call: from the start), without
    /// their newlines, each checked in its place; at most about `limit` bytes of them (a
    /// longer single record is still returned whole). Empty when nothing whole was appended, or
    /// while the log does not exist yet. The lines of one call are consecutive records: the
    /// first is record `records - lines.count`.
    public func next(limit: Int = 1 << 20) throws -> [[UInt8]] {
        let limit = min(max(limit, 1), 64 << 20)
        while true {
            guard try openOrCheck() else { return [] }
            let lines = try readLines(limit: limit)
            if !lines.isEmpty { return lines }
            // A sealed segment read to its end: on to the next file.
            guard let end = sealedEnd, records == end else { return [] }
            close(descriptor)
            descriptor = -1
        }
    }

    private func readLines(limit: Int) throws -> [[UInt8]] {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw AuditError(.unreadable, "cannot examine \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        let size = Int(status.st_size)
        if size < fileOffset {
            throw AuditError(.inconsistent, "\(path) became shorter while it was read (\(fileOffset) → \(size) bytes): records were cut off",
                             facts: ErrorFacts(path: path, recordIndex: records))
        }
        // Up to the limit, or one whole record beyond it; a line longer than any record is damage.
        let available = size - fileOffset
        guard available > 0 else {
            if let end = sealedEnd, records != end {
                throw AuditError(.inconsistent, "segment \(path) ends at record \(records), not at the \(end) its name says",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            return []
        }
        let wanted = min(available, limit + LogScan.maximumLineLength + 1)
        guard let bytes = AuditFiles.readFully(descriptor, at: fileOffset, count: wanted) else {
            // Shorter than a moment ago: an append that failed part-way cuts itself back to
            // where it started (at or after this reader's place); below it is a cut log.
            let code = errno
            if fstat(descriptor, &status) == 0 {
                if Int(status.st_size) >= fileOffset { return [] }
                throw AuditError(.inconsistent, "\(path) became shorter while it was read (\(fileOffset) → \(status.st_size) bytes): records were cut off",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(code))))", facts: ErrorFacts(path: path))
        }
        var lines: [[UInt8]] = []
        var start = 0
        while start < bytes.count, start < limit || lines.isEmpty, let newline = bytes[start...].firstIndex(of: 0x0A) {
            let line = bytes[start..<newline]
            if line.count > LogScan.maximumLineLength { throw tooLong() }
            if let end = sealedEnd, records >= end {
                throw AuditError(.inconsistent, "segment \(path) holds more records than the \(end - fileFirst) its name says",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            if let problem = LogScan.problem(line, at: records, serial: serial) {
                throw AuditError(.inconsistent, "record \(records) of \(path): \(problem)", facts: ErrorFacts(path: path, recordIndex: records))
            }
            lines.append(Array(line))
            records += 1
            offset += line.count + 1
            fileOffset += line.count + 1
            start = newline + 1
        }
        if lines.isEmpty, bytes.count > LogScan.maximumLineLength { throw tooLong() }
        if lines.isEmpty, sealedEnd != nil, wanted == available {
            throw AuditError(.inconsistent, "segment \(path) ends inside a record: a sealed segment is never written again",
                             facts: ErrorFacts(path: path, recordIndex: records))
        }
        return lines
    }

    private func tooLong() -> AuditError {
        AuditError(.inconsistent, "record \(records) of \(path): line \(records) is longer than \(LogScan.maximumLineLength >> 20) MiB: not an audit record",
                   facts: ErrorFacts(path: path, recordIndex: records))
    }

    /// Opens the file the next record is in (a sealed segment, passing over archived ones, or
    /// the active segment once it exists); afterwards, checks that the file at its path is still
    /// the one open: the active segment may have been sealed (it is then that segment, read to
    /// its end), nothing else. False while there is no log yet.
    private func openOrCheck() throws -> Bool {
        if descriptor < 0 {
            let segments = try log.segments()
            while let segment = segments.sealed.first(where: { $0.first == records }) {
                guard let file = segment.path else {
                    archivedPassed.append((segment.first, segment.count))
                    records = segment.end
                    offset = segment.start + segment.bytes
                    continue
                }
                try open(file, sealedEnd: segment.end)
                return true
            }
            guard records == segments.base else {
                throw AuditError(.inconsistent, "the segments of \(log.logPath) end at record \(segments.base), not at record \(records) where the reader is: a segment was removed",
                                 facts: ErrorFacts(path: log.segmentsPath, recordIndex: records))
            }
            guard try AuditFiles.open(log.logPath, O_RDONLY).map({ close($0) }) != nil else { return false }
            try open(log.logPath, sealedEnd: nil)
            return true
        }
        var status = stat()
        if lstat(path, &status) == 0, UInt64(status.st_dev) == identity.device, UInt64(status.st_ino) == identity.inode { return true }
        let code = errno
        let segment = try log.segments().sealed.first(where: { $0.first == fileFirst })
        if sealedEnd == nil, let sealed = segment, let file = sealed.path,
           lstat(file, &status) == 0, UInt64(status.st_dev) == identity.device, UInt64(status.st_ino) == identity.inode {
            // The active segment was sealed: the same file, under its segment name.
            path = file
            sealedEnd = sealed.end
            return true
        }
        if let sealed = segment, sealed.path == nil, sealedEnd == nil || sealedEnd == sealed.end {
            // Archived (a stub in its place) while this reader was in it: the open file is still
            // that segment, read to the end its name gives.
            sealedEnd = sealed.end
            return true
        }
        if lstat(path, &status) != 0 {
            if code == ENOENT || errno == ENOENT {
                throw AuditError(.inconsistent, "\(path) was removed while it was read (\(records) records in): an audit log is only ever appended to",
                                 facts: ErrorFacts(path: path, recordIndex: records))
            }
            throw AuditError(.unreadable, "cannot examine \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        throw AuditError(.inconsistent, "\(path) was replaced while it was read (another file is at its path now): an audit log is only ever appended to",
                         facts: ErrorFacts(path: path, recordIndex: records))
    }

    private func open(_ file: String, sealedEnd end: Int?) throws {
        guard let opened = try AuditFiles.open(file, O_RDONLY) else {
            throw AuditError(.inconsistent, "\(file) was removed while it was read (\(records) records in): an audit log is only ever appended to",
                             facts: ErrorFacts(path: file, recordIndex: records))
        }
        var status = stat()
        guard fstat(opened, &status) == 0 else {
            close(opened)
            throw AuditError(.unreadable, "cannot examine \(file) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: file))
        }
        descriptor = opened
        identity = (UInt64(status.st_dev), UInt64(status.st_ino))
        path = file
        sealedEnd = end
        fileFirst = records
        fileOffset = 0
    }
}
