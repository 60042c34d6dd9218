import FireblocksHSM
import PKCS11
import TokenKeys

/// Environment variables the token options fall back to.
enum TokenEnvironment {
    static let module = "FIREBLOCKS_HSM_MODULE"
    static let token = "FIREBLOCKS_HSM_TOKEN"
    static let pinSource = "FIREBLOCKS_HSM_PIN_SOURCE"
}

/// Resolves the module, token, key and PIN source from flags, URIs, the environment and the profile.
///
/// Precedence: a flag, then what a `pkcs11:` URI says (its module-path/module-name and
/// pin-source), then the environment, then the profile, then the default (p11-kit's proxy; a
/// PIN prompt).
enum TokenTargetResolution {
    /// Resolves the raw option values; `profile` fills what neither flags nor the environment set.
    static func resolve(
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
            throw CommandLineError(
                "a pkcs11: URI with pin-value puts the PIN in the process list and shell history; use pin-source=env:NAME or pin-source=file:PATH instead")
        }
        // A key URI that names its token (pkcs11:token=fb;object=k) selects the token too.
        if token == nil, let keyURI = key?.uri, keyURI.identifiesToken {
            token = .uri(keyURI)
        }

        let module = try self.module(flag: moduleFlag, uris: uris, environment: environment, profile: profile)

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

    /// The module: `--module`, else a URI's module-path/module-name (a contradiction is an
    /// error), else `FIREBLOCKS_HSM_MODULE`, else the profile's, else p11-kit's proxy. The one
    /// place this order is decided.
    static func module(flag: String?, uris: [PKCS11URI] = [], environment: [String: String],
                       profile: Profile? = nil) throws -> ModuleLocation {
        let explicit = flag.map(ModuleLocation.init(argument:))
        let module = try ModuleResolution.resolve(explicit: explicit, uris: uris)
        if explicit == nil, module == .p11KitProxy,
           let fallback = nonEmpty(environment[TokenEnvironment.module]) ?? profile?.module {
            return ModuleLocation(argument: fallback)
        }
        return module
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}
