import Foundation
import PKCS11
import Synchronization

/// SoftHSM for tests: a configuration and token directory of this test process's own, in a
/// temporary directory (never the system token store), removed at exit.
///
/// SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`, and the environment is process-wide, so
/// the whole test process shares one configuration; each test makes its own token in it
/// (``TestToken``), so tests stay independent and can run in parallel.
public enum SoftHSM {
    /// The SoftHSM module file: `$SOFTHSM2_MODULE`, or where Debian (or a source build) puts it.
    public static let modulePath: String = {
        if let path = ProcessInfo.processInfo.environment["SOFTHSM2_MODULE"] { return path }
        let candidates = [
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/local/lib/softhsm/libsofthsm2.so",
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }()

    /// The process-wide temporary SoftHSM home (configuration + token directory).
    public static let home: TokenDirectory = {
        let directory = try! TokenDirectory(prefix: "fbhsm-tests-process")
        setenv("SOFTHSM2_CONF", directory.configPath, 1)
        // Remove the directory when the test process ends (a C callback: statics only).
        atexit { SoftHSM.home.remove() }
        return directory
    }()

    /// Loads SoftHSM in this process, configured with ``home``.
    public static func loadModule() throws -> PKCS11Module {
        _ = home
        return try PKCS11Module.load(.path(modulePath))
    }
}

/// A directory holding a SoftHSM configuration and its token store, for one test process or
/// for child processes (pass ``environment`` to them).
public final class TokenDirectory: Sendable {
    public let path: String
    public let configPath: String
    public let tokenPath: String

    public init(prefix: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        let template = "\(base)/\(prefix)-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard mkdtemp(&bytes) != nil else {
            throw TestSupportError("mkdtemp failed for \(template)")
        }
        path = String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        tokenPath = path + "/tokens"
        configPath = path + "/softhsm2.conf"
        try FileManager.default.createDirectory(atPath: tokenPath, withIntermediateDirectories: true)
        let config = """
            directories.tokendir = \(tokenPath)
            objectstore.backend = file
            log.level = ERROR
            slots.removable = false
            slots.mechanisms = ALL
            library.reset_on_fork = false

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Environment for a child process that should see this directory's tokens.
    public var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["SOFTHSM2_CONF"] = configPath
        return environment
    }

    /// Removes the directory.
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A fresh, initialised SoftHSM token of one test: its own label, SO PIN and user PIN.
public final class TestToken: Sendable {
    public let module: PKCS11Module
    public let slot: Slot
    public let label: String
    /// The user PIN; tests pass it through pin sources as a user would.
    public let userPINString: String
    public let securityOfficerPINString: String

    public var userPIN: PIN { PIN(userPINString) }

    /// Serialises token initialisation: two tests must not both take the one free slot.
    private static let initialization = Mutex<Void>(())

    public init(labelPrefix: String = "test") throws {
        let module = try SoftHSM.loadModule()
        self.module = module
        let suffix = String(UInt32.random(in: .min ... .max), radix: 16)
        let label = String("\(labelPrefix)-\(suffix)".prefix(32))
        self.label = label
        let userPINString = "user-\(UInt32.random(in: 1000...9999))"
        let securityOfficerPINString = "so-\(UInt32.random(in: 1000...9999))"
        self.userPINString = userPINString
        self.securityOfficerPINString = securityOfficerPINString

        slot = try Self.initialization.withLock { _ in
            let free = try module.slots(withTokenPresent: true).first { slot in
                (try? slot.tokenInfo().flags.contains(.tokenInitialized)) == false
            }
            guard let free else { throw TestSupportError("SoftHSM offers no uninitialised token") }
            try free.initializeToken(label: label, securityOfficerPIN: PIN(securityOfficerPINString))
            // SoftHSM gives the token a new slot id when it is initialised: find it by label.
            let initialised = try module.slots(withTokenPresent: true).first { slot in
                (try? slot.tokenInfo().label) == label
            }
            guard let initialised else { throw TestSupportError("token \(label) vanished after C_InitToken") }
            let session = try initialised.openSession(readWrite: true)
            try session.login(.securityOfficer, pin: PIN(securityOfficerPINString))
            try session.initializeUserPIN(PIN(userPINString))
            try session.logout()
            return initialised
        }
    }

    /// A read-write session with the user logged in.
    public func userSession() throws -> Session {
        let session = try slot.openSession(readWrite: true)
        try session.login(.user, pin: userPIN)
        return session
    }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
