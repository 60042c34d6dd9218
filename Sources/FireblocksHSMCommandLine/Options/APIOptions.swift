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

    /// What `jwt` needs: the API key, and a base URL only when one is given.
    func signingTarget(profile: Profile?) throws -> (apiKey: String, baseURL: APIBaseURL?, jwtLifetime: Int) {
        try APITargetResolution.resolveForSigning(apiKey: apiKey, env: env, baseURL: baseURL, jwtLifetime: jwtLifetime,
                                        environment: ProcessInfo.processInfo.environment, profile: profile)
    }

    /// Where and as whom API requests go; `transport` is ``NetworkAccess/transport()``, taken
    /// first thing by the command.
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
            throw APIClientError(.badInput, "cannot read the body file \(path)")
        }
        return Array(contents)
    }
}
