import ErrorShape
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one trust check for files that run, configure or hold the secrets of this process: a
/// PKCS#11 module it loads, the companion executable it hands a command line to, a profile
/// (which can name a module), a client-token file, and the audit trail's own directory and
/// files. What they hold decides what runs with this process's PIN source and token, or what
/// an auditor will believe, so nobody else may have been able to write them.
///
/// One rule set, for every use:
/// - the file, and every directory a name on its way is looked up in (from `/` down to the
///   directory holding it, and for each symbolic link on the way, the directory holding the
///   link and those its target passes through), belong to this user or root, and so does each
///   symbolic link;
/// - none of them is writable by group or others, but for a directory with the sticky bit
///   (`/tmp`): there only an entry's owner (or the directory's, root or this user) can rename
///   or remove it, and every entry on the way is judged by its owner in turn. Whoever can
///   write any other directory on the way can rename what is below it and put a path of their
///   own in its place, so the last directory alone is not enough;
/// - a path that cannot be examined (`stat` fails) is refused, never let through;
/// - it is the kind it should be (a regular file; a directory for the trail's directory).
///
/// What each use adds: a ``Use/secret`` must also not be readable by group or others nor be a
/// symbolic link; the
/// trail's own state (``verifyPrivateState(_:kind:)``) is never reached through a link, a
/// file of it has no second name (hard link), and a path that does not exist yet passes (the
/// trail makes it, privately). This is what OpenSSH asks of the PKCS#11 providers, keys and
/// configuration it reads.
public enum TrustedFile {
    /// What a file is trusted for.
    public enum Use: Sendable {
        /// It runs: a PKCS#11 module, the companion executable.
        case runs
        /// It configures what runs: a profile.
        case configures
        /// It holds secrets: a client-token file. Also not readable by group or others, and
        /// not reached through a symbolic link.
        case secret
    }

    /// The canonical path of a file that passes; ``TrustedFileError`` otherwise.
    public static func verify(_ path: String, for use: Use = .runs) throws(TrustedFileError) -> String {
        var link = stat()
        guard lstat(path, &link) == 0 else { throw TrustedFileError(.unreadable, .file(path), errno: errno) }
        if (link.st_mode & S_IFMT) == S_IFLNK, use == .secret { throw TrustedFileError(.notARegularFile, .file(path)) }
        let real = try resolveJudging(path)

        var file = stat()
        guard stat(real, &file) == 0 else { throw TrustedFileError(.unreadable, .file(real), errno: errno) }
        guard (file.st_mode & S_IFMT) == S_IFREG else { throw TrustedFileError(.notARegularFile, .file(real)) }
        try requireTrusted(file, .file(real))
        if use == .secret, file.st_mode & 0o077 != 0 {
            throw TrustedFileError(.readableByOthers, .file(real), mode: file.st_mode & 0o7777)
        }
        return real
    }

    /// Resolves `path` as the kernel does, one name at a time, judging each directory a name
    /// is looked up in (by what it holds: the file's own directory, a symbolic link's, or a
    /// directory on the way) and each symbolic link's owner; returns the real path. A name
    /// that cannot be examined is `path`'s ``TrustedFileError/Code/unreadable``.
    static func resolveJudging(_ path: String) throws(TrustedFileError) -> String {
        var pending: [Substring] = []
        if !path.hasPrefix("/") {
            guard let cwd = getcwd(nil, 0) else { throw TrustedFileError(.unreadable, .file(path), errno: errno) }
            pending = String(cString: cwd).split(separator: "/")
            free(cwd)
        }
        pending += path.split(separator: "/")
        pending.reverse()   // popped from the end
        var current = "/"
        var links = 0
        while let name = pending.popLast() {
            if name == "." { continue }
            if name == ".." { current = directory(of: current); continue }
            let candidate = current == "/" ? "/" + name : current + "/" + name
            var status = stat()
            guard lstat(candidate, &status) == 0 else { throw TrustedFileError(.unreadable, .file(path), errno: errno) }
            switch status.st_mode & S_IFMT {
            case S_IFLNK:
                try requireTrustedDirectory(current, .linkDirectory(current))
                // A link is never changed, only replaced (by whoever can write its directory,
                // judged above); its owner still answers for where it points.
                if status.st_uid != 0, status.st_uid != getuid() { throw TrustedFileError(.otherOwner, .file(candidate), uid: status.st_uid) }
                links += 1
                guard links <= 40 else { throw TrustedFileError(.unreadable, .file(path), errno: ELOOP) }
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let count = readlink(candidate, &buffer, buffer.count - 1)
                guard count > 0 else { throw TrustedFileError(.unreadable, .file(path), errno: count == 0 ? ENOENT : errno) }
                let target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if target.hasPrefix("/") { current = "/" }
                pending += target.split(separator: "/").reversed()
            case S_IFDIR:
                try requireTrustedDirectory(current, pending.isEmpty ? .directory(current) : .ancestorDirectory(current))
                current = candidate
            default:
                guard pending.isEmpty else { throw TrustedFileError(.unreadable, .file(path), errno: ENOTDIR) }
                try requireTrustedDirectory(current, .directory(current))
                current = candidate
            }
        }
        return current
    }

