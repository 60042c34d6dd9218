import PKCS11
import TokenKeys

/// Environment variables the token options fall back to.
public enum TokenEnvironment {
    public static let module = "FIREBLOCKS_HSM_MODULE"
    public static let token = "FIREBLOCKS_HSM_TOKEN"
    public static let pinSource = "FIREBLOCKS_HSM_PIN_SOURCE"
}

/// Which module, token, key and PIN source a command works with, resolved from flags, URIs
/// and the environment.
///
/// Precedence: a flag, then what a `pkcs11:` URI says (its module-path/module-name and
/// pin-source), then the environment, then the default (p11-kit's proxy; a PIN prompt).
public struct TokenTarget: Sendable {
    public let module: ModuleLocation
    public let token: TokenSelector?
    public let key: KeySelector?
    public let pinSource: PINSource

    public init(module: ModuleLocation, token: TokenSelector?, key: KeySelector?, pinSource: PINSource) {
        self.module = module
        self.token = token
        self.key = key
        self.pinSource = pinSource
    }

    /// Resolves the raw option values; `profile` fills what neither flags nor the environment set.
    public static func resolve(
        module moduleFlag: String?,
        token tokenFlag: String?,
        key keyFlag: String?,
        pinSource pinSourceFlag: String?,
        environment: [String: String],
        profile: Profile? = nil
    ) throws -> TokenTarget {
        let tokenText = tokenFlag ?? nonEmpty(environment[TokenEnvironment.token]) ?? profile?.token
        var token = try tokenText.map { try TokenSelector(argument: $0) }
        let key = try keyFlag.map { try KeySelector(argument: $0) }

        let uris = [token?.uri, key?.uri].compactMap { $0 }
        for uri in uris where uri.pinValue != nil {
            throw TokenKeysError(.pinValueOnCommandLine,
                "a pkcs11: URI with pin-value puts the PIN in the process list and shell history; use pin-source=env:NAME or pin-source=file:PATH instead")
        }
        // A key URI that names its token (pkcs11:token=fb;object=k) selects the token too.
        if token == nil, let keyURI = key?.uri, keyURI.identifiesToken {
            token = .uri(keyURI)
        }

        let explicitModule = moduleFlag.map(ModuleLocation.init(argument:))
        var module = try ModuleResolution.resolve(explicit: explicitModule, uris: uris)
        if explicitModule == nil, module == .p11KitProxy,
           let fallback = nonEmpty(environment[TokenEnvironment.module]) ?? profile?.module {
            module = ModuleLocation(argument: fallback)
        }

        let pinSource: PINSource
        if let flag = pinSourceFlag {
            pinSource = try PINSource(parsing: flag, origin: "--pin-source")
        } else if let fromURI = uris.compactMap(\.pinSource).first {
            pinSource = try PINSource(uriPINSource: fromURI)
        } else if let fallback = nonEmpty(environment[TokenEnvironment.pinSource]) {
            pinSource = try PINSource(parsing: fallback, origin: TokenEnvironment.pinSource)
        } else if let fallback = profile?.pinSource {
            pinSource = try PINSource(parsing: fallback, origin: "the profile's pinSource")
        } else {
            pinSource = .prompt
        }
        return TokenTarget(module: module, token: token, key: key, pinSource: pinSource)
    }

    /// The token selector, or the error that tells the user how to give one.
    public func requireToken() throws -> TokenSelector {
        guard let token else {
            throw TokenKeysError(.noTokenSelected, "no token selected: pass --token LABEL or --token 'pkcs11:token=…' (or set \(TokenEnvironment.token)); 'fireblocks-hsm token list' shows the tokens")
        }
        return token
    }

    /// The key selector, or the error that tells the user how to give one.
    public func requireKey() throws -> KeySelector {
        guard let key else {
            throw TokenKeysError(.invalidArgument, "no key selected: pass --key LABEL or --key 'pkcs11:object=…'")
        }
        return key
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}

/// A token opened for one command: the module, the token, and one session (logged in when
/// the command needs private objects).
public final class OpenedToken {
    public let module: PKCS11Module
    public let token: LocatedToken
    public let session: Session

    private init(module: PKCS11Module, token: LocatedToken, session: Session) {
        self.module = module
        self.token = token
        self.session = session
    }

    /// Loads the module, finds the token, opens a session and (optionally) logs in.
    public static func open(_ target: TokenTarget, readWrite: Bool, logIn: Bool, console: Console) throws -> OpenedToken {
        let selector = try target.requireToken()
        let module = try PKCS11Module.load(target.module)
        let token = try TokenLocator.locate(selector, in: module)
        let session = try token.slot.openSession(readWrite: readWrite)
        if logIn {
            try TokenLogin.logIn(session, source: target.pinSource, prompter: console.pinPrompter,
                                 warn: console.diagnostic)
        }
        return OpenedToken(module: module, token: token, session: session)
    }
}
