import ErrorShape
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way this project writes a file: never half of it, never over something it should
/// not replace, and durably.
///
/// A temporary file in the same directory is written, `fsync`ed, then renamed into place (or
/// linked, when overwriting is not allowed, so that a file created meanwhile is not replaced
/// either), and the directory is `fsync`ed so that the rename itself survives a crash. Result
/// files, state files and records all go through here.
public enum AtomicFile {
    /// Writes `bytes` to `path`.
    /// - Parameters:
    ///   - overwrite: replace an existing file; otherwise an existing file is an error (`.exists`).
    ///   - mode: permissions of the new file.
    public static func write(_ bytes: [UInt8], to path: String, overwrite: Bool, mode: mode_t = 0o644) throws(FileOutputError) {
        try checkWritable(path, overwrite: overwrite)
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let name = url.lastPathComponent

        var template = Array("\(directory)/.\(name).tmp-XXXXXX".utf8CString)
        let descriptor = mkstemp(&template)
        guard descriptor >= 0 else {
            throw FileOutputError(path: path, reason: "cannot create a file in \(directory) (\(String(cString: strerror(errno))))")
        }
        let temporary = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var keepTemporary = false
        defer {
            if !keepTemporary { unlink(temporary) }
        }

        func fail(_ what: String) -> FileOutputError {
            FileOutputError(path: path, reason: "\(what) failed (\(String(cString: strerror(errno))))")
        }
        guard fchmod(descriptor, mode) == 0 else { close(descriptor); throw fail("fchmod") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return systemWrite(descriptor, base + written, bytes.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                close(descriptor)
                throw fail("write")
            }
            if count == 0 { close(descriptor); throw FileOutputError(path: path, reason: "write made no progress") }
            written += count
        }
        guard fsync(descriptor) == 0 else { close(descriptor); throw fail("fsync") }
        guard close(descriptor) == 0 else { throw fail("close") }

        if overwrite {
            guard rename(temporary, path) == 0 else { throw fail("rename") }
            keepTemporary = true
        } else {
            // link() refuses an existing target atomically: nothing created meanwhile is replaced.
            if link(temporary, path) != 0 {
                if errno == EEXIST {
                    throw FileOutputError(path: path, reason: "the file exists", code: .exists)
                }
                throw fail("link")
            }
        }
        try syncDirectory(directory, for: path)
    }

    /// The checks ``write(_:to:overwrite:mode:)`` starts with; commands call it early too, so
    /// that a doomed run stops before asking for a PIN or touching the token.
    public static func checkWritable(_ path: String, overwrite: Bool) throws(FileOutputError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory else {
            throw FileOutputError(path: path, reason: "directory \(directory) does not exist")
        }
        guard access(directory, W_OK) == 0 else {
            throw FileOutputError(path: path, reason: "directory \(directory) is not writable")
        }
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw FileOutputError(path: path, reason: "the file exists", code: .exists)
        }
    }

    /// Creates a private directory (0700) and its parents when missing.
    public static func makePrivateDirectory(_ path: String) throws(FileOutputError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw FileOutputError(path: path, reason: "cannot create the directory (\(describe(error)))")
        }
    }

    /// A `FileManager` failure in the system's words: the failing path when it is another one
    /// (a parent), and its errno's text.
    static func describe(_ error: any Error) -> String {
        guard let cocoa = error as? CocoaError else { return "\(error)" }
        let cause = (cocoa.underlying as? POSIXError).map { String(cString: strerror($0.code.rawValue)) } ?? "\(cocoa.code)"
        return cocoa.filePath.map { "\($0): \(cause)" } ?? cause
    }

    /// `fsync` of a directory, making a rename or link in it durable.
    static func syncDirectory(_ directory: String, for path: String) throws(FileOutputError) {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        // EINVAL: the file system cannot sync directories (some network and FUSE ones); the
        // data itself was synced.
        if fsync(descriptor) != 0, errno != EINVAL {
            throw FileOutputError(path: path, reason: "fsync of \(directory) failed (\(String(cString: strerror(errno))))")
        }
    }

    private static func systemWrite(_ descriptor: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        #if canImport(Glibc)
        return Glibc.write(descriptor, buffer, count)
        #else
        return Darwin.write(descriptor, buffer, count)
        #endif
    }
}

/// A file could not be written or read (disk full, permissions, a file in the way). When
/// writing, nothing was left at `path`.
public struct FileOutputError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// The target exists and was not to be replaced.
        public static let exists = Code("exists")
        /// The file or its directory cannot be written (or read, for state files).
        public static let unwritable = Code("unwritable")
        /// Another process holds the lock on it longer than this one would wait.
        public static let locked = Code("locked")
    }
    /// The path.
    public let path: String
    /// The reason.
    public let reason: String
    /// The code.
    public let code: Code

    public let location: ErrorLocation
    public var facts: ErrorFacts { ErrorFacts(path: path) }

    /// Creates the value from its parts.
    public init(path: String, reason: String, code: Code = .unwritable, file: String = #fileID, line: UInt = #line) {
        self.path = path
        self.reason = reason
        self.code = code
        self.location = ErrorLocation(file: file, line: line)
    }

    /// How it reads in messages.
    public var description: String { "cannot write \(path): \(reason)" }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
