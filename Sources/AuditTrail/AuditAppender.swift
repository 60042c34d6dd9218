import ErrorShape
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
/// The same guarantees as ``AuditLog/append(_:now:anchor:seal:)``: it starts only on a log that
/// extends the anchored checkpoint it is given; records are numbered in file order under the
/// lock; a torn tail, a record out of place, a log that shrank or was replaced underneath is
/// refused, never repaired. With `sync: false` a record is written (and a failure to write it is an error)
/// but reaches the disk with the next synced append or ``seal(_:)``: for records that may wait
/// for the next one (a request's outcome), never for one an operation depends on.
public final class AuditAppender: Sendable {
    /// The log.
    public let log: AuditLog
    private let state: Mutex<State>
    private let actor: AuditRecord.Actor

    private struct State {
        /// The log's lock file, kept open; used only inside `state`'s lock, so by one thread at a
        /// time (the compiler sees to it: the lock is not Sendable).
        let lock: ReusableFileLock
        var offset = 0
        /// The active segment's first record and first byte in the log (``AuditSegments``).
        var base = 0
        var activeStart = 0
        /// The UTC day of the active segment's first record, once read (``AuditLog/sealsDaily``).
        var activeDay: Int?
        /// The tree so far, as its right frontier (O(log n) memory, O(log n) root).
        var range = MerkleTree.CompactRange()
        var lastLeafHash: [UInt8] = []
        var unsynced = false
        /// The log, kept open (O_APPEND) with the inode it had; reopened if the file was replaced.
        var descriptor: Int32 = -1
        var inode: (device: UInt, number: UInt) = (0, 0)
        /// The log's tiles, kept in step with `range` (nil until the start has read the log).
        var tiles: TileWriter?
    }

    /// Starts on the log as it is, which must extend `anchor` (the checkpoint anchored on the
    /// token, its signature verified by the caller): from the tree cache when it is the
    /// anchor's tree, otherwise after reading the whole log; no torn tail, every `seq` in place.
    public init(log: AuditLog, anchor: Checkpoint) throws {
        self.log = log
        self.actor = .current
        try log.requireTrustedFiles()
        try AtomicFile.makePrivateDirectory(log.directory.path)
        self.state = Mutex(State(lock: try ReusableFileLock(log.lockPath)))
        try state.withLock { state in
            try state.lock.lock(timeout: 30)
            defer { state.lock.unlock() }
            let segments = try log.segments()
            let start = try log.frontier(anchor: anchor, segments: segments)
            state.base = segments.base
            state.activeStart = segments.baseBytes
            // A seal interrupted before its rename: completed before this process appends.
            if try log.sealSegmentIfFull(size: start.range.size, base: segments.base) {
                state.base = start.range.size
                state.activeStart = start.offset
            }
            state.offset = start.offset
            state.range = start.range
            state.lastLeafHash = start.lastLeafHash
            try catchUp(&state)
            state.tiles = try TileWriter.open(log: log, at: AuditLog.Frontier(range: state.range, offset: state.offset,
                                                                              lastLeafHash: state.lastLeafHash))
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
            try state.lock.lock(timeout: 30)
            defer { state.lock.unlock() }
            try catchUp(&state)
            try sealDayIfOver(&state, now: now)
            let first = state.range.size
            let time = AuditRecord.timestamp(now)
            var bytes: [UInt8] = []
            var leaves: [(hash: MerkleTree.Hash, length: Int)] = []
            for (index, entry) in entries.enumerated() {
                let record = AuditRecord(seq: first + index, time: time, actor: actor, tool: log.tool, event: entry.event,
                                         outcome: entry.outcome, token: log.token, facts: entry.facts)
                let line = try record.line()
                leaves.append((MerkleTree.leafHash(line), line.count + 1))
                bytes += line + [0x0A]
            }
            try AuditFiles.appendWhole(bytes, descriptor: state.descriptor, path: log.logPath, sync: sync)
            // A full tile is synced: the records it covers are synced before it.
            var synced = sync
            let descriptor = state.descriptor
            let path = log.logPath
            try state.tiles?.record(leaves, after: state.offset, activeStart: state.activeStart, log: descriptor, path: path) {
                guard !synced else { return }
                guard fdatasync(descriptor) == 0 else {
                    throw AuditError(.unwritable, "cannot sync \(path) (\(String(cString: strerror(errno))))")
                }
                synced = true
            }
            state.offset += bytes.count
            for leaf in leaves { state.range.append(leafHash: leaf.hash) }
            state.lastLeafHash = leaves.last?.hash ?? state.lastLeafHash
            state.unsynced = !synced
            try sealSegmentIfFull(&state)
            return first
        }
    }

