import ErrorShape
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// How the trail opens its files. Whoever can write the audit directory can put anything at a
/// log's path, so: regular files only (a FIFO would block the opener, a device or socket would
/// feed it anything), never through a symbolic link, opened without blocking, the type checked
/// on the descriptor itself (no window between a check and the open).
enum AuditFiles {
    /// Opens `path` (`O_RDONLY`, `O_RDWR | O_APPEND`, …); nil when it does not exist and
    /// `create` is false. The descriptor blocks again once it is known to be a regular file.
    static func open(_ path: String, _ flags: Int32, create: Bool = false) throws -> Int32? {
        let descriptor = Glibc.open(path, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | (create ? O_CREAT : 0), 0o600)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT, !create { return nil }
            if code == ELOOP { throw AuditError(.untrustedFile, "\(path) is a symbolic link; the audit trail's files are never followed through links") }
            if code == ENXIO { throw AuditError(.untrustedFile, "\(path) is not a regular file") }
            let write = flags & (O_WRONLY | O_RDWR) != 0
            throw AuditError(write ? .unwritable : .unreadable, "cannot open \(path) (\(String(cString: strerror(code))))")
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw AuditError(.untrustedFile, "\(path) is not a regular file")
        }
        let current = fcntl(descriptor, F_GETFL)
        if current >= 0 { _ = fcntl(descriptor, F_SETFL, current & ~O_NONBLOCK) }
        return descriptor
    }

    /// A small file whole (a checkpoint, the tree cache); nil when it does not exist. Larger
    /// than `limit`: an error (none of these files grows).
    static func readSmall(_ path: String, limit: Int = 64 * 1024) throws -> [UInt8]? {
        guard let descriptor = try open(path, O_RDONLY) else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw AuditError(.unreadable, "cannot examine \(path)") }
        let size = Int(status.st_size)
        guard size <= limit else { throw AuditError(.unreadable, "\(path) is \(size) bytes, larger than such a file can be") }
        guard let bytes = readFully(descriptor, at: 0, count: size) else {
            throw AuditError(.unreadable, "cannot read \(path) (\(String(cString: strerror(errno))))")
        }
        return bytes
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

    /// The size of an open file.
    static func size(_ descriptor: Int32, _ path: String) throws -> Int {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw AuditError(.unreadable, "cannot examine \(path)") }
        return Int(status.st_size)
    }

    /// Appends `bytes` whole or not at all: a write that fails part-way (disk full, quota, a
    /// file-size limit) is cut back to the size the file had, so a passing resource problem
    /// never leaves a torn record behind. With `sync`, `fdatasync` before returning; a failed
    /// sync also takes the bytes back (the record was not made).
    static func appendWhole(_ bytes: [UInt8], descriptor: Int32, path: String, sync: Bool) throws {
        let before = try size(descriptor, path)
        var written = 0
        func rollBack(_ what: String, _ code: Int32) -> AuditError {
            let cut = ftruncate(descriptor, off_t(before)) == 0
            let outcome = cut ? "nothing of it was kept" : "and it could not be cut back (\(String(cString: strerror(errno)))): verify the log before anything else"
            return AuditError(.unwritable, "cannot \(what) \(path) (\(String(cString: strerror(code)))); \(outcome)")
        }
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(descriptor, base + written, bytes.count - written)
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw rollBack("append to", count == 0 ? ENOSPC : errno) }
            written += count
        }
        if sync, fdatasync(descriptor) != 0 { throw rollBack("sync", errno) }
    }

    /// The trail's files must be this user's (or root's) and writable by nobody else: checked
    /// before an operation, so that state someone else could have written is never extended or
    /// signed. Paths that do not exist yet pass (they are made private).
    static func requireTrusted(directory: String, files: [String]) throws {
        do {
            try TrustedFile.verifyPrivateState(directory, kind: .directory)
            for file in files { try TrustedFile.verifyPrivateState(file, kind: .file) }
        } catch {
            let remedy = TrustedFile.remedy(for: error).map { "; once you know nobody else changed it, fix it with: \($0)" } ?? ""
            throw AuditError(.untrustedFile, "\(error): the audit trail cannot be trusted when others could have written it\(remedy)")
        }
    }

    /// `fsync` of a directory: a rename or removal in it made durable (EINVAL: a file system
    /// that cannot sync directories).
    static func syncDirectory(_ path: String) throws {
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw AuditError(.unwritable, "cannot open \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 || errno == EINVAL else {
            throw AuditError(.unwritable, "cannot sync \(path) (\(String(cString: strerror(errno))))", facts: ErrorFacts(path: path))
        }
    }

    /// Writes `bytes` whole to `temporary` (made afresh, 0600), syncs it, and renames it to
    /// `path`: `path` is then the old file or the new one, never a part of it. The caller syncs
    /// the directory when the rename must last.
    static func putInPlace(_ bytes: [UInt8], at path: String, through temporary: String) throws {
        _ = unlink(temporary)
        guard let descriptor = try open(temporary, O_WRONLY | O_EXCL, create: true) else {
            throw AuditError(.unwritable, "cannot create \(temporary)", facts: ErrorFacts(path: temporary))
        }
        do {
            try appendWhole(bytes, descriptor: descriptor, path: temporary, sync: true)
            close(descriptor)
        } catch {
            close(descriptor)
            _ = unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            _ = unlink(temporary)
            throw AuditError(.unwritable, "cannot put \(temporary) in place of \(path) (\(String(cString: strerror(code))))", facts: ErrorFacts(path: path))
        }
    }
}
