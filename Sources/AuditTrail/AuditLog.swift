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

    /// The log of `token` in `directory`.
    public init(directory: URL, token: AuditRecord.Token, tool: AuditRecord.Tool) {
        self.directory = directory
        self.token = token
        self.tool = tool
    }

    /// `<serial>.jsonl`.
    public var logPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).jsonl").path }
    /// `<serial>.checkpoint`.
    public var checkpointPath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).checkpoint").path }

    /// Appends the entries as consecutive records; returns the new tree size and root.
    public func append(_ entries: [AuditEntry], now: Date = Date()) throws -> (size: Int, root: [UInt8]) {
        try append(entries, now: now) { $0 }
    }

    /// Appends the entries and, still holding the lock, hands the new tree size and root to
    /// `seal` (which signs and anchors a checkpoint): checkpoints are then made in the order of
    /// the log, never an older one after a newer.
    ///
    /// The tree's right frontier is cached beside the log (`<serial>.tree`), so an append reads
    /// only the records added since the last one (by any process) instead of the whole log. The
    /// cache is used only while it still fits: its tree is the one `<serial>.checkpoint` was
    /// signed over, its offset ends a line, and that line hashes as it recorded. Otherwise the
    /// whole log is read (and the cache made again). It gives an attacker who can write the log
    /// nothing more: forging it means forging the signed checkpoint too.
    public func append<R>(_ entries: [AuditEntry], now: Date = Date(), seal: ((size: Int, root: [UInt8])) throws -> R) throws -> R {
        try AtomicFile.makePrivateDirectory(directory.path)
        let lock = try FileLock.acquire(logPath + ".lock", timeout: 30, note: "pid \(getpid()): audit append")
        defer { lock.release() }
        var (range, offset, lastLeaf) = try currentFrontier()
        var appended: [UInt8] = []
        let time = AuditRecord.timestamp(now)
        for entry in entries {
            let record = AuditRecord(seq: range.size, time: time, actor: .current, tool: tool, event: entry.event,
                                     outcome: entry.outcome, token: token, facts: entry.facts)
            let line = try record.line()
            lastLeaf = MerkleTree.leafHash(line)
            range.append(leafHash: lastLeaf)
            appended += line + [0x0A]
        }
        try Self.appendDurably(appended, to: logPath)
        offset += appended.count
        let result = try seal((range.size, range.root))
        TreeCache(size: range.size, offset: offset, lastLeafHash: hex(lastLeaf), frontier: range.hashes.map(hex)).save(to: treePath)
        return result
    }

    /// `<serial>.tree`: the cached frontier.
    var treePath: String { directory.appendingPathComponent("\(Self.safeName(token.serial)).tree").path }

    /// The frontier over the whole log, the byte offset of its end and the last leaf hash: from
    /// the cache plus the lines after it, or from the whole log. Refuses a torn tail.
    private func currentFrontier() throws -> (MerkleTree.CompactRange, Int, [UInt8]) {
        let tornMessage = "\(logPath) ends in a torn record (an append was interrupted); run 'audit verify' to see it, then repair it deliberately"
        if let cache = TreeCache.load(from: treePath), let range = cache.range, matchesLatestCheckpoint(range),
           let tail = Self.readTail(logPath, after: cache.offset, lastLeafHash: cache.lastLeafHash) {
            if tail.torn { throw AuditError(.tornTail, tornMessage) }
            var extended = range
            var last = cache.lastLeafHash.flatMap { bytes(fromHex: $0) } ?? []
            for line in tail.lines {
                last = MerkleTree.leafHash(line)
                extended.append(leafHash: last)
            }
            return (extended, tail.end, last)
        }
        let existing = try Self.readLines(logPath)
        if existing.torn { throw AuditError(.tornTail, tornMessage) }
        let hashes = existing.lines.map { MerkleTree.leafHash($0) }
        let end = existing.lines.reduce(0) { $0 + $1.count + 1 }
        return (MerkleTree.CompactRange(leafHashes: hashes), end, hashes.last ?? [])
    }

    /// `count` bytes at `offset` (retrying short reads and EINTR); nil when the file ends first
    /// or cannot be read.
    static func readFully(_ descriptor: Int32, at offset: Int, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return pread(descriptor, base + done, count - done, off_t(offset + done))
            }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }

    /// True when `<serial>.checkpoint` is over exactly this tree (size and root): a cached
    /// frontier is used only if it is the one the last checkpoint was signed over, so a cache
    /// damaged at rest never becomes a signed root.
    private func matchesLatestCheckpoint(_ range: MerkleTree.CompactRange) -> Bool {
        guard let data = FileManager.default.contents(atPath: checkpointPath),
              let note = try? SignedNote(parsing: String(decoding: data, as: UTF8.self)),
              let checkpoint = try? Checkpoint(noteText: note.text) else { return false }
        return checkpoint.treeSize == range.size && checkpoint.rootHash == range.root
    }

    /// The complete lines after byte `offset`, if the cache's offset still fits the file: it
    /// ends a line (or is 0), and that line's leaf hash is `lastLeafHash`. Nil: read everything.
    static func readTail(_ path: String, after offset: Int, lastLeafHash: String?) -> (lines: [[UInt8]], torn: Bool, end: Int)? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        let size = Int(status.st_size)
        guard offset >= 0, offset <= size else { return nil }
        func read(_ start: Int, _ count: Int) -> [UInt8]? { readFully(descriptor, at: start, count: count) }
        if offset > 0 {
            // The line that ends at `offset` must be the one the cache last saw.
            let window = min(offset, 1 << 20)
            guard let before = read(offset - window, window), before.last == 0x0A, let expected = lastLeafHash else { return nil }
            let body = before.dropLast()
            guard let start = body.lastIndex(of: 0x0A).map({ $0 + 1 }) ?? (window == offset ? body.startIndex : nil) else { return nil }
            guard hex(MerkleTree.leafHash(Array(body[start...]))) == expected else { return nil }
        }
        guard let rest = read(offset, size - offset) else { return nil }
        if rest.isEmpty { return ([], false, offset) }
        var lines = rest.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        let torn = rest.last != 0x0A
        lines.removeLast()
        return (lines, torn, offset + rest.count)
    }

    /// The log's records as they are on disk, checked: every line a record whose `seq` is its
    /// index and whose token is this log's; no torn tail. Returns the leaf hashes on success.
    public func verify() throws -> AuditVerification {
        let read = try Self.readLines(logPath)
        for (index, line) in read.lines.enumerated() {
            guard let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(line)) else {
                return .damaged(firstBadRecord: index, reason: "line \(index) is not an audit record")
            }
            guard record.seq == index else {
                return .damaged(firstBadRecord: index, reason: "line \(index) has seq \(record.seq): records were removed, inserted or reordered")
            }
            guard record.token.serial == token.serial else {
                return .damaged(firstBadRecord: index, reason: "line \(index) is about token \(record.token.serial), not \(token.serial)")
            }
        }
        if read.torn { return .damaged(firstBadRecord: read.lines.count, reason: "the last line is torn (an append was interrupted)") }
        return .intact(leafHashes: read.lines.map { MerkleTree.leafHash($0) })
    }

    /// True when the log's last byte is not a newline (an append was interrupted): read from the
    /// end of the file alone, so it costs the same however long the log is.
    public func hasTornTail() throws -> Bool {
        let descriptor = open(logPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if descriptor < 0 {
            if errno == ENOENT { return false }
            throw AuditError(.unreadable, "cannot read \(logPath) (\(String(cString: strerror(errno))))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw AuditError(.unreadable, "cannot stat \(logPath)") }
        guard status.st_size > 0 else { return false }
        guard let last = Self.readFully(descriptor, at: Int(status.st_size) - 1, count: 1) else {
            throw AuditError(.unreadable, "cannot read \(logPath) (\(String(cString: strerror(errno))))")
        }
        return last != [0x0A]
    }

    /// The complete lines of the log, in order (a torn tail left out), each the exact bytes of
    /// a record without its newline: the Merkle leaves.
    public func lines() throws -> [[UInt8]] {
        try Self.readLines(logPath).lines
    }

    /// Cuts a torn last line off (the one repair there is); returns the bytes removed.
    public func repairTornTail() throws -> Int {
        let lock = try FileLock.acquire(logPath + ".lock", timeout: 30, note: "pid \(getpid()): audit repair")
        defer { lock.release() }
        guard let data = FileManager.default.contents(atPath: logPath) else { return 0 }
        let bytes = Array(data)
        guard let last = bytes.last, last != 0x0A else { return 0 }
        let keep = bytes.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
        try AtomicFile.write(Array(bytes[..<keep]), to: logPath, overwrite: true, mode: 0o600)
        return bytes.count - keep
    }

    static func readLines(_ path: String) throws -> (lines: [[UInt8]], torn: Bool) {
        guard FileManager.default.fileExists(atPath: path) else { return ([], false) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AuditError(.unreadable, "cannot read \(path)")
        }
        let bytes = Array(data)
        if bytes.isEmpty { return ([], false) }
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        let torn = bytes.last != 0x0A
        if !torn { lines.removeLast() }  // the empty piece after the final newline
        else { lines.removeLast() }      // the torn piece is not a record
        return (lines, torn)
    }

    static func appendDurably(_ bytes: [UInt8], to path: String) throws {
        try AuditAppender.write(bytes, to: path, sync: true)
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
public struct AuditError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Equatable {
        /// The log cannot be written (disk full, permissions, lock).
        case unwritable
        /// The log cannot be read.
        case unreadable
        /// The last line is torn; nothing is appended until it is repaired deliberately.
        case tornTail
        /// The log does not match a checkpoint.
        case inconsistent
    }

    /// What went wrong.
    public let code: Code
    /// The facts.
    public let reason: String

    /// An error: its code and the facts.
    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    /// The facts.
    public var description: String { reason }

    /// Equal when the codes are equal.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

extension AuditLog {
    /// Checks the log against a checkpoint (an auditor's, or the token's): the checkpoint's tree
    /// must be a prefix of the log (its size at most the log's, its root the root over that
    /// prefix). Catches an edited record, a cut-off tail, and an older log put back.
    public func verify(against checkpoint: Checkpoint) throws -> (size: Int, root: [UInt8]) {
        switch try verify() {
        case .damaged(let index, let reason):
            throw AuditError(.inconsistent, "record \(index): \(reason)")
        case .intact(let hashes):
            guard checkpoint.treeSize <= hashes.count else {
                throw AuditError(.inconsistent, "the checkpoint covers \(checkpoint.treeSize) records but the log has \(hashes.count): records were cut off the end")
            }
            guard MerkleTree.root(hashes[..<checkpoint.treeSize]) == checkpoint.rootHash else {
                throw AuditError(.inconsistent, "the first \(checkpoint.treeSize) records do not have the checkpoint's root: the log was edited or replaced")
            }
            return (hashes.count, MerkleTree.root(hashes[...]))
        }
    }
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
        guard let data = FileManager.default.contents(atPath: path), data.count <= 64 * 1024 else { return nil }
        return TreeCache(text: String(decoding: data, as: UTF8.self))
    }

    /// Rewritten in place, without fsync: a torn or lost cache only costs the next append a
    /// full read (it no longer matches the last checkpoint, or does not parse). In place rather
    /// than renamed over: replacing the file frees its block every time, which on a
    /// filesystem mounted with `discard` waits for the device.
    func save(to path: String) {
        let bytes = Array(text.utf8)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        if written == bytes.count {
            _ = ftruncate(descriptor, off_t(bytes.count))
        } else {
            _ = ftruncate(descriptor, 0)
        }
    }
}
