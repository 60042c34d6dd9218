#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loading a PKCS#11 module runs its code (its constructors run at `dlopen`, before anything
/// else), so a module file anyone else could have written is refused before it is loaded,
/// wherever its name came from (a flag, the environment, a profile, a URI, p11-kit's registry).
///
/// After resolving symlinks, the file must be a regular file, and the file and the directory
/// holding it must belong to this user or root and not be writable by group or others. This is
/// what OpenSSH asks of the PKCS#11 providers and keys it loads.
enum ModuleFileCheck {
    /// The canonical path of a module file that passes; `ModuleLoadError` otherwise.
    /// - Parameter asked: the module as the user named it, for the error.
    static func verify(_ path: String, asked: String) throws -> String {
        guard let resolved = realpath(path, nil) else {
            throw ModuleLoadError(code: .fileNotFound, module: asked, reason: String(cString: strerror(errno)))
        }
        let real = String(cString: resolved)
        free(resolved)

        var file = stat()
        guard stat(real, &file) == 0 else {
            throw ModuleLoadError(code: .fileNotFound, module: asked, reason: String(cString: strerror(errno)))
        }
        guard (file.st_mode & S_IFMT) == S_IFREG else {
            throw ModuleLoadError(code: .notAPKCS11Module, module: asked, reason: "\(real) is not a regular file")
        }
        try requireTrusted(file, what: "module file \(real)", asked: asked)

        let directory = real.lastIndex(of: "/").map { real[..<$0].isEmpty ? "/" : String(real[..<$0]) } ?? "."
        var parent = stat()
        guard stat(directory, &parent) == 0 else {
            throw ModuleLoadError(code: .fileNotFound, module: asked, reason: "\(directory): \(String(cString: strerror(errno)))")
        }
        try requireTrusted(parent, what: "directory \(directory)", asked: asked)
        return real
    }

    private static func requireTrusted(_ status: stat, what: String, asked: String) throws {
        if status.st_uid != 0, status.st_uid != getuid() {
            throw ModuleLoadError(code: .unsafeModuleFile, module: asked,
                                  reason: "\(what) belongs to another user (uid \(status.st_uid)); a module runs as this process, so it must be yours or root's")
        }
        if status.st_mode & 0o022 != 0 {
            throw ModuleLoadError(code: .unsafeModuleFile, module: asked,
                                  reason: "\(what) is writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8))); a module runs as this process: chmod go-w it")
        }
    }
}