    /// Seals the active segment once it is full (``AuditLog/segmentRecords``): its records
    /// synced first; the next append opens a new one.
    private func sealSegmentIfFull(_ state: inout State) throws {
        guard state.range.size - state.base >= log.segmentRecords else { return }
        try sealActive(&state)
    }

    /// Before an append at `now`: seals the active segment when it holds records of an earlier
    /// UTC day (``AuditLog/sealsDaily``), and opens a new one.
    private func sealDayIfOver(_ state: inout State, now: Date) throws {
        guard log.sealsDaily, state.range.size > state.base else { return }
        if state.activeDay == nil { state.activeDay = try log.firstRecordTime().map(AuditLog.day(of:)) }
        guard let day = state.activeDay, day < AuditLog.day(of: now) else { return }
        try sealActive(&state)
        try catchUp(&state)
    }

    private func sealActive(_ state: inout State) throws {
        if state.unsynced {
            guard fdatasync(state.descriptor) == 0 else {
                throw AuditError(.unwritable, "cannot sync \(log.logPath) (\(String(cString: strerror(errno))))")
            }
            state.unsynced = false
        }
        try log.sealSegment(size: state.range.size, base: state.base)
        close(state.descriptor)
        state.descriptor = -1
        state.base = state.range.size
        state.activeStart = state.offset
        state.activeDay = nil
    }

    /// Under the log's lock, hands the tree size and root of the whole log (with whatever other
    /// processes appended) to `seal`, which signs and anchors a checkpoint; records written
    /// without sync reach the disk first.
    public func seal<R: Sendable>(_ seal: ((size: Int, root: [UInt8])) throws -> R) throws -> R {
        try state.withLock { state in
            try state.lock.lock(timeout: 30)
            defer { state.lock.unlock() }
            try catchUp(&state)
            if state.unsynced, state.descriptor >= 0 {
                guard fdatasync(state.descriptor) == 0 else {
                    throw AuditError(.unwritable, "cannot sync \(log.logPath) (\(String(cString: strerror(errno))))")
                }
                state.unsynced = false
            }
            // What other processes appended since is in the tiles before the tree is signed.
            try state.tiles?.flush()
            let result = try seal((state.range.size, state.range.root))
            // The one-shot commands' cache: this tree is now the checkpoint's.
            TreeCache(size: state.range.size, offset: state.offset, lastLeafHash: hex(state.lastLeafHash),
                      frontier: state.range.hashes.map { hex($0) }).save(to: log.treePath)
            return result
        }
    }

    /// Reads what was appended since `state.offset` (the caller holds the file lock), opening
    /// the log (created, 0600) the first time. A log replaced underneath (another file at its
    /// path) is refused: what this process read and will sign over is the old one's.
    private func catchUp(_ state: inout State) throws {
        let path = log.logPath
        if state.descriptor >= 0 {
            var atPath = stat()
            if lstat(path, &atPath) != 0 || (UInt(atPath.st_dev), UInt(atPath.st_ino)) != state.inode {
                try followSealedSegment(&state)
            }
        }
        if state.descriptor < 0 {
            guard let descriptor = try AuditFiles.open(path, O_RDWR | O_APPEND, create: true) else {
                throw AuditError(.unwritable, "cannot open \(path)")
            }
            var opened = stat()
            guard fstat(descriptor, &opened) == 0 else {
                close(descriptor)
                throw AuditError(.unreadable, "cannot examine \(path)")
            }
            state.descriptor = descriptor
            state.inode = (UInt(opened.st_dev), UInt(opened.st_ino))
        }
        try readAppended(&state)
    }

