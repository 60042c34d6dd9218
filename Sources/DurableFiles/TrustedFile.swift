#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file this process is about to run (a PKCS#11 module it loads, the companion executable it
/// hands a command line to) must be one nobody else could have written: what runs gets this
/// process's PIN source and token. After resolving symlinks, the file must be a regular file,
/// and the file and the directory holding it must belong to this user or root and not be
/// writable by group or others. This is what OpenSSH asks of the PKCS#11 providers and keys it
/// loads.
public enum TrustedFile {
    /// The canonical path of a file that passes; ``TrustedFileError`` otherwise.
    public static func verify(_ path: String) throws(TrustedFileError) -> String {
        // A symbolic link is judged where it leads, and where it sits: whoever can write the
        // directory holding the link can point it elsewhere.
        var link = stat()
        if lstat(path, &link) == 0, (link.st_mode & S_IFMT) == S_IFLNK {
            let holder = path.lastIndex(of: "/").map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
            var status = stat()
            guard stat(holder, &status) == 0 else { throw .unreadableDirectory(holder, errno: errno) }
            try requireTrusted(status, .linkDirectory(holder))
        }
        guard let resolved = realpath(path, nil) else { throw .unreadable(path, errno: errno) }
        let real = String(cString: resolved)
        free(resolved)

        var file = stat()
        guard stat(real, &file) == 0 else { throw .unreadable(real, errno: errno) }
        guard (file.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile(real) }
        try requireTrusted(file, .file(real))

        let directory = real.lastIndex(of: "/").map { real[..<$0].isEmpty ? "/" : String(real[..<$0]) } ?? "."
        var parent = stat()
        guard stat(directory, &parent) == 0 else { throw .unreadableDirectory(directory, errno: errno) }
        try requireTrusted(parent, .directory(directory))
        return real
    }

    private static func requireTrusted(_ status: stat, _ subject: TrustedFileError.Subject) throws(TrustedFileError) {
        if status.st_uid != 0, status.st_uid != getuid() { throw .otherOwner(subject, uid: status.st_uid) }
        if status.st_mode & 0o022 != 0 { throw .writableByOthers(subject, mode: status.st_mode & 0o7777) }
    }
}

/// Why ``TrustedFile/verify(_:)`` refused a file.
public enum TrustedFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file, or the directory holding it.
    public enum Subject: Hashable, Sendable, CustomStringConvertible {
        case file(String)
        case directory(String)
        /// The directory holding a symbolic link that was followed.
        case linkDirectory(String)

        /// "file /path" or "directory /path".
        public var description: String {
            switch self {
            case .file(let path): return "file \(path)"
            case .directory(let path): return "directory \(path)"
            case .linkDirectory(let path): return "directory \(path), which holds the symlink"
            }
        }
    }

    /// The path does not resolve or cannot be examined.
    case unreadable(String, errno: Int32)
    /// The directory holding the file cannot be examined.
    case unreadableDirectory(String, errno: Int32)
    /// Not a regular file.
    case notARegularFile(String)
    /// Not a directory.
    case notADirectory(String)
    /// A file with other names (hard links) elsewhere.
    case hardLinked(String, links: UInt)
    /// Owned by another user than this one or root.
    case otherOwner(Subject, uid: UInt32)
    /// Writable by group or others (the mode given).
    case writableByOthers(Subject, mode: UInt32)

    /// One line of facts.
    public var description: String {
        switch self {
        case .unreadable(let path, let code): return "\(path): \(String(cString: strerror(code)))"
        case .unreadableDirectory(let path, let code): return "\(path): \(String(cString: strerror(code)))"
        case .notARegularFile(let path): return "\(path) is not a regular file"
        case .notADirectory(let path): return "\(path) is not a directory"
        case .hardLinked(let path, let links): return "\(path) has \(links) names (hard links): writing it would change another file"
        case .otherOwner(let subject, let uid): return "\(subject) belongs to another user (uid \(uid))"
        case .writableByOthers(let subject, let mode): return "\(subject) is writable by group or others (mode \(String(mode, radix: 8)))"
        }
    }
}

extension TrustedFile {
    /// What a piece of this process's own state must be when it exists.
    public enum StateKind: Sendable {
        /// A directory (not a link to one).
        case directory
        /// A regular file (not a link, FIFO, device or socket).
        case file
    }

    /// State whose integrity others rely on (the audit trail's directory and files): when
    /// `path` exists it must be a `kind` itself (a symbolic link is refused, not followed),
    /// belong to this user or root, and not be writable by group or others. A missing path
    /// passes (it will be made, privately); a path that cannot be examined is refused.
    public static func verifyPrivateState(_ path: String, kind: StateKind) throws(TrustedFileError) {
        // `dir/.` or `dir/` would look through a link at `dir`: judge `dir` itself.
        var path = path
        while path.count > 1, path.hasSuffix("/") || path.hasSuffix("/.") { path = String(path.dropLast(path.hasSuffix("/.") ? 2 : 1)) }
        if path == "." || path == ".." || path.hasSuffix("/..") { throw .notADirectory(path) }
        var status = stat()
        guard lstat(path, &status) == 0 else {
            if errno == ENOENT { return }
            throw .unreadable(path, errno: errno)
        }
        let type = status.st_mode & S_IFMT
        switch kind {
        case .directory: guard type == S_IFDIR else { throw .notADirectory(path) }
        case .file:
            guard type == S_IFREG else { throw .notARegularFile(path) }
            // A hard link would make writes to this file (a cache rewritten in place, a lock's
            // note) land in another file of this user's.
            guard status.st_nlink == 1 else { throw .hardLinked(path, links: UInt(status.st_nlink)) }
        }
        try requireTrusted(status, kind == .directory ? .directory(path) : .file(path))
    }

    /// The command that makes `error`'s subject pass, when there is one (`chmod go-w PATH`,
    /// `chown UID PATH`), for the advice of whoever prints the error.
    public static func remedy(for error: TrustedFileError) -> String? {
        func quoted(_ path: String) -> String { "'" + path.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" }
        switch error {
        case .writableByOthers(.file(let path), _), .writableByOthers(.directory(let path), _), .writableByOthers(.linkDirectory(let path), _):
            return "chmod go-w \(quoted(path))"
        case .otherOwner(.file(let path), _), .otherOwner(.directory(let path), _), .otherOwner(.linkDirectory(let path), _):
            return "chown \(getuid()) \(quoted(path))"
        default:
            return nil
        }
    }
}
