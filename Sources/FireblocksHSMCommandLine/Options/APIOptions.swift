import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The options of every command that calls the Fireblocks API.
package struct APIOptions: ParsableArguments {
    package init() {}

    @Option(name: .customLong("api-key"), help: ArgumentHelp("The signing API user's API key (its id; env \(APIEnvironment.apiKey)).", valueName: "uuid"))
    var apiKey: String?

    @Option(help: ArgumentHelp("API environment: sandbox, us, eu or eu2 (env \(APIEnvironment.env)). No default.", valueName: "name"))
    var env: String?

    @Option(name: .customLong("base-url"), help: ArgumentHelp("API base URL instead of --env, e.g. http://127.0.0.1:8088/v1 for the offline stand-in (https required, except to loopback; env \(APIEnvironment.baseURL)).", valueName: "url"))
    var baseURL: String?

    @Option(name: .customLong("request-timeout"), help: ArgumentHelp("Seconds to wait for each answer.", valueName: "seconds"))
    package var timeout: Double = 30

    @Option(help: ArgumentHelp("Sends in total for a request that is safe to repeat (GET, or with an Idempotency-Key), 1 to 10.", valueName: "n"))
    var attempts: Int = 4

    @Option(name: .customLong("jwt-lifetime"), help: ArgumentHelp("exp - iat of each JWT, 1 to 55 seconds.", valueName: "seconds"))
    var jwtLifetime: Int = 55

    @Flag(name: .customLong("no-clock-skew-compensation"), help: "Do not shift iat/exp by the clock offset measured from the API's Date header.")
    package var noClockSkewCompensation = false

    @Option(name: .customLong("state-dir"), help: ArgumentHelp("Where idempotency records and onboarding progress are kept (env \(APIEnvironment.stateDirectory); default $XDG_STATE_HOME/fireblocks-hsm).", valueName: "path"))
    var stateDirectory: String?

    /// The flags' own values, checked where they are parsed: by `fireblocks-hsm`, before a
    /// network command is handed over (values from the environment or a profile are checked
    /// when they are resolved).
    package func validate() throws {
        if env != nil, baseURL != nil { throw ValidationError("'--env' and '--base-url' are mutually exclusive") }
        if let env, FireblocksEnvironment(rawValue: env.lowercased()) == nil {
            throw ValidationError("--env '\(env)' is not one of \(FireblocksEnvironment.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let baseURL {
            do { _ = try APIBaseURL(validating: baseURL) } catch { throw ValidationError("--base-url: \(error.reason)") }
        }
        guard timeout.isFinite, timeout > 0, timeout <= 600 else { throw ValidationError("--request-timeout must be 1 to 600 seconds") }
        guard (1...10).contains(attempts) else { throw ValidationError("--attempts must be 1 to 10") }
        guard (1...55).contains(jwtLifetime) else { throw ValidationError("--jwt-lifetime must be 1 to 55 seconds") }
    }

    /// What `jwt` needs: the API key, and a base URL only when one is given.
    func signingTarget(profile: Profile?) throws -> (apiKey: String, baseURL: APIBaseURL?, jwtLifetime: Int) {
        try APITargetResolution.resolveForSigning(apiKey: apiKey, env: env, baseURL: baseURL, jwtLifetime: jwtLifetime,
                                        environment: ProcessInfo.processInfo.environment, profile: profile)
    }

    /// Where and as whom API requests go; `transport` is the ``Network``'s, given to a
    /// ``NetworkCommand``.
    package func target(profile: Profile?, auditDirectory: URL?, transport: any HTTPTransport) throws -> APITarget {
        try APITargetResolution.resolve(apiKey: apiKey, env: env, baseURL: baseURL, timeout: timeout, jwtLifetime: jwtLifetime,
                              compensateClockSkew: !noClockSkewCompensation, maximumAttempts: attempts,
                              stateDirectory: stateDirectory, auditDirectory: auditDirectory, transport: transport,
                              environment: ProcessInfo.processInfo.environment, profile: profile)
    }
}

/// `--data` / `--body-file`: the exact bytes to send.
enum RequestBody {
    /// `@path` reads a file; anything else is the body itself.
    static func read(data: String?) throws -> [UInt8]? {
        guard let data else { return nil }
        if data.hasPrefix("@") {
            return try readFile(String(data.dropFirst()))
        }
        return Array(data.utf8)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw CommandLineError("cannot read the body file \(path)")
        }
        return Array(contents)
    }
}
