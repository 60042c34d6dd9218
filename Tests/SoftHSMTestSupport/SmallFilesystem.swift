import Foundation

/// A small tmpfs mounted for one test: a filesystem whose free space the test decides (filled
/// with a file, then emptied again). Mounting needs root: tests that use it are enabled only
/// where ``isAvailable`` (a trial mount succeeded) and are skipped elsewhere.
public final class SmallFilesystem {
    /// The mount point (mode 0700, the test user's).
    public let path: String
    private let filler: String

    /// Whether this process may mount a tmpfs (root, and a trial mount succeeded).
    public static let isAvailable: Bool = {
        guard geteuid() == 0, Subprocess.isAvailable("mount") else { return false }
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("tmpfs-probe-\(UUID())").path
        guard (try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)) != nil else { return false }
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard (try? Subprocess.run("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", probe]))?.status == 0 else { return false }
        return (try? Subprocess.run("umount", [probe]))?.status == 0
    }()

    /// Mounts a tmpfs of `bytes` at `path` (made if missing).
    public init(at path: String, bytes: Int) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let mounted = try Subprocess.run("mount", ["-t", "tmpfs", "-o", "size=\(bytes),mode=0700", "tmpfs", path])
        guard mounted.status == 0 else { throw TestSupportError("mount failed: \(mounted.standardError)") }
        self.path = path
        self.filler = path + "/.filler"
    }

    /// Bytes still free (`f_bavail × f_frsize`, as `statvfs` says).
    public var availableBytes: Int64 {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return -1 }
        return Int64(status.f_bavail) * Int64(status.f_frsize)
    }

    /// Fills it with one file until at most `bytes` are left free.
    public func fill(leaving bytes: Int64) throws {
        let size = max(0, availableBytes - bytes)
        // A file that is not the trail's own: an operator would move such a file away.
        guard FileManager.default.createFile(atPath: filler, contents: Data(count: Int(size))) else {
            throw TestSupportError("cannot write \(filler)")
        }
        guard availableBytes <= bytes else { throw TestSupportError("\(availableBytes) bytes still free after filling \(path)") }
    }

    /// Removes the file ``fill(leaving:)`` wrote.
    public func empty() throws {
        try FileManager.default.removeItem(atPath: filler)
    }

    /// Unmounts it (everything written there is gone).
    public func unmount() {
        _ = try? Subprocess.run("umount", [path])
    }
}