    /// Judges every directory on `path`'s way and every symbolic link on it, as
    /// ``verify(_:for:)`` does, but not the file itself: for a reader that judges the file on
    /// the descriptor it opened (a PIN file).
    public static func verifyDirectories(of path: String) throws(TrustedFileError) {
        _ = try resolveJudging(path)
    }

    private static func directory(of path: String) -> String {
        path.lastIndex(of: "/").map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
    }

    private static func requireTrusted(_ status: stat, _ subject: TrustedFileError.Subject) throws(TrustedFileError) {
        if status.st_uid != 0, status.st_uid != getuid() { throw TrustedFileError(.otherOwner, subject, uid: status.st_uid) }
        if status.st_mode & 0o022 != 0 { throw TrustedFileError(.writableByOthers, subject, mode: status.st_mode & 0o7777) }
    }

    /// A directory on the way: this user's or root's, and writable by nobody else unless it is
    /// sticky (see the type's description).
    private static func requireTrustedDirectory(_ path: String, _ subject: TrustedFileError.Subject) throws(TrustedFileError) {
        var status = stat()
        guard stat(path, &status) == 0 else { throw TrustedFileError(.unreadable, subject, errno: errno) }
        if status.st_uid != 0, status.st_uid != getuid() { throw TrustedFileError(.otherOwner, subject, uid: status.st_uid) }
        if status.st_mode & 0o022 != 0, status.st_mode & S_ISVTX == 0 {
            throw TrustedFileError(.writableByOthers, subject, mode: status.st_mode & 0o7777)
        }
    }
}

/// Why ``TrustedFile`` refused a file.
public struct TrustedFileError: LibraryError, Hashable {
    /// What is wrong with it.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The path does not resolve or cannot be examined (``TrustedFileError/errno``).
        public static let unreadable = Code("unreadable")
        /// Not a regular file.
        public static let notARegularFile = Code("notARegularFile")
        /// Not a directory.
        public static let notADirectory = Code("notADirectory")
        /// A file with other names (hard links) elsewhere.
        public static let hardLinked = Code("hardLinked")
        /// Owned by another user than this one or root (``TrustedFileError/uid``).
        public static let otherOwner = Code("otherOwner")
        /// Writable by group or others (``TrustedFileError/mode``).
        public static let writableByOthers = Code("writableByOthers")
        /// A secret readable by group or others (``TrustedFileError/mode``).
        public static let readableByOthers = Code("readableByOthers")
        /// Larger than the reader takes.
        public static let tooLarge = Code("tooLarge")
    }

    /// The file, or a directory on its way.
    public enum Subject: Hashable, Sendable, CustomStringConvertible {
        case file(String)
        case directory(String)
        /// The directory holding a symbolic link that was followed.
        case linkDirectory(String)
        /// A directory further up the way to the file.
        case ancestorDirectory(String)

        /// Its path.
        public var path: String {
            switch self {
            case .file(let path), .directory(let path), .linkDirectory(let path), .ancestorDirectory(let path): return path
            }
        }

        /// "file /path" or "directory /path".
        public var description: String {
            switch self {
            case .file(let path): return "file \(path)"
            case .directory(let path): return "directory \(path)"
            case .linkDirectory(let path): return "directory \(path), which holds the symlink"
            case .ancestorDirectory(let path): return "directory \(path), on the way to it (whoever can write it can rename what is below)"
            }
        }
    }

    public let code: Code
    /// What was refused.
    public let subject: Subject
    /// `stat`'s or `realpath`'s error, for ``Code/unreadable``.
    public let errno: Int32?
    /// The owner, for ``Code/otherOwner``.
    public let uid: UInt32?
    /// The permission bits, for ``Code/writableByOthers`` and ``Code/readableByOthers``.
    public let mode: UInt32?
    /// The number of names, for ``Code/hardLinked``.
    public let links: UInt?
    public let location: ErrorLocation

    init(_ code: Code, _ subject: Subject, errno: Int32? = nil, uid: UInt32? = nil, mode: UInt32? = nil, links: UInt? = nil,
         file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.subject = subject
        self.errno = errno
        self.uid = uid
        self.mode = mode
        self.links = links
        self.location = ErrorLocation(file: file, line: line)
    }

    public var facts: ErrorFacts { ErrorFacts(path: subject.path) }

    /// One line of facts.
    public var reason: String {
        switch code {
        case .unreadable: return "\(subject.path): \(String(cString: strerror(errno ?? 0)))"
        case .notARegularFile: return "\(subject.path) is not a regular file"
        case .notADirectory: return "\(subject.path) is not a directory"
        case .hardLinked: return "\(subject.path) has \(links ?? 0) names (hard links): writing it would change another file"
        case .otherOwner: return "\(subject) belongs to another user (uid \(uid ?? 0))"
        case .tooLarge: return "\(subject.path) is larger than such a file can be"
        case .readableByOthers: return "\(subject) holds secrets and is readable by group or others (mode \(String(mode ?? 0, radix: 8)))"
        default: return "\(subject) is writable by group or others (mode \(String(mode ?? 0, radix: 8)))"
        }
    }

    public var description: String { reason }

    /// Equal when the code and the file are (the facts behind them and the location are not
    /// compared).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.subject == rhs.subject }
    /// Hashes what equality compares.
    public func hash(into hasher: inout Hasher) { hasher.combine(code); hasher.combine(subject) }
}

