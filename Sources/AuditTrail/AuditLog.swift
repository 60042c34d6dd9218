import ErrorShape
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import HexEncoding
import TransparencyLog

/// One token's audit log: `<serial>.jsonl` (one JSON record per line; line *i* is Merkle leaf
/// *i*) in a private directory (0700; files 0600), appended under a file lock.
///
/// Fails closed: a record that cannot be written is an error (the caller does not perform, or
/// reports loudly, the operation). A torn last line (a process killed mid-append) is never
/// accepted and never silently repaired: appending refuses until ``repairTornTail()`` is run
/// deliberately (and that itself is recorded).
public struct AuditLog: Sendable {
    /// The directory holding the logs.
    public let directory: URL
    /// The token the log is about.
    public let token: AuditRecord.Token
    /// The tool writing it.
    public let tool: AuditRecord.Tool
    /// Records after which the active segment is sealed (``AuditSegments``).
    public let segmentRecords: Int
    /// Whether the first append of a UTC day seals the active segment when it holds records of
    /// an earlier day (so that `audit archive --before` finds whole days however few records
    /// a day brings).
    public let sealsDaily: Bool

    /// The log of `token` in `directory`.
    public init(directory: URL, token: AuditRecord.Token, tool: AuditRecord.Tool, segmentRecords: Int = AuditSegments.defaultRecords,
                sealsDaily: Bool = true) {
        self.directory = directory
        self.token = token
        self.tool = tool
        self.segmentRecords = max(segmentRecords, 1)
        self.sealsDaily = sealsDaily
    }

