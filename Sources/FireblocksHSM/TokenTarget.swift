import ErrorShape
import AuditTrail
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys

/// Which module, token, key and PIN source an operation works with (the command line resolves
/// it from flags, URIs, the environment and the profile).
public struct TokenTarget: Sendable {
    /// The module.
    public let module: ModuleLocation
    /// The token (label).
    public let token: TokenSelector?
    /// The key.
    public let key: KeySelector?
    /// The PIN source.
    public let pinSource: PINSource

    /// Creates the value from its parts.
    public init(module: ModuleLocation, token: TokenSelector?, key: KeySelector?, pinSource: PINSource) {
        self.module = module
        self.token = token
        self.key = key
        self.pinSource = pinSource
    }

    /// The token selector; `noTokenSelected` when there is none.
    public func requireToken() throws -> TokenSelector {
        guard let token else { throw OperationError(.noTokenSelected, "no token selected") }
        return token
    }

    /// The key selector; `noKeySelected` when there is none.
    public func requireKey() throws -> KeySelector {
        guard let key else { throw OperationError(.noKeySelected, "no key selected") }
        return key
    }

}

/// A token opened for one command: the module, the token, and one session (logged in when
/// the command needs private objects).
public final class OpenedToken {
    /// The module.
    public let module: PKCS11Module
    /// The token (label).
    public let token: LocatedToken
    /// The session.
    public let session: Session

    private init(module: PKCS11Module, token: LocatedToken, session: Session) {
        self.module = module
        self.token = token
        self.session = session
    }

    /// The same token with a session of its own (same module, same login state): for work on
    /// another thread, which must not share this one's session.
    static func sharing(module: PKCS11Module, token: LocatedToken, readWrite: Bool) throws -> OpenedToken {
        OpenedToken(module: module, token: token, session: try token.slot.openSession(readWrite: readWrite))
    }

    /// Loads the module, finds the token, opens a session and (optionally) logs in.
    ///
    /// With `auditDirectory`, a login the token refuses is recorded in the token's audit log
    /// (`login.failed`, with the CKR name, never the PIN); the next signed checkpoint seals it.
    @available(*, noasync, message: "it loads the module and logs in: from async code, run it through BlockingBridge")
    public static func open(_ target: TokenTarget, readWrite: Bool, logIn: Bool, observer: any OperationObserver,
                            auditDirectory: URL? = nil) throws -> OpenedToken {
        let selector = try target.requireToken()
        let (module, token) = try TokenLocator.load(target.module, locating: selector)
        let session = try token.slot.openSession(readWrite: readWrite)
        if logIn {
            do {
                try TokenLogin.logIn(session, source: target.pinSource, prompter: observer.pinPrompter,
                                     warn: observer.note)
            } catch let error as TokenKeysError where [.pinIncorrect, .pinLocked, .pinRejected].contains(error.code) {
                if let auditDirectory {
                    let log = AuditLog(directory: auditDirectory,
                                       token: .init(serial: token.info.serialNumber, label: token.info.label),
                                       tool: .init(name: "fireblocks-hsm", version: FireblocksHSMVersion.current))
                    do {
                        _ = try log.appendUnsealed([AuditEntry(event: "login.failed", outcome: .failed(error.code.name),
                                                       facts: ["pinSource": .string(target.pinSource.description)])])
                    } catch {
                        observer.note("warning: the failed login could not be recorded in the audit log (\(error))")
                    }
                }
                throw error
            }
        }
        return OpenedToken(module: module, token: token, session: session)
    }
}