    /// Another process sealed the active segment this one had open (renamed it into the
    /// segment directory): what it appended before is read from the open file, which must now be
    /// that segment; the new active segment is opened by the caller. Anything else at the
    /// log's path is refused: what this process read and will sign over is the old one's.
    private func followSealedSegment(_ state: inout State) throws {
        let path = log.logPath
        let refused = AuditError(.inconsistent, "\(path) was removed or replaced by another file while this process appended to it; nothing more is appended or signed")
        let segments = try log.segments()
        guard let sealed = segments.sealed.first(where: { $0.first == state.base }), let sealedPath = sealed.path else { throw refused }
        var status = stat()
        guard lstat(sealedPath, &status) == 0, (UInt(status.st_dev), UInt(status.st_ino)) == state.inode else { throw refused }
        try readAppended(&state)
        guard state.range.size == sealed.end, state.offset == sealed.start + sealed.bytes else { throw refused }
        close(state.descriptor)
        state.descriptor = -1
        state.base = sealed.end
        state.activeStart = state.offset
        state.activeDay = nil
        // Others may have sealed more segments since (each one whole appends of theirs): read
        // in order, each record checked in its place as in the active file.
        let before = state
        do {
            for later in segments.sealed where later.first >= state.base {
                guard later.first == state.range.size, later.start == state.offset, let laterPath = later.path,
                      let file = try AuditFiles.open(laterPath, O_RDONLY) else { throw refused }
                state.descriptor = file
                state.activeStart = later.start
                defer {
                    close(file)
                    state.descriptor = -1
                }
                try readAppended(&state)
                guard state.range.size == later.end, state.offset == later.start + later.bytes else { throw refused }
                state.base = later.end
                state.activeStart = state.offset
                state.activeDay = nil
            }
        } catch {
            state = before
            throw error
        }
    }

    /// Reads the records other processes appended to the open active segment since this one
    /// last did.
    private func readAppended(_ state: inout State) throws {
        let path = log.logPath
        let descriptor = state.descriptor
        let local = state.offset - state.activeStart
        let size = try AuditFiles.size(descriptor, path)
        guard size >= local else {
            throw AuditError(.inconsistent, "\(path) is shorter than when this process last read it (\(size) < \(local) bytes): records were cut off underneath")
        }
        guard size > local else { return }
        guard size - local <= 64 << 20 else {
            throw AuditError(.inconsistent, "\(path) grew by more than 64 MiB since this process last read it: no process of this tool appends that much between two of its records; nothing more is appended or signed")
        }
        guard let bytes = AuditFiles.readFully(descriptor, at: local, count: size - local) else {
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))")
        }
        guard bytes.last == 0x0A else {
            throw AuditError(.tornTail, "\(path) ends in a torn record (an append was interrupted); verify the log to see it, then repair it deliberately")
        }
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        lines.removeLast()
        var end = state.offset
        for line in lines {
            let index = state.range.size
            if let problem = LogScan.problem(line, at: index, serial: log.token.serial, canonical: true) {
                throw AuditError(.inconsistent, "record \(index) of \(path): \(problem); nothing more is appended or signed", facts: ErrorFacts(path: path, recordIndex: index))
            }
            state.lastLeafHash = MerkleTree.leafHash(Array(line))
            state.range.append(leafHash: state.lastLeafHash)
            end += line.count + 1
            state.tiles?.append(leafHash: state.lastLeafHash, endOffset: end)
        }
        state.offset = state.activeStart + size
    }
}
