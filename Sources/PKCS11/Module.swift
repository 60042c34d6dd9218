internal import CPKCS11
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A loaded and initialised PKCS#11 module.
///
/// A module is a process-wide singleton in PKCS#11: `C_Initialize` once, and `C_Finalize`
/// ends every session of every caller. So loading the same module twice hands out two
/// references to one initialised module; the module is finalised when the last reference
/// (including those held by open sessions and slots) goes away, and only if this process's
/// `C_Initialize` was the one that initialised it.
public final class PKCS11Module: Sendable {
    let loaded: LoadedModule

    /// Where the module was loaded from, as asked.
    public let location: ModuleLocation

    /// The file the module was loaded from (`p11-kit-proxy` for the proxy).
    public var filename: String { loaded.filename }

    private init(loaded: LoadedModule, location: ModuleLocation) {
        self.loaded = loaded
        self.location = location
    }

    deinit {
        ModuleRegistry.release(loaded)
    }

    /// Loads and initialises a module, or returns the already initialised one.
    ///
    /// `C_Initialize` gets `CKF_OS_LOCKING_OK` (SoftHSM turns its own locking off on NULL
    /// arguments); `CKR_CRYPTOKI_ALREADY_INITIALIZED` is accepted, in which case this process
    /// never finalises the module.
    public static func load(_ location: ModuleLocation) throws -> PKCS11Module {
        let loaded = try ModuleRegistry.acquire(location)
        return PKCS11Module(loaded: loaded, location: location)
    }

    /// `C_Initialize` again in a child process after `fork()`: PKCS#11 (§5.4 of v3.0) says a
    /// child must initialise before using the module, and that the parent's sessions and login
    /// are not the child's. `CKR_CRYPTOKI_ALREADY_INITIALIZED` is accepted.
    public func reinitializeAfterFork() throws {
        let initialize = try loaded.function(\.C_Initialize, "C_Initialize")
        var arguments = CK_C_INITIALIZE_ARGS()
        arguments.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        let rv = withUnsafeMutablePointer(to: &arguments) { initialize(UnsafeMutableRawPointer($0)) }
        guard rv == CK_RV(CKR_OK) || rv == CK_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED) else {
            throw PKCS11Error(function: "C_Initialize", returnValue: ReturnValue(rawValue: UInt(rv)))
        }
    }

    /// `C_GetInfo`.
    public func info() throws -> ModuleInfo {
        let getInfo = try loaded.function(\.C_GetInfo, "C_GetInfo")
        var info = CK_INFO()
        try check("C_GetInfo", getInfo(&info))
        return ModuleInfo(info)
    }

    /// `C_GetSlotList`: the slots, by default only those with a token present.
    public func slots(withTokenPresent tokenPresent: Bool = true) throws -> [Slot] {
        let getSlotList = try loaded.function(\.C_GetSlotList, "C_GetSlotList")
        let present = CK_BBOOL(tokenPresent ? CK_TRUE : CK_FALSE)
        // Two-call pattern; the list can grow between the calls (hot-plug), so loop.
        while true {
            var count: CK_ULONG = 0
            try check("C_GetSlotList", getSlotList(present, nil, &count))
            if count == 0 { return [] }
            let capacity = try boundedCount(count, function: "C_GetSlotList")
            var ids = [CK_SLOT_ID](repeating: 0, count: capacity)
            let rv = getSlotList(present, &ids, &count)
            if rv == CKR_BUFFER_TOO_SMALL { continue }
            try check("C_GetSlotList", rv)
            return ids.prefix(min(capacity, Int(clamping: count))).map { Slot(module: self, id: SlotID(rawValue: UInt($0))) }
        }
    }
}

/// `CK_INFO`, with the blank padding removed.
public struct ModuleInfo: Hashable, Sendable {
    /// The cryptoki version.
    public let cryptokiVersion: Version
    /// The manufacturer.
    public let manufacturer: String
    /// The library description.
    public let libraryDescription: String
    /// The library version.
    public let libraryVersion: Version

    init(_ info: CK_INFO) {
        var info = info
        cryptokiVersion = Version(info.cryptokiVersion)
        manufacturer = paddedString(&info.manufacturerID)
        libraryDescription = paddedString(&info.libraryDescription)
        libraryVersion = Version(info.libraryVersion)
    }
}

/// A `CK_VERSION`.
public struct Version: Hashable, Sendable, CustomStringConvertible {
    /// The major version.
    public let major: UInt8
    /// The minor version.
    public let minor: UInt8

    /// Creates the value from its parts.
    public init(major: UInt8, minor: UInt8) {
        self.major = major
        self.minor = minor
    }

    init(_ version: CK_VERSION) {
        self.init(major: version.major, minor: version.minor)
    }

    /// How it reads in messages.
    public var description: String { "\(major).\(minor)" }
}

// MARK: - Internals

