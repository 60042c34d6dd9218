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
        switch error {
        case .unreadable, .unreadableDirectory: return .fileNotFound
        case .notARegularFile, .notADirectory, .hardLinked: return .notAPKCS11Module
        case .otherOwner, .writableByOthers: return .unsafeModuleFile
        }
    }

    private static func reason(_ error: TrustedFileError) -> String {
        func named(_ subject: TrustedFileError.Subject) -> String {
            switch subject {
            case .file(let path): return "module file \(path)"
            case .directory, .linkDirectory: return subject.description
            }
        }
        switch error {
        case .unreadable(_, let code): return String(cString: strerror(code))
        case .unreadableDirectory, .notARegularFile, .notADirectory, .hardLinked: return error.description
        case .otherOwner(let subject, let uid):
            return "\(named(subject)) belongs to another user (uid \(uid)); a module runs as this process, so it must be yours or root's"
        case .writableByOthers(let subject, let mode):
            return "\(named(subject)) is writable by group or others (mode \(String(mode, radix: 8))); a module runs as this process: chmod go-w it"
        }
    }
}
