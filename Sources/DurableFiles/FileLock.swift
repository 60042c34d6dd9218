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

/// An exclusive advisory lock between processes (`flock` on a lock file), held until
/// ``release()`` or deinit. The lock dies with its process, so a process killed while holding
/// it never blocks the next one.
public final class FileLock {
    private var descriptor: Int32
    /// The lock file.
    public let path: String

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { release() }

    /// Releases the lock (idempotent).
    public func release() {
        guard descriptor >= 0 else { return }
        flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    /// Takes the lock, waiting up to `timeout` seconds while another process holds it.
    /// - Parameters:
    ///   - waiting: called once, if the lock is busy, with the holder's note (see `note`).
    ///   - note: written into the lock file once held (e.g. "pid 123: onboard ci-bot"), so that
    ///     a waiting process can say what it waits for. Never put a secret here.
    @available(*, noasync, message: "it waits up to `timeout` for another process: from async code, wait on a thread of its own")
    public static func acquire(_ path: String, timeout: TimeInterval, note: String = "",
                               waiting: (String) -> Void = { _ in }) throws(FileOutputError) -> FileLock {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try AtomicFile.makePrivateDirectory(directory)
        let descriptor = try openLocked(path, timeout: timeout, waiting: waiting)
        var status = stat()
        let singleName = fstat(descriptor, &status) == 0 && status.st_nlink == 1 && (status.st_mode & S_IFMT) == S_IFREG
        if !note.isEmpty, singleName {
            // Written over the last holder's note, then cut to its length: truncating to zero
            // first would free the file's block on every lock, which on a filesystem mounted
            // with `discard` waits for the device. Never into a file with other names (a hard
            // link planted at the lock's path would make this overwrite another file).
            let bytes = Array(note.utf8)
            let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            _ = ftruncate(descriptor, off_t(max(0, written)))
        }
        return FileLock(descriptor: descriptor, path: path)
    }

    /// Opens the lock file and locks it, making sure the file locked is still the one at `path`:
    /// a lock file deleted or replaced meanwhile (by whoever can write its directory) would
    /// leave this process and the next one locking different files, each alone.
    static func openLocked(_ path: String, timeout: TimeInterval, waiting: (String) -> Void) throws(FileOutputError) -> Int32 {
        for _ in 0..<16 {
            // O_NOFOLLOW: a symlink planted at the lock path must not make the note overwrite its target.
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard descriptor >= 0 else {
                throw FileOutputError(path: path, reason: "cannot open the lock file (\(String(cString: strerror(errno))))")
            }
            do {
                try waitForLock(descriptor, path: path, timeout: timeout, waiting: waiting)
            } catch {
                close(descriptor)
                throw error
            }
            if isStillAtPath(descriptor, path) { return descriptor }
            flock(descriptor, LOCK_UN)
            close(descriptor)
        }
        throw FileOutputError(path: path, reason: "the lock file keeps being replaced while it is taken: another process is interfering with it")
    }

    /// True when `descriptor` is the file now at `path` (same device and inode).
    static func isStillAtPath(_ descriptor: Int32, _ path: String) -> Bool {
        var held = stat()
        var current = stat()
        guard fstat(descriptor, &held) == 0, lstat(path, &current) == 0 else { return false }
        return held.st_dev == current.st_dev && held.st_ino == current.st_ino
    }

    /// Takes `flock(LOCK_EX)` on an open lock file, waiting up to `timeout` seconds.
    static func waitForLock(_ descriptor: Int32, path: String, timeout: TimeInterval,
                            waiting: (String) -> Void) throws(FileOutputError) {
        let deadline = Date().addingTimeInterval(max(0, timeout))
        var announced = false
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                throw FileOutputError(path: path, reason: "cannot lock (\(String(cString: strerror(errno))))")
            }
            if !announced {
                announced = true
                waiting(holderNote(descriptor))
            }
            guard Date() < deadline else {
                let holder = holderNote(descriptor)
                throw FileOutputError(path: path, reason: "still in progress in another process\(holder.isEmpty ? "" : " (\(holder))") after \(Int(timeout)) s", code: .locked)
            }
            usleep(50_000)
        }
    }

    static func holderNote(_ descriptor: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return "" }
        return String(decoding: buffer.prefix(count), as: UTF8.self)
            .unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }.map(String.init).joined()
    }
}

@available(*, unavailable, message: "a lock belongs to the code that took it")
extension FileLock: Sendable {}

@available(*, unavailable, message: "keep it inside the Mutex of whatever shares it between threads")
extension ReusableFileLock: Sendable {}

/// A lock file a long-running process keeps open and locks around each use (the same `flock`
/// as ``FileLock``, without opening the file each time). Not Sendable: one owner uses it, and a
/// long-running owner shared between threads keeps it inside its own `Mutex`.
public final class ReusableFileLock {
    private var descriptor: Int32
    /// The lock file.
    public let path: String

    /// Opens (creating, 0600, never through a symlink) the lock file.
    public init(_ path: String) throws(FileOutputError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try AtomicFile.makePrivateDirectory(directory)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw FileOutputError(path: path, reason: "cannot open the lock file (\(String(cString: strerror(errno))))")
        }
        self.descriptor = descriptor
        self.path = path
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Takes the lock, waiting up to `timeout` seconds; pair with ``unlock()``. When the file
    /// at the path is no longer the one kept open (deleted or replaced underneath), the file
    /// now there is opened and locked instead: every process locks the same file.
    @available(*, noasync, message: "it waits up to `timeout` for another process: from async code, wait on a thread of its own")
    public func lock(timeout: TimeInterval) throws(FileOutputError) {
        for _ in 0..<16 {
            if descriptor < 0 {
                descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
                guard descriptor >= 0 else {
                    throw FileOutputError(path: path, reason: "cannot open the lock file (\(String(cString: strerror(errno))))")
                }
            }
            try FileLock.waitForLock(descriptor, path: path, timeout: timeout, waiting: { _ in })
            if FileLock.isStillAtPath(descriptor, path) { return }
            flock(descriptor, LOCK_UN)
            close(descriptor)
            descriptor = -1
        }
        throw FileOutputError(path: path, reason: "the lock file keeps being replaced while it is taken: another process is interfering with it")
    }

    /// Releases the lock.
    public func unlock() {
        flock(descriptor, LOCK_UN)
    }
}
