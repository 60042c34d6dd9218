import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Environment variables the API options fall back to.
enum APIEnvironment {
    static let apiKey = "FIREBLOCKS_HSM_API_KEY"
    static let env = "FIREBLOCKS_HSM_ENV"
    static let baseURL = "FIREBLOCKS_HSM_BASE_URL"
    static let stateDirectory = "FIREBLOCKS_HSM_STATE_DIR"
}

/// Resolves where and as whom API requests go from flags, the environment and the profile.
enum APITargetResolution {
    /// - Parameters:
    ///   - env: `sandbox`, `us`, `eu` or `eu2`; exclusive with `baseURL`. There is no default: a
    ///     tool that holds production keys should not pick an environment by itself.
    static func resolve(
        apiKey apiKeyFlag: String?, env envFlag: String?, baseURL baseURLFlag: String?,
        timeout: TimeInterval, jwtLifetime: Int, compensateClockSkew: Bool, maximumAttempts: Int,
        stateDirectory stateDirectoryFlag: String?, auditDirectory: URL?, transport: any HTTPTransport,
        environment: [String: String], profile: Profile?
    ) throws -> APITarget {
        guard let baseURL = try baseURL(env: envFlag, baseURL: baseURLFlag, environment: environment, profile: profile) else {
            throw CommandLineError("no API environment: pass --env sandbox|us|eu|eu2 or --base-url URL (or set \(APIEnvironment.env))")
        }
        let apiKey = try apiKey(flag: apiKeyFlag, environment: environment, profile: profile)
        guard timeout > 0, timeout <= 600 else {
            throw CommandLineError("--request-timeout must be 1 to 600 seconds")
        }
        guard (1...10).contains(maximumAttempts) else {
            throw CommandLineError("--attempts must be 1 to 10")
        }
        let options = ClientOptions(timeout: timeout, retryPolicy: RetryPolicy(maximumAttempts: maximumAttempts),
                                    compensateClockSkew: compensateClockSkew,
                                    userAgent: "fireblocks-hsm/\(FireblocksHSMVersion.current)")
        return APITarget(baseURL: baseURL, apiKey: apiKey, options: options, jwtLifetime: jwtLifetime,
                         stateDirectory: stateDirectoryURL(flag: stateDirectoryFlag, environment: environment),
                         auditDirectory: auditDirectory, transport: transport)
    }

    /// What signing a JWT needs: the API key and lifetime, and the base URL only when one is
    /// given (the `uri` claim names no host).
    static func resolveForSigning(
        apiKey apiKeyFlag: String?, env envFlag: String?, baseURL baseURLFlag: String?, jwtLifetime: Int,
        environment: [String: String], profile: Profile?
    ) throws -> (apiKey: String, baseURL: APIBaseURL?, jwtLifetime: Int) {
        let baseURL = try baseURL(env: envFlag, baseURL: baseURLFlag, environment: environment, profile: profile)
        return (try apiKey(flag: apiKeyFlag, environment: environment, profile: profile), baseURL, jwtLifetime)
    }

    /// The base URL: `--base-url`, `--env`, their environment variables, the profile, in that
    /// order; nil when none is given.
    private static func baseURL(env envFlag: String?, baseURL baseURLFlag: String?, environment: [String: String],
                                profile: Profile?) throws -> APIBaseURL? {
        guard envFlag == nil || baseURLFlag == nil else {
            throw CommandLineError("'--env' and '--base-url' are mutually exclusive")
        }
        if let text = baseURLFlag { return try APIBaseURL(validating: text) }
        if let name = envFlag { return try environmentURL(name) }
        if let text = nonEmpty(environment[APIEnvironment.baseURL]) { return try APIBaseURL(validating: text) }
        if let name = nonEmpty(environment[APIEnvironment.env]) { return try environmentURL(name) }
        if let text = profile?.baseURL { return try APIBaseURL(validating: text) }
        if let name = profile?.env { return try environmentURL(name) }
        return nil
    }

    private static func apiKey(flag: String?, environment: [String: String], profile: Profile?) throws -> String {
        guard let apiKey = flag ?? nonEmpty(environment[APIEnvironment.apiKey]) ?? profile?.apiKey else {
            throw CommandLineError("no API key: pass --api-key (the API user's id) or set \(APIEnvironment.apiKey)")
        }
        return apiKey
    }

    /// `--state-dir`, `$FIREBLOCKS_HSM_STATE_DIR`, `$XDG_STATE_HOME/fireblocks-hsm`, `~/.local/state/fireblocks-hsm`.
    static func stateDirectoryURL(flag: String?, environment: [String: String]) -> URL {
        if let flag { return URL(fileURLWithPath: flag) }
        if let explicit = nonEmpty(environment[APIEnvironment.stateDirectory]) { return URL(fileURLWithPath: explicit) }
        let base = nonEmpty(environment["XDG_STATE_HOME"]) ?? (environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path) + "/.local/state"
        return URL(fileURLWithPath: base).appendingPathComponent("fireblocks-hsm")
    }


    private static func environmentURL(_ name: String) throws -> APIBaseURL {
        guard let environment = FireblocksEnvironment(rawValue: name.lowercased()) else {
            throw CommandLineError("--env '\(name)' is not one of \(FireblocksEnvironment.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return environment.baseURL
    }

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }
}