    /// `<serial>.jsonl`: the active segment (the whole log, until one is sealed).
    public var logPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).jsonl").path }
    /// `<serial>.checkpoint`.
    public var checkpointPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).checkpoint").path }

    /// `<serial>.tree`: the cached frontier.
    var treePath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).tree").path }
    /// `<serial>.tiles`: the tree's hashes as C2SP tiles, and the offset index (``TileStore``).
    public var tilesPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).tiles").path }
    /// `<serial>.segments`: the sealed segments (``AuditSegments``).
    public var segmentsPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).segments").path }
    /// The lock every writer of the log holds.
    public var lockPath: String { logPath + ".lock" }
    /// The lock held while the audit key is made.
    public var keyLockPath: String { logPath + ".key.lock" }

    /// Refuses (``AuditError/Code/untrustedFile``) a trail someone else could have written: the
    /// directory, the log, its checkpoint, cache and locks must be this user's (or root's),
    /// regular files (or the directory) themselves, and writable by nobody else. Missing ones
    /// pass: they are made private.
    public func requireTrustedFiles() throws {
        try AuditFiles.requireTrusted(directory: directory.path, files: [logPath, checkpointPath, treePath, lockPath, keyLockPath])
        try AuditFiles.requireTrusted(directory: tilesPath, files: [tilesPath + "/offsets"])
        try AuditFiles.requireTrusted(directory: segmentsPath, files: [])
    }

    /// The sealed segments as they are now.
    public func segments() throws -> AuditSegments {
        try AuditSegments.load(segmentsPath)
    }

    /// One pass over the whole log, its sealed segments then the active one (``LogScan``).
    func scanLog(prefixSizes: Set<Int> = [], canonicalFrom: Int = .max, hashOnlyBelow: Int = 0, upTo limit: Int = .max,
                 segments known: AuditSegments? = nil, active: Int32? = nil,
                 visit: ((Int, UnsafeRawBufferPointer) throws -> Void)? = nil,
                 leaves: ((Int, Int, MerkleTree.Hash) -> Void)? = nil) throws -> LogScan {
        let segments = try known ?? self.segments()
        return try LogScan.scan(parts: LogScan.parts(of: self, segments: segments, active: active), serial: token.serial, prefixSizes: prefixSizes,
                                canonicalFrom: canonicalFrom, hashOnlyBelow: hashOnlyBelow, upTo: limit, visit: visit, leaves: leaves)
    }

    /// Appends the entries as consecutive records and, still holding the lock, hands the new
    /// tree size and root to `seal` (which signs and anchors a checkpoint): checkpoints are then
    /// made in the order of the log, never an older one after a newer.
    ///
    /// `anchor` is called under the lock and returns the checkpoint the caller trusts (the one
    /// anchored on the token, its signature verified): the log on disk must extend it (at least
    /// its size, and the root over that prefix is its root) and every record after it must be
    /// the one that belongs at its place; otherwise nothing is appended or sealed
    /// (``AuditError/Code/inconsistent``, naming where the log parts from it).
    ///
    /// The tree's right frontier is cached beside the log (`<serial>.tree`) so that an append
    /// reads only the records added since. The cache is used only when its tree is the anchor's
    /// (size and root) and the line at its offset still hashes as it recorded: the frontier
    /// signed over is then the anchored tree's, whatever was done to the lines before it.
    public func append<R>(_ entries: [AuditEntry], now: Date = Date(), anchor: () throws -> Checkpoint,
                          seal: ((size: Int, root: [UInt8])) throws -> R) throws -> R {
        try withLock("audit append") {
            let trusted = try anchor()
            var segments = try self.segments()
            let state = try frontier(anchor: trusted, segments: segments)
            // A seal interrupted between its chmod and its rename left a full, read-only active
            // file: sealed now, before anything is appended to it.
            if try sealSegmentIfFull(size: state.range.size, segments: segments) { segments = try self.segments() }
            segments = try sealDayIfOver(state, segments: segments, now: now)
            var tiles = try TileWriter.open(log: self, at: state)
            let descriptor = try openForAppend()
            defer { close(descriptor) }
            let (bytes, range, last, leaves) = try encode(entries, after: state, now: now)
            try AuditFiles.appendWhole(bytes, descriptor: descriptor, path: logPath, sync: true)
            try tiles.record(leaves, after: state.offset, activeStart: segments.baseBytes, log: descriptor, path: logPath)
            let result = try seal((range.size, range.root))
            TreeCache(size: range.size, offset: state.offset + bytes.count, lastLeafHash: hex(last),
                      frontier: range.hashes.map(hex)).save(to: treePath)
            try sealSegmentIfFull(size: range.size, segments: segments)
            return result
        }
    }

    /// Appends records that no checkpoint is signed over now (a refused login, a failed command:
    /// the token may not be usable); the next sealed append covers them. Returns the new size.
    @discardableResult
    public func appendUnsealed(_ entries: [AuditEntry], now: Date = Date()) throws -> Int {
        try withLock("audit append") {
            var segments = try self.segments()
            let state = try frontier(anchor: nil, segments: segments)
            if try sealSegmentIfFull(size: state.range.size, segments: segments) { segments = try self.segments() }
            segments = try sealDayIfOver(state, segments: segments, now: now)
            var tiles = try TileWriter.open(log: self, at: state)
            let descriptor = try openForAppend()
            defer { close(descriptor) }
            let (bytes, range, _, leaves) = try encode(entries, after: state, now: now)
            try AuditFiles.appendWhole(bytes, descriptor: descriptor, path: logPath, sync: true)
            try tiles.record(leaves, after: state.offset, activeStart: segments.baseBytes, log: descriptor, path: logPath)
            try sealSegmentIfFull(size: range.size, segments: segments)
            return range.size
        }
    }

    /// Hands the tree of the log as it is to `seal` (under the lock), for a trail without a
    /// usable anchor: a new audit key's first checkpoint, or a person's re-anchoring. Every
    /// record must be in its place and the last line whole; nothing is appended.
    public func sealAsItIs<R>(_ seal: ((size: Int, root: [UInt8])) throws -> R) throws -> R {
        try withLock("audit anchor") {
            let scan = try scanLog()
            if let damage = scan.damage { throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason); nothing was signed", facts: ErrorFacts(path: logPath, recordIndex: damage.index)) }
            if scan.tornBytes > 0 { throw AuditError(.tornTail, tornMessage(at: scan.range.size)) }
            // The tiles of the log as it is (not of what it held before) exist before it is signed.
            let frontier = Frontier(range: scan.range, offset: scan.offset, lastLeafHash: scan.lastLeafHash)
            _ = try TileWriter.open(log: self, at: frontier, replacing: true)
            let result = try seal((scan.range.size, scan.range.root))
            TreeCache(size: scan.range.size, offset: scan.offset, lastLeafHash: scan.range.size > 0 ? hex(scan.lastLeafHash) : nil,
                      frontier: scan.range.hashes.map(hex)).save(to: treePath)
            return result
        }
    }

    /// The bytes of `<serial>.checkpoint` (a copy of the token's anchor for convenience; never
    /// trusted on its own); nil when there is none.
    public func checkpointFile() throws -> [UInt8]? {
        try AuditFiles.readSmall(checkpointPath)
    }

    /// Checks, under the lock, that the log extends `anchor` as ``append(_:now:anchor:seal:)``
    /// requires, without appending: before an operation whose record must be writable.
    /// Returns the log's size.
    @discardableResult
    public func requireExtends(_ anchor: Checkpoint) throws -> Int {
        try withLock("audit check") { try frontier(anchor: anchor, segments: try segments()).range.size }
    }

    /// The records as they are, checked against `checkpoints` (each must be a prefix of the
    /// log): one pass, O(log n) memory. Throws ``AuditError/Code/inconsistent`` at the first
    /// record out of place, a torn last line, or a checkpoint the log does not extend.
    /// - Parameter leaves: called with each record's index, line length (newline included) and
    ///   leaf hash, as the pass computes them (for ``verifyWithTiles(against:)``).
    public func verify(against checkpoints: [(name: String, checkpoint: Checkpoint)],
                       leaves: ((_ index: Int, _ length: Int, _ leafHash: MerkleTree.Hash) -> Void)? = nil) throws -> (size: Int, root: [UInt8]) {
        // Records after the largest checkpoint are vouched for by nothing but their form.
        let sealed = checkpoints.map(\.checkpoint.treeSize).max() ?? 0
        let view = try settledView()
        defer { if let active = view.active { close(active) } }
        try view.segments.requireArchived(within: sealed, by: "the largest")
        // The newest `audit.archived` record a stub names says which segments were archived.
        let stubs = view.segments.sealed.compactMap(\.stub)
        let newest = stubs.compactMap(\.record).max()
        var named: [UInt8]?
        let scan = try scanVouched(prefixSizes: Set(checkpoints.map(\.checkpoint.treeSize)), canonicalFrom: sealed,
                                   vouchedBy: checkpoints.map(\.checkpoint), upTo: view.limit, segments: view.segments,
                                   active: view.active, visit: newest.map { wanted in { index, line in if index == wanted { named = Array(line) } } },
                                   leaves: leaves)
        if let damage = scan.damage { throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason)", facts: ErrorFacts(path: logPath, recordIndex: damage.index)) }
        if scan.tornBytes > 0 {
            throw AuditError(.tornTail, "record \(scan.range.size): the last line is torn (\(scan.tornBytes) bytes after the last whole record: an append was interrupted, or a record's end was cut)")
        }
        for (name, checkpoint) in checkpoints {
            try Self.requireExtends(scan, checkpoint, name: name, knownFrontier: nil)
        }
        try Self.requireRecorded(stubs, newest: newest, line: named, sealed: sealed, directory: view.segments.directory)
        return (scan.range.size, scan.range.root)
    }

    /// Cuts a torn last line off, and only that: the bytes after the last newline, when they lie
    /// beyond the `anchor`'s records and the log extends the anchor. A line inside the anchored
    /// tree that lost its newline is not an interrupted append but an edit
    /// (``AuditError/Code/inconsistent``). Without an anchor (a person re-anchoring), only the
    /// records' places are checked. Returns the bytes removed.
    public func repairTornTail(anchor: Checkpoint?) throws -> Int {
        try withLock("audit repair") {
            let segments = try self.segments()
            let scan = try scanLog(prefixSizes: anchor.map { [$0.treeSize] } ?? [], segments: segments)
            guard scan.tornBytes > 0 else { return 0 }
            if let anchor {
                guard scan.range.size >= anchor.treeSize else {
                    throw AuditError(.inconsistent, "record \(scan.range.size) is torn, but the token's checkpoint sealed \(anchor.treeSize) whole records: a sealed record was cut, which is tampering, not an interrupted append; nothing was repaired")
                }
                try Self.requireExtends(scan, anchor, name: "the token's", knownFrontier: nil)
            }
            if let damage = scan.damage { throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason); nothing was repaired", facts: ErrorFacts(path: logPath, recordIndex: damage.index)) }
            guard let descriptor = try AuditFiles.open(logPath, O_RDWR) else { return 0 }
            defer { close(descriptor) }
            guard scan.offset >= segments.baseBytes, ftruncate(descriptor, off_t(scan.offset - segments.baseBytes)) == 0, fdatasync(descriptor) == 0 else {
                throw AuditError(.unwritable, "cannot cut \(logPath) (\(String(cString: strerror(errno))))")
            }
            return scan.tornBytes
        }
    }

    /// True when the log's last byte is not a newline (an append was interrupted): read from the
    /// end of the file alone, so it costs the same however long the log is.
    public func hasTornTail() throws -> Bool {
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return false }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, logPath)
        guard size > 0 else { return false }
        guard let last = AuditFiles.readFully(descriptor, at: size - 1, count: 1) else {
            throw AuditError(.unreadable, "cannot read \(logPath) (\(String(cString: strerror(errno))))")
        }
        return last != [0x0A]
    }

    /// The number of whole records and whether anything follows the last (one pass, nothing
    /// kept).
    public func summary() throws -> (records: Int, tornBytes: Int, damage: (index: Int, reason: String)?) {
        let scan = try scanLog()
        return (scan.range.size, scan.tornBytes, scan.damage)
    }

    /// Whether the log holds anything at all.
    public func isEmpty() throws -> Bool {
        guard try segments().sealed.isEmpty else { return false }
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return true }
        defer { close(descriptor) }
        return try AuditFiles.size(descriptor, logPath) == 0
    }

    /// The complete lines of the log, in order (a torn tail left out), each the exact bytes of
    /// a record without its newline: the Merkle leaves. Refused (``AuditError/Code/unreadable``)
    /// while a segment is archived and not back in place.
    /// - Parameter skippingArchived: leave out the records of archived segments instead (for a
    ///   reader that looks for records and does not need their places).
    public func lines(skippingArchived: Bool = false) throws -> [[UInt8]] {
        let segments = try self.segments()
        if !skippingArchived, let away = segments.archivedAway.first { throw AuditSegments.archivedError(away, log: self) }
        var lines: [[UInt8]] = []
        _ = try scanLog(segments: segments, visit: { _, line in lines.append(Array(line)) })
        return lines
    }

    /// The frontier over the whole log, the byte offset of its end and the last leaf hash (the
    /// caller holds the lock): from the cache and the lines after it, or from a full pass; with
    /// `anchor`, only a log that extends it. Refuses a torn tail and a record out of place.
    func frontier(anchor: Checkpoint?, segments: AuditSegments) throws -> Frontier {
        if let anchor { try segments.requireArchived(within: anchor.treeSize, by: "the token's") }
        let cache = (try? AuditFiles.readSmall(treePath)).flatMap { $0.flatMap { TreeCache(text: String(decoding: $0, as: UTF8.self)) } }
        var anchoredFrontier: MerkleTree.CompactRange?
        if let cache, let range = cache.range {
            let usable = anchor.map { range.size == $0.treeSize && range.root == $0.rootHash } ?? true
            if usable, anchor != nil { anchoredFrontier = range }
            if usable, let tail = try readTail(after: cache.offset, lastLeafHash: cache.lastLeafHash, size: range.size, segments: segments) {
                if tail.torn { throw AuditError(.tornTail, tornMessage(at: range.size + tail.lines.count)) }
                var extended = range
                var last = cache.lastLeafHash.flatMap { bytes(fromHex: $0) } ?? []
                for line in tail.lines {
                    if let problem = LogScan.problem(line, at: extended.size, serial: token.serial, canonical: true) {
                        throw AuditError(.inconsistent, "record \(extended.size): \(problem); nothing was appended")
                    }
                    last = MerkleTree.leafHash(line)
                    extended.append(leafHash: last)
                }
                return Frontier(range: extended, offset: tail.end, lastLeafHash: last)
            }
        }
        let scan = try scanVouched(prefixSizes: anchor.map { [$0.treeSize] } ?? [], canonicalFrom: anchor?.treeSize ?? 0,
                                   vouchedBy: anchor.map { [$0] } ?? [], segments: segments)
        if let anchor { try Self.requireExtends(scan, anchor, name: "the token's", knownFrontier: anchoredFrontier) }
        if let damage = scan.damage { throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason); nothing was appended", facts: ErrorFacts(path: logPath, recordIndex: damage.index)) }
        if scan.tornBytes > 0 { throw AuditError(.tornTail, tornMessage(at: scan.range.size)) }
        if let anchor, scan.range.size == anchor.treeSize, scan.range.size > 0 {
            // The log is exactly the anchored tree, just proven: the next command need not read
            // it all again.
            TreeCache(size: scan.range.size, offset: scan.offset, lastLeafHash: hex(scan.lastLeafHash),
                      frontier: scan.range.hashes.map(hex)).save(to: treePath)
        }
        return Frontier(range: scan.range, offset: scan.offset, lastLeafHash: scan.lastLeafHash)
    }

    /// One pass over the log that decodes only the records no signed checkpoint vouches for:
    /// the records of the largest of `checkpoints` are hashed, and when every checkpoint's root
    /// is the log's over its prefix, they are the records that were sealed (each checked in its
    /// place before it was). Otherwise the log is read again with every record checked, so that
    /// what is reported is the first record out of place, as a full check finds it.
    /// `leaves` sees each record once: the second pass, when there is one, only finds the
    /// record that makes the log fail.
    func scanVouched(prefixSizes: Set<Int>, canonicalFrom: Int, vouchedBy checkpoints: [Checkpoint], upTo limit: Int = .max,
                     segments: AuditSegments, active: Int32? = nil, visit: ((Int, UnsafeRawBufferPointer) throws -> Void)? = nil,
                     leaves: ((Int, Int, MerkleTree.Hash) -> Void)? = nil) throws -> LogScan {
        let vouched = checkpoints.map(\.treeSize).max() ?? 0
        let sizes = prefixSizes.union(checkpoints.map(\.treeSize))
        if vouched > 0 {
            let fast = try scanLog(prefixSizes: sizes, canonicalFrom: canonicalFrom, hashOnlyBelow: vouched, upTo: limit,
                                   segments: segments, active: active, visit: visit, leaves: leaves)
            if checkpoints.allSatisfy({ fast.prefixes[$0.treeSize]?.root == $0.rootHash }) { return fast }
        }
        return try scanLog(prefixSizes: sizes, canonicalFrom: canonicalFrom, upTo: limit, segments: segments, active: active,
                           visit: visit, leaves: vouched > 0 ? nil : leaves)
    }

    /// The log's length at a moment no append is under way: read holding the log's lock, which
    /// every writer holds from a record's first byte to its last. A verification beside a
    /// running proxy then reads whole records up to there and never takes a record being written
    /// for a torn one. Whoever cannot take the lock (a read-only copy, an auditor without write
    /// access to the directory) reads to the end as it is.
    ///
    /// The segments are listed and the active segment opened under the same lock: a segment
    /// sealed while the pass reads is still read as the file it was (the descriptor follows the
    /// rename), never as the new active file. The caller closes `active`.
    func settledView() throws -> (segments: AuditSegments, active: Int32?, limit: Int) {
        var status = stat()
        let lock = lstat(lockPath, &status) == 0 ? try? FileLock.acquire(lockPath, timeout: 30, note: "pid \(getpid()): audit verify") : nil
        defer { lock?.release() }
        let segments = try self.segments()
        let active = try AuditFiles.open(logPath, O_RDONLY)
        guard lock != nil else { return (segments, active, .max) }
        do {
            return (segments, active, segments.baseBytes + (try active.map { try AuditFiles.size($0, logPath) } ?? 0))
        } catch {
            if let active { close(active) }
            throw error
        }
    }

    /// Every stub must be one of the segments the newest `audit.archived` record any stub names
    /// (`line`, read by the pass: a sealed record, so the tree vouches for it) says were
    /// archived so far: its `archivedSoFar` counts them and hashes their facts
    /// (``ArchivedSegment/digest(_:)``). A stub that no such record covers (a sealed segment
    /// deleted behind a stub computed from it, a stub changed, one left out) is refused. That
    /// record comes after every segment it names, so it is never itself archived without a newer
    /// one.
    static func requireRecorded(_ stubs: [ArchivedSegment], newest: Int?, line: [UInt8]?, sealed: Int, directory: String) throws {
        guard !stubs.isEmpty else { return }
        func refused(_ why: String) -> AuditError {
            AuditError(.inconsistent, "\(directory): \(why): a sealed segment was removed behind a stub, or a stub was changed; the records it stands for are not proven archived", facts: ErrorFacts(path: directory))
        }
        if let unnamed = stubs.first(where: { $0.record == nil }) {
            throw refused("the stub of records \(unnamed.first)–\(unnamed.first + unnamed.count - 1) names no audit.archived record")
        }
        guard let newest, newest < sealed else {
            throw refused("the audit.archived record the stubs name (record \(newest ?? -1)) is not among the \(sealed) records a signed checkpoint seals")
        }
        guard let line, let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)), record.event == "audit.archived",
              case .object(let soFar)? = record.facts["archivedSoFar"], case .integer(let count)? = soFar["segments"],
              case .string(let digest)? = soFar["sha256"] else {
            throw refused("record \(newest), which the stubs name, is not an audit.archived record that lists what was archived")
        }
        guard count == stubs.count, digest == ArchivedSegment.digest(stubs) else {
            throw refused("the \(stubs.count) archived segments here are not the \(count) that record \(newest) (audit.archived) says were archived")
        }
    }

    /// Where a log stands for the next append.
    struct Frontier {
        var range: MerkleTree.CompactRange
        var offset: Int
        var lastLeafHash: [UInt8]
    }

    /// Throws unless the scanned log extends `checkpoint`; the message names the first record
    /// out of place, or the narrowest range of records that differ when `knownFrontier` (the
    /// checkpoint's own frontier, from the cache) says it.
    static func requireExtends(_ scan: LogScan, _ checkpoint: Checkpoint, name: String, knownFrontier: MerkleTree.CompactRange?) throws {
        let size = checkpoint.treeSize
        if let damage = scan.damage, damage.index < size {
            throw AuditError(.inconsistent, "record \(damage.index): \(damage.reason) (inside the \(size) records \(name) checkpoint sealed); nothing was appended or signed", facts: ErrorFacts(recordIndex: damage.index))
        }
        guard scan.range.size >= size, let prefix = scan.prefixes[size] else {
            let hint = scan.range.size == 0 ? " (or this is not the audit directory the token's trail is kept in: one token has one trail)" : ""
            throw AuditError(.inconsistent, "\(name) checkpoint seals \(size) records but the log holds \(scan.range.size) whole ones: records \(scan.range.size)–\(size - 1) were cut off or the log was replaced by an older one\(hint)")
        }
        guard prefix.root == checkpoint.rootHash else {
            var which = "one of records 0–\(size - 1) was edited, or the log was replaced"
            if let knownFrontier, let differ = prefix.firstDifference(from: knownFrontier) {
                which = differ.count == 1 ? "record \(differ.lowerBound) differs" : "a record among \(differ.lowerBound)–\(differ.upperBound - 1) differs"
            }
            throw AuditError(.inconsistent, "the log's first \(size) records are not the ones \(name) checkpoint sealed (\(which)); nothing was appended or signed")
        }
    }

    private func tornMessage(at index: Int) -> String {
        "record \(index) of \(logPath) is torn (the log does not end in a newline: an append was interrupted); nothing was appended"
    }

    /// Runs `body` holding the log's lock, after the trust check of the trail's files.
    func withLock<R>(_ what: String, _ body: () throws -> R) throws -> R {
        try requireTrustedFiles()
        try AtomicFile.makePrivateDirectory(directory.path)
        let lock = try FileLock.acquire(lockPath, timeout: 30, note: "pid \(getpid()): \(what)")
        defer { lock.release() }
        return try body()
    }

    private func openForAppend() throws -> Int32 {
        guard let descriptor = try AuditFiles.open(logPath, O_WRONLY | O_APPEND, create: true) else {
            throw AuditError(.unwritable, "cannot open \(logPath)")
        }
        return descriptor
    }

    /// The entries as records after `state`: their bytes, the tree with them, the last leaf hash,
    /// and each record's leaf hash and length (newline included).
    private func encode(_ entries: [AuditEntry], after state: Frontier, now: Date) throws
        -> ([UInt8], MerkleTree.CompactRange, [UInt8], [(hash: MerkleTree.Hash, length: Int)]) {
        var range = state.range
        var last = state.lastLeafHash
        var bytes: [UInt8] = []
        var leaves: [(hash: MerkleTree.Hash, length: Int)] = []
        let time = AuditRecord.timestamp(now)
        for entry in entries {
            let record = AuditRecord(seq: range.size, time: time, actor: .current, tool: tool, event: entry.event,
                                     outcome: entry.outcome, token: token, facts: entry.facts)
            let line = try record.line()
            last = MerkleTree.leafHash(line)
            range.append(leafHash: last)
            bytes += line + [0x0A]
            leaves.append((last, line.count + 1))
        }
        return (bytes, range, last, leaves)
    }

    /// The complete lines after byte `offset`, if the cache's offset still fits the file: it
    /// ends a line (or is 0), and that line's leaf hash is `lastLeafHash`. Nil: read everything.
    ///
    /// The line at the offset must also be record `size - 1` (its `seq`), and the tail at most
    /// 64 MiB (more is read by the streaming pass instead).
    func readTail(after virtualOffset: Int, lastLeafHash: String?, size records: Int, segments: AuditSegments) throws -> (lines: [[UInt8]], torn: Bool, end: Int)? {
        let activeStart = segments.baseBytes
        let offset = virtualOffset - activeStart
        guard records >= segments.base, offset >= 0 else { return nil }
        if offset == 0, activeStart > 0 {
            // Just after a segment was sealed: the cache's last line is that segment's last.
            guard records == segments.base, let last = segments.sealed.last, let path = last.path,
                  let ending = try lastLine(of: path, size: last.bytes),
                  hex(MerkleTree.leafHash(ending)) == lastLeafHash, LogScan.problem(ending, at: records - 1, serial: token.serial) == nil else { return nil }
        }
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return offset == 0 ? ([], false, virtualOffset) : nil }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, logPath)
        guard offset <= size, size - offset <= 64 << 20 else { return nil }
        func read(_ start: Int, _ count: Int) -> [UInt8]? { AuditFiles.readFully(descriptor, at: start, count: count) }
        if offset > 0 {
            // The line that ends at `offset` must be the one the cache last saw.
            let window = min(offset, 1 << 20)
            guard let before = read(offset - window, window), before.last == 0x0A, let expected = lastLeafHash else { return nil }
            let body = before.dropLast()
            guard let start = body.lastIndex(of: 0x0A).map({ $0 + 1 }) ?? (window == offset ? body.startIndex : nil) else { return nil }
            guard hex(MerkleTree.leafHash(Array(body[start...]))) == expected,
                  LogScan.problem(body[start...], at: records - 1, serial: token.serial) == nil else { return nil }
        }
        guard let rest = read(offset, size - offset) else { return nil }
        if rest.isEmpty { return ([], false, virtualOffset) }
        var lines = rest.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        let torn = rest.last != 0x0A
        lines.removeLast()
        return (lines, torn, virtualOffset + rest.count)
    }

    /// The last line of a file of `size` bytes that ends in a newline (without it); nil otherwise.
    private func lastLine(of path: String, size: Int) throws -> [UInt8]? {
        guard size > 0, let descriptor = try AuditFiles.open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        let window = min(size, 1 << 20)
        guard let bytes = AuditFiles.readFully(descriptor, at: size - window, count: window), bytes.last == 0x0A else { return nil }
        let body = bytes.dropLast()
        guard let start = body.lastIndex(of: 0x0A).map({ $0 + 1 }) ?? (window == size ? body.startIndex : nil) else { return nil }
        return Array(body[start...])
    }

    /// Seals the active segment (the caller holds the lock, its records are on disk) when it
    /// holds ``segmentRecords`` records or more: it is made read-only and renamed into the
    /// segment directory, durably; the next append starts a new one. True when it did.
    @discardableResult
    func sealSegmentIfFull(size: Int, segments: AuditSegments) throws -> Bool {
        try sealSegmentIfFull(size: size, base: segments.base)
    }

    /// ``sealSegmentIfFull(size:segments:)`` for a caller that knows where the active segment starts.
    func sealSegmentIfFull(size: Int, base: Int) throws -> Bool {
        guard size - base >= segmentRecords else { return false }
        try sealSegment(size: size, base: base)
        return true
    }

    /// Before an append at `now`: seals the active segment when its first record is of an
    /// earlier UTC day (``sealsDaily``). Returns the segments as they are then.
    func sealDayIfOver(_ state: Frontier, segments: AuditSegments, now: Date) throws -> AuditSegments {
        guard sealsDaily, state.range.size > segments.base, let first = try firstRecordTime(),
              Self.day(of: first) < Self.day(of: now) else { return segments }
        try sealSegment(size: state.range.size, base: segments.base)
        return try self.segments()
    }

    /// The UTC day of a time (days since 1970).
    static func day(of date: Date) -> Int {
        let seconds = date.timeIntervalSince1970
        guard seconds.isFinite, abs(seconds) < 1e15 else { return 0 }
        return Int((seconds / 86_400).rounded(.down))
    }

    /// The `time` of the active segment's first record (nil: none, or not readable as one).
    func firstRecordTime() throws -> Date? {
        guard let descriptor = try AuditFiles.open(logPath, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        let size = try AuditFiles.size(descriptor, logPath)
        let window = min(size, 64 * 1024)
        guard window > 0, let bytes = AuditFiles.readFully(descriptor, at: 0, count: window),
              let newline = bytes.firstIndex(of: 0x0A) else { return nil }
        struct Time: Decodable { let time: String }
        guard let time = try? JSONDecoder().decode(Time.self, from: Data(bytes[..<newline])) else { return nil }
        return try? Date(time.time, strategy: .iso8601)
    }

    /// Seals the active segment of records `[base, size)` (the caller holds the lock, they
    /// are on disk).
    func sealSegment(size: Int, base: Int) throws {
        let count = size - base
        guard count > 0 else { return }
        try AtomicFile.makePrivateDirectory(segmentsPath)
        let target = segmentsPath + "/" + AuditSegments.name(first: base, count: count, kind: "jsonl")
        var status = stat()
        guard lstat(target, &status) != 0 else {
            throw AuditError(.inconsistent, "\(target) exists already: a segment is never replaced; nothing was sealed", facts: ErrorFacts(path: target))
        }
        guard chmod(logPath, 0o400) == 0, rename(logPath, target) == 0 else {
            throw AuditError(.unwritable, "cannot seal the segment \(target) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: logPath))
        }
        try AuditFiles.syncDirectory(segmentsPath)
        try AuditFiles.syncDirectory(directory.path)
    }

    /// The log's records as they are on disk, checked: every line a record whose `seq` is its
    /// index and whose token is this log's; no torn tail. Returns the leaf hashes on success
    /// (O(n) memory: for proofs; ``verify(against:)`` checks in O(log n)).
    public func verify() throws -> AuditVerification {
        var hashes: [[UInt8]] = []
        let segments = try self.segments()
        if let away = segments.archivedAway.first { throw AuditSegments.archivedError(away, log: self) }
        let scan = try scanLog(segments: segments, visit: { _, line in hashes.append(MerkleTree.leafHash(line)) })
        if let damage = scan.damage { return .damaged(firstBadRecord: damage.index, reason: damage.reason) }
        if scan.tornBytes > 0 { return .damaged(firstBadRecord: scan.range.size, reason: "the last line is torn (an append was interrupted)") }
        return .intact(leafHashes: hashes)
    }

    /// A serial as a file name (serials are printable; anything else is replaced).
    static func safeName(_ serial: String) -> String {
        let kept = serial.unicodeScalars.map { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" ? String($0) : "_" }
        return kept.joined().isEmpty ? "token" : kept.joined()
    }
}

/// What ``AuditLog/verify()`` found.
public enum AuditVerification: Sendable, Equatable {
    /// Every record is in place; the leaf hashes of the tree.
    case intact(leafHashes: [[UInt8]])
    /// The first record that is not, and why.
    case damaged(firstBadRecord: Int, reason: String)
}

/// The audit log could not be written or read. Matchable by ``code``.
public struct AuditError: LibraryError, Equatable {
    /// What went wrong.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The log cannot be written (disk full, permissions, lock).
        public static let unwritable = Code("unwritable")
        /// The log cannot be read.
        public static let unreadable = Code("unreadable")
        /// The last line is torn; nothing is appended until it is repaired deliberately.
        public static let tornTail = Code("tornTail")
        /// The log does not match a checkpoint, a record is out of place, or the trail's own
        /// state (its anchor, its key) cannot be trusted.
        public static let inconsistent = Code("inconsistent")
        /// The token has the audit key but no anchored checkpoint (or a log but no audit key):
        /// nothing is appended until a person re-anchors the trail.
        public static let anchorMissing = Code("anchorMissing")
        /// A file or the directory of the trail could have been written by someone else (owner,
        /// mode), or is not a regular file.
        public static let untrustedFile = Code("untrustedFile")
        /// The key under the audit key's label fails the audit key policy.
        public static let untrustedKey = Code("untrustedKey")
        /// The tiles beside the log (a structure derived from its records) are missing where
        /// they are needed, or differ from what the records give; the records are not in question.
        public static let tilesUnusable = Code("tilesUnusable")
    }

    /// What went wrong.
    public let code: Code
    /// The facts.
    public let reason: String
    /// The log's path or the record concerned, when known.
    public let facts: ErrorFacts
    public let location: ErrorLocation

    /// An error: its code and the facts.
    public init(_ code: Code, _ reason: String, facts: ErrorFacts = ErrorFacts(), file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.facts = facts
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The facts.
    public var description: String { reason }

    /// Equal when the codes are equal.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

/// The cached right frontier of a log (`<serial>.tree`, 0600): a cache, never a source of truth.
///
/// Plain text, one value per line (read on every one-shot append, so it is parsed without a
/// JSON decoder):
///
///     fireblocks-hsm tree cache 1
///     <size>
///     <byte offset>
///     <last leaf hash, hex, or ->
///     <frontier hash, hex>        (one line each, left to right)
struct TreeCache: Equatable {
    static let header = "fireblocks-hsm tree cache 1"

    let size: Int
    let offset: Int
    let lastLeafHash: String?
    let frontier: [String]

    var range: MerkleTree.CompactRange? {
        let hashes = frontier.compactMap { bytes(fromHex: $0) }
        guard hashes.count == frontier.count else { return nil }
        return MerkleTree.CompactRange(size: size, hashes: hashes)
    }

    var text: String {
        ([Self.header, String(size), String(offset), lastLeafHash ?? "-"] + frontier).joined(separator: "\n") + "\n"
    }

    /// Nil for anything but a complete cache in this format (an older one is read as none).
    init?(text: String) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 5, lines[0] == Self.header, lines.last == "",
              let size = Int(lines[1]), size >= 0, let offset = Int(lines[2]), offset >= 0 else { return nil }
        self.size = size
        self.offset = offset
        lastLeafHash = lines[3] == "-" ? nil : lines[3]
        frontier = Array(lines[4..<(lines.count - 1)])
    }

    init(size: Int, offset: Int, lastLeafHash: String?, frontier: [String]) {
        self.size = size
        self.offset = offset
        self.lastLeafHash = lastLeafHash
        self.frontier = frontier
    }

    static func load(from path: String) -> TreeCache? {
        guard let bytes = try? AuditFiles.readSmall(path) else { return nil }
        return TreeCache(text: String(decoding: bytes, as: UTF8.self))
    }

    /// Rewritten in place, without fsync: a torn or lost cache only costs the next append a
    /// full read (it no longer matches the last checkpoint, or does not parse). In place rather
    /// than renamed over: replacing the file frees its block every time, which on a
    /// filesystem mounted with `discard` waits for the device.
    func save(to path: String) {
        let bytes = Array(text.utf8)
        guard let descriptor = try? AuditFiles.open(path, O_WRONLY, create: true) else { return }
        defer { close(descriptor) }
        // Rewritten in place: never through a second name (a hard link planted at the path
        // would make this overwrite another file of this user's).
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_nlink == 1 else { return }
        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        if written == bytes.count {
            _ = ftruncate(descriptor, off_t(bytes.count))
        } else {
            _ = ftruncate(descriptor, 0)
        }
    }
}
