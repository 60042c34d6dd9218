import DurableFiles
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loading a PKCS#11 module runs its code (its constructors run at `dlopen`, before anything
/// else), so a module file anyone else could have written is refused before it is loaded,
/// wherever its name came from (a flag, the environment, a profile, a URI, p11-kit's registry):
/// ``TrustedFile``, in the words of a module.
enum ModuleFileCheck {
    /// The canonical path of a module file that passes; `ModuleLoadError` otherwise.
    /// - Parameter asked: the module as the user named it, for the error.
    static func verify(_ path: String, asked: String) throws -> String {
        do {
            return try TrustedFile.verify(path)
        } catch {
            throw ModuleLoadError(code: code(error), module: asked, reason: reason(error))
        }
    }

    private static func code(_ error: TrustedFileError) -> ModuleLoadError.Code {
        switch error.code {
        case .unreadable: return .fileNotFound
        case .otherOwner, .writableByOthers, .readableByOthers: return .unsafeModuleFile
        default: return .notAPKCS11Module
        }
    }

    private static func reason(_ error: TrustedFileError) -> String {
        let named = error.subject == .file(error.subject.path) ? "module file \(error.subject.path)" : error.subject.description
        switch error.code {
        case .unreadable where error.subject == .file(error.subject.path): return String(cString: strerror(error.errno ?? 0))
        case .otherOwner:
            return "\(named) belongs to another user (uid \(error.uid ?? 0)); a module runs as this process, so it must be yours or root's"
        case .writableByOthers:
            return "\(named) is writable by group or others (mode \(String(error.mode ?? 0, radix: 8))); a module runs as this process: chmod go-w it"
        default: return error.description
        }
    }
}