/// The function list of one loaded module. Shared by every `PKCS11Module` that refers to the
/// same file; owned by `ModuleRegistry`.
///
/// `@unchecked Sendable`: the pointer is written once, before publication, and the module was
/// initialised with `CKF_OS_LOCKING_OK`, which makes its functions callable from any thread
/// (exercised by SendableInvariantTests: one module loaded and called from many threads).
final class LoadedModule: @unchecked Sendable {
    let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>
    let filename: String
    let key: String
    /// False when somebody else in this process had already called `C_Initialize`.
    let ownsInitialization: Bool
    /// True when `p11_kit_module_load` loaded it (and `p11_kit_module_release` must unload it).
    let loadedThroughP11Kit: Bool

    init(functions: UnsafeMutablePointer<CK_FUNCTION_LIST>, filename: String, key: String,
         ownsInitialization: Bool, loadedThroughP11Kit: Bool) {
        self.functions = functions
        self.filename = filename
        self.key = key
        self.ownsInitialization = ownsInitialization
        self.loadedThroughP11Kit = loadedThroughP11Kit
    }

    /// A function from the list; a NULL entry (allowed for unsupported functions by some
    /// modules) becomes `CKR_FUNCTION_NOT_SUPPORTED` instead of a crash.
    func function<F>(_ keyPath: KeyPath<CK_FUNCTION_LIST, F?>, _ name: String) throws(PKCS11Error) -> F {
        guard let function = functions.pointee[keyPath: keyPath] else {
            throw PKCS11Error(function: name, returnValue: .functionNotSupported)
        }
        return function
    }

    func finalizeAndUnload() {
        if ownsInitialization, let finalize = functions.pointee.C_Finalize {
            _ = finalize(nil)
        }
        if loadedThroughP11Kit {
            p11_kit_module_release(functions)
        }
    }
}

/// Modules by file (canonical path: a bare name, a symlink and the absolute path of one file are
/// one module). One caveat: p11-kit's proxy loads every registered module
/// itself, so a process that uses the proxy *and* loads one of those modules directly holds two
/// references the registry cannot relate; finalising either would end the other's sessions.
/// The command line uses one module per process; library users should do the same.
enum ModuleRegistry {
    private struct Entry {
        let module: LoadedModule
        var references: Int
    }

    private static let entries = Mutex<[String: Entry]>([:])

    static func acquire(_ location: ModuleLocation) throws -> LoadedModule {
        // Held across loading and C_Initialize so that a concurrent release of the same module
        // cannot finalise it between our lookup and our initialisation.
        try entries.withLock { entries in
            let resolved = try resolve(location)
            if var entry = entries[resolved.key] {
                entry.references += 1
                entries[resolved.key] = entry
                return entry.module
            }
            let module = try loadAndInitialize(resolved, asked: location)
            entries[resolved.key] = Entry(module: module, references: 1)
            return module
        }
    }

    static func release(_ module: LoadedModule) {
        entries.withLock { entries in
            guard var entry = entries[module.key] else { return }
            entry.references -= 1
            if entry.references > 0 {
                entries[module.key] = entry
            } else {
                entries[module.key] = nil
                module.finalizeAndUnload()
            }
        }
    }

    private struct Resolved {
        /// `nil` for the proxy, which is reached through the `C_GetFunctionList` libp11-kit
        /// itself exports (libp11-kit *is* p11-kit-proxy.so).
        let path: String?
        let key: String
    }

    private static func resolve(_ location: ModuleLocation) throws -> Resolved {
        switch location {
        case .p11KitProxy:
            return Resolved(path: nil, key: "p11-kit-proxy")
        case .path(let path):
            // A bare file name is looked up where p11-kit looks: its module directory. Resolving
            // it here (rather than letting p11-kit do it) means the file is checked before it is
            // loaded, and a bare name and its absolute path are one module in the registry.
            let file = path.contains("/") ? path : try moduleDirectoryFile(path)
            let real = try ModuleFileCheck.verify(file, asked: path)
            return Resolved(path: real, key: real)
        case .registeredName(let name):
            let filename = try registeredModuleFilename(name)
            let real = try ModuleFileCheck.verify(filename, asked: name)
            return Resolved(path: real, key: real)
        }
    }