extension TrustedFile {
    /// What a piece of this process's own state must be when it exists.
    public enum StateKind: Sendable {
        /// A directory (not a link to one).
        case directory
        /// A regular file (not a link, FIFO, device or socket).
        case file
    }

    /// State whose integrity others rely on (the audit trail's directory and files): the rule
    /// set above, where `path` must be a `kind` itself (a symbolic link is refused, not
    /// followed) and a file has no other name. A missing path passes (it will be made,
    /// privately); a path that cannot be examined is refused.
    public static func verifyPrivateState(_ path: String, kind: StateKind) throws(TrustedFileError) {
        // `dir/.` or `dir/` would look through a link at `dir`: judge `dir` itself.
        var path = path
        while path.count > 1, path.hasSuffix("/") || path.hasSuffix("/.") { path = String(path.dropLast(path.hasSuffix("/.") ? 2 : 1)) }
        if path == "." || path == ".." || path.hasSuffix("/..") { throw TrustedFileError(.notADirectory, .directory(path)) }
        var status = stat()
        guard lstat(path, &status) == 0 else {
            if errno == ENOENT { return }
            throw TrustedFileError(.unreadable, kind == .directory ? .directory(path) : .file(path), errno: errno)
        }
        let type = status.st_mode & S_IFMT
        switch kind {
        case .directory: guard type == S_IFDIR else { throw TrustedFileError(.notADirectory, .directory(path)) }
        case .file:
            guard type == S_IFREG else { throw TrustedFileError(.notARegularFile, .file(path)) }
            // No name left: it was removed while it was looked at (unlink can be seen between
            // dropping the link count and dropping the name), as if it was not there.
            if status.st_nlink == 0 { return }
            // A hard link would make writes to this file (a cache rewritten in place, a lock's
            // note) land in another file of this user's.
            guard status.st_nlink == 1 else { throw TrustedFileError(.hardLinked, .file(path), links: UInt(status.st_nlink)) }
        }
        try requireTrusted(status, kind == .directory ? .directory(path) : .file(path))
    }

    /// The command that makes `error`'s subject pass, when there is one (`chmod go-w PATH`,
    /// `chmod 600 PATH`, `chown UID PATH`), for the advice of whoever prints the error.
    public static func remedy(for error: TrustedFileError) -> String? {
        func quoted(_ path: String) -> String { "'" + path.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" }
        switch error.code {
        case .writableByOthers: return "chmod go-w \(quoted(error.subject.path))"
        case .readableByOthers: return "chmod 600 \(quoted(error.subject.path))"
        case .otherOwner: return "chown \(getuid()) \(quoted(error.subject.path))"
        default: return nil
        }
    }
}

extension TrustedFile {
    /// Checks `path` for `use` and reads it (at most `limit` bytes, or ``TrustedFileError/Code/tooLarge``).
    /// The rule is applied again to the descriptor that is read (`fstat`: a regular file, the
    /// owner, the mode), so a file swapped in after the path was judged is judged itself; the
    /// directories were judged by the path's check.
    public static func read(_ path: String, for use: Use, limit: Int) throws(TrustedFileError) -> [UInt8] {
        let real = try verify(path, for: use)
        let descriptor = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw TrustedFileError(.unreadable, .file(real), errno: errno) }
        defer { close(descriptor) }
        var opened = stat()
        guard fstat(descriptor, &opened) == 0 else { throw TrustedFileError(.unreadable, .file(real), errno: errno) }
        guard (opened.st_mode & S_IFMT) == S_IFREG else { throw TrustedFileError(.notARegularFile, .file(real)) }
        try requireTrusted(opened, .file(real))
        if use == .secret, opened.st_mode & 0o077 != 0 {
            throw TrustedFileError(.readableByOthers, .file(real), mode: opened.st_mode & 0o7777)
        }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var total = 0
        while total <= limit {
            let count = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.read(descriptor, base + total, limit + 1 - total)
            }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else {
                let code = errno
                zero(&bytes)
                throw TrustedFileError(.unreadable, .file(real), errno: code)
            }
            if count == 0 { break }
            total += count
        }
        guard total <= limit else {
            zero(&bytes)
            throw TrustedFileError(.tooLarge, .file(real))
        }
        // Cut in place rather than copied: a secret's bytes are left in one buffer only, the
        // caller's, which it can zero once it has parsed them (``zero(_:)``).
        bytes.removeSubrange(total...)
        return bytes
    }
}

extension TrustedFile {
    /// Overwrites `bytes` with zeros where they are (`explicit_bzero`: not optimised away), for
    /// a buffer that held a secret once it is parsed.
    public static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { explicit_bzero(base, buffer.count) }
        }
    }
}
