import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Puts executables in place for tests that run them.
///
/// A file that some process still holds open for writing cannot be executed (`ETXTBSY`).
/// Tests run in parallel, and a child forked by another test inherits every descriptor not
/// marked close-on-exec: a copy or script written with an inheritable descriptor can then
/// fail to run for as long as that child lives. These helpers write through a descriptor
/// opened `O_CLOEXEC` and `Subprocess.run` waits
/// out the microseconds between another thread's fork and exec.
public enum Executable {
    /// Places a copy of the executable `source` at `path` (a copy, not a link: the trust
    /// checks count links, and a test may change the copy's mode).
    public static func copy(_ source: String, to path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: source))
        try write(data, to: path)
    }

    /// Writes a shell script at `path`, mode 0755.
    public static func script(_ text: String, at path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    private static func write(_ data: Data, to path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        try data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress!.advanced(by: offset), bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                }
                offset += written
            }
        }
        guard fchmod(descriptor, 0o755) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
