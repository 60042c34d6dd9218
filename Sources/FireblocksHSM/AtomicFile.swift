import Foundation

/// Writing a result file without ever leaving half of it: a temporary file in the same
/// directory, flushed, then renamed into place (or linked, when overwriting is not allowed,
/// so that a file created meanwhile is not replaced either).
public enum AtomicFile {
    /// Writes `bytes` to `path`.
    /// - Parameters:
    ///   - overwrite: replace an existing file (`--force`); otherwise an existing file is an error.
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
            let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                close(descriptor)
                throw fail("write")
            }
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
                    throw FileOutputError(path: path, reason: "the file exists; pass --force to replace it", code: .exists)
                }
                throw fail("link")
            }
        }
        // Make the rename/link itself durable.
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY)
        if directoryDescriptor >= 0 {
            _ = fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
    }
}

extension AtomicFile {
    /// The checks ``write(_:to:overwrite:mode:)`` starts with; commands call it early too, so
    /// that a doomed run stops before asking for a PIN or touching the token.
    public static func checkWritable(_ path: String, overwrite: Bool) throws(FileOutputError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw FileOutputError(path: path, reason: "directory \(directory) does not exist")
        }
        guard access(directory, W_OK) == 0 else {
            throw FileOutputError(path: path, reason: "directory \(directory) is not writable")
        }
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw FileOutputError(path: path, reason: "the file exists; pass --force to replace it", code: .exists)
        }
    }
}

/// An output file could not be written. Nothing was left at `path`.
public struct FileOutputError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Hashable, Sendable { case exists, unwritable }
    public let path: String
    public let reason: String
    public let code: Code

    public init(path: String, reason: String, code: Code = .unwritable) {
        self.path = path
        self.reason = reason
        self.code = code
    }

    public var description: String { "cannot write \(path): \(reason)" }
}