    /// The file of a shared library mapped into this process whose path contains `fragment`
    /// (from `/proc/self/maps`; nil where there is none).
    private static func loadedLibraryPath(containing fragment: String) -> String? {
        guard let maps = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(maps) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), maps) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard let slash = text.firstIndex(of: "/") else { continue }
            var path = String(text[slash...])
            while path.last == "\n" { path.removeLast() }
            if path.contains(fragment) { return path }
        }
        return nil
    }

    /// `NAME` in p11-kit's module directory: `pkcs11/` beside libp11-kit itself (its
    /// `P11_MODULE_PATH`, `${libdir}/pkcs11` on Debian and most distributions).
    private static func moduleDirectoryFile(_ name: String) throws -> String {
        guard let library = loadedLibraryPath(containing: "/libp11-kit.so") else {
            throw ModuleLoadError(code: .fileNotFound, module: name, reason: "cannot locate p11-kit's module directory; give the module's absolute path")
        }
        let libraryPath = canonicalPath(library)
        let directory = String(libraryPath[..<(libraryPath.lastIndex(of: "/") ?? libraryPath.startIndex)]) + "/pkcs11"
        let candidate = directory + "/" + name
        guard access(candidate, F_OK) == 0 else {
            throw ModuleLoadError(code: .fileNotFound, module: name, reason: "no such file in p11-kit's module directory \(directory); give the module's absolute path")
        }
        return candidate
    }

    private static func loadAndInitialize(_ resolved: Resolved, asked: ModuleLocation) throws -> LoadedModule {
        let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>
        let loadedThroughP11Kit: Bool
        if let path = resolved.path {
            guard let list = p11_kit_module_load(path, Int32(P11_KIT_MODULE_UNMANAGED)) else {
                let message = p11_kit_message().map { String(cString: $0) } ?? "p11_kit_module_load failed"
                throw ModuleLoadError(code: .notAPKCS11Module, module: asked.description, reason: message)
            }
            functions = list
            loadedThroughP11Kit = true
        } else {
            var list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
            let rv = C_GetFunctionList(&list)
            guard rv == CKR_OK, let list else {
                throw ModuleLoadError(code: .initializationFailed, module: asked.description,
                                      reason: "C_GetFunctionList: " + ReturnValue(rawValue: UInt(rv)).name)
            }
            functions = list
            loadedThroughP11Kit = false
        }

        guard let initialize = functions.pointee.C_Initialize else {
            if loadedThroughP11Kit { p11_kit_module_release(functions) }
            throw ModuleLoadError(code: .notAPKCS11Module, module: asked.description, reason: "C_Initialize is NULL")
        }
        var arguments = CK_C_INITIALIZE_ARGS()
        arguments.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        let rv = withUnsafeMutablePointer(to: &arguments) { initialize(UnsafeMutableRawPointer($0)) }
        let owns: Bool
        switch rv {
        case CK_RV(CKR_OK):
            owns = true
        case CK_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED):
            owns = false
        default:
            if loadedThroughP11Kit { p11_kit_module_release(functions) }
            throw ModuleLoadError(code: .initializationFailed, module: asked.description,
                                  reason: "C_Initialize: " + ReturnValue(rawValue: UInt(rv)).name)
        }
        return LoadedModule(functions: functions, filename: resolved.path ?? "p11-kit-proxy",
                            key: resolved.key, ownsInitialization: owns,
                            loadedThroughP11Kit: loadedThroughP11Kit)
    }

    /// The file of a module registered with p11-kit, by its registered name.
    private static func registeredModuleFilename(_ name: String) throws -> String {
        guard let modules = p11_kit_modules_load(nil, 0) else {
            let message = p11_kit_message().map { String(cString: $0) } ?? "p11_kit_modules_load failed"
            throw ModuleLoadError(code: .unknownModuleName, module: name, reason: message)
        }
        defer { p11_kit_modules_release(modules) }
        var known: [String] = []
        var index = 0
        while let module = modules[index] {
            index += 1
            guard let cName = p11_kit_module_get_name(module) else { continue }
            let moduleName = String(cString: cName)
            free(cName)
            known.append(moduleName)
            if moduleName == name, let cFile = p11_kit_module_get_filename(module) {
                defer { free(cFile) }
                return String(cString: cFile)
            }
        }
        let list = known.isEmpty ? "none are registered" : "registered: " + known.sorted().joined(separator: ", ")
        throw ModuleLoadError(code: .unknownModuleName, module: name, reason: list)
    }

    static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

/// Throws `PKCS11Error(function:returnValue:)` unless `rv` is `CKR_OK`.
@inline(__always)
func check(_ function: String, _ rv: CK_RV) throws(PKCS11Error) {
    if rv != CKR_OK {
        throw PKCS11Error(function: function, returnValue: ReturnValue(rawValue: UInt(rv)))
    }
}

/// A count a module reported, as an `Int` to size a buffer with; a module that claims more than
/// any real token has is answering oddly, and gets an error instead of a huge allocation.
func boundedCount(_ count: CK_ULONG, function: String, limit: Int = 1 << 16) throws(PKCS11Error) -> Int {
    guard let value = Int(exactly: count), value <= limit else {
        throw PKCS11Error(function: function, returnValue: .generalError)
    }
    return value
}

/// Decodes a blank-padded, not NUL-terminated `CK_UTF8CHAR` field of a fixed-size C struct.
func paddedString<T>(_ field: inout T) -> String {
    withUnsafeBytes(of: &field) { raw in
        var bytes = Array(raw)
        while let last = bytes.last, last == 0x20 || last == 0 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}
