import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import Synchronization
import TransparencyLog

/// Appends to one ``AuditLog`` for a long-running process (the signing proxy): it remembers the
/// tree of what it has read (its right frontier), so an append reads only what other processes added since
/// (under the same file lock as every writer) instead of the whole log.
///
/// The same guarantees as ``AuditLog/append(_:now:seal:)``: records are numbered in file
/// order under the lock; a torn tail or a log that shrank underneath is refused, never
/// repaired. With `sync: false` a record is written (and a failure to write it is an error)
/// but reaches the disk with the next synced append or ``seal(_:)``: for records that may wait
/// for the next one (a request's outcome), never for one an operation depends on.
public final class AuditAppender: Sendable {
    /// The log.
    public let log: AuditLog
    private let state: Mutex<State>
    private let actor: AuditRecord.Actor
    private let lock: ReusableFileLock

    private struct State {
        var offset = 0
        /// The tree so far, as its right frontier (O(log n) memory, O(log n) root).
        var range = MerkleTree.CompactRange()
        var lastLeafHash: [UInt8] = []
        var unsynced = false
        /// The log, kept open (O_APPEND) with the inode it had; reopened if the file was replaced.
        var descriptor: Int32 = -1
        var inode: (device: UInt, number: UInt) = (0, 0)
    }

    /// Reads the log once (it must be intact: no torn tail, every `seq` in place).
    public init(log: AuditLog) throws {
        self.log = log
        self.actor = .current
        self.state = Mutex(State())
        try AtomicFile.makePrivateDirectory(log.directory.path)
        lock = try ReusableFileLock(log.logPath + ".lock")
        try state.withLock { state in
            try lock.lock(timeout: 30)
            defer { lock.unlock() }
            try catchUp(&state)
        }
    }

    deinit {
        state.withLock { state in
            if state.descriptor >= 0 { close(state.descriptor) }
        }
    }

    /// Records in the log (as far as this appender has read it).
    public var size: Int { state.withLock { $0.range.size } }

    /// Appends the entries as consecutive records; returns the `seq` of the first.
    /// - Parameter sync: `fdatasync` before returning (the record is on disk when this returns).
    @discardableResult
    public func append(_ entries: [AuditEntry], sync: Bool = true, now: Date = Date()) throws -> Int {
        try state.withLock { state in
            try lock.lock(timeout: 30)
            defer { lock.unlock() }
            try catchUp(&state)
            let first = state.range.size
            let time = AuditRecord.timestamp(now)
            var bytes: [UInt8] = []
            var hashes: [[UInt8]] = []
            for (index, entry) in entries.enumerated() {
                let record = AuditRecord(seq: first + index, time: time, actor: actor, tool: log.tool, event: entry.event,
                                         outcome: entry.outcome, token: log.token, facts: entry.facts)
                let line = try record.line()
                hashes.append(MerkleTree.leafHash(line))
                bytes += line + [0x0A]
            }
            try Self.write(bytes, descriptor: state.descriptor, path: log.logPath, sync: sync)
            state.offset += bytes.count
            for hash in hashes { state.range.append(leafHash: hash) }
            state.lastLeafHash = hashes.last ?? state.lastLeafHash
            state.unsynced = !sync
            return first
        }
    }

    /// Under the log's lock, hands the tree size and root of the whole log (with whatever other
    /// processes appended) to `seal`, which signs and anchors a checkpoint; records written
    /// without sync reach the disk first.
    public func seal<R: Sendable>(_ seal: ((size: Int, root: [UInt8])) throws -> R) throws -> R {
        try state.withLock { state in
            try lock.lock(timeout: 30)
            defer { lock.unlock() }
            try catchUp(&state)
            if state.unsynced {
                try Self.write([], descriptor: state.descriptor, path: log.logPath, sync: true)
                state.unsynced = false
            }
            let result = try seal((state.range.size, state.range.root))
            // The one-shot commands' cache: this tree is now the checkpoint's.
            TreeCache(size: state.range.size, offset: state.offset, lastLeafHash: hex(state.lastLeafHash),
                      frontier: state.range.hashes.map { hex($0) }).save(to: log.treePath)
            return result
        }
    }

    /// Reads what was appended since `state.offset` (the caller holds the file lock), opening
    /// the log (created, 0600) the first time and again if the file at its path was replaced.
    private func catchUp(_ state: inout State) throws {
        let path = log.logPath
        var atPath = stat()
        let exists = lstat(path, &atPath) == 0
        if state.descriptor >= 0, !exists || (UInt(atPath.st_dev), UInt(atPath.st_ino)) != state.inode {
            close(state.descriptor)
            state.descriptor = -1
        }
        if state.descriptor < 0 {
            let descriptor = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard descriptor >= 0 else {
                throw AuditError(.unwritable, "cannot open \(path) (\(String(cString: strerror(errno))))")
            }
            var opened = stat()
            guard fstat(descriptor, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFREG else {
                close(descriptor)
                throw AuditError(.unwritable, "\(path) is not a regular file")
            }
            state.descriptor = descriptor
            state.inode = (UInt(opened.st_dev), UInt(opened.st_ino))
        }
        let descriptor = state.descriptor
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw AuditError(.unreadable, "cannot stat \(path)") }
        let size = Int(status.st_size)
        guard size >= state.offset else {
            throw AuditError(.inconsistent, "\(path) is shorter than when this process last read it (\(size) < \(state.offset) bytes): records were cut off underneath")
        }
        guard size > state.offset else { return }
        guard let bytes = AuditLog.readFully(descriptor, at: state.offset, count: size - state.offset) else {
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))")
        }
        guard bytes.last == 0x0A else {
            throw AuditError(.tornTail, "\(path) ends in a torn record (an append was interrupted); run 'audit verify' to see it, then repair it deliberately")
        }
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        lines.removeLast()
        for line in lines {
            let index = state.range.size
            guard let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)), record.seq == index,
                  record.token.serial == log.token.serial else {
                throw AuditError(.inconsistent, "record \(index) of \(path) is not the record expected there; run 'audit verify'")
            }
            state.lastLeafHash = MerkleTree.leafHash(Array(line))
            state.range.append(leafHash: state.lastLeafHash)
        }
        state.offset = size
    }

    static func write(_ bytes: [UInt8], to path: String, sync: Bool) throws {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw AuditError(.unwritable, "cannot open \(path) (\(String(cString: strerror(errno))))") }
        defer { close(descriptor) }
        try write(bytes, descriptor: descriptor, path: path, sync: sync)
    }

    static func write(_ bytes: [UInt8], descriptor: Int32, path: String, sync: Bool) throws {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(descriptor, base + written, bytes.count - written)
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw AuditError(.unwritable, "cannot append to \(path) (\(String(cString: strerror(errno))))") }
            written += count
        }
        if sync {
            guard fdatasync(descriptor) == 0 else { throw AuditError(.unwritable, "cannot sync \(path) (\(String(cString: strerror(errno))))") }
        }
    }
}
