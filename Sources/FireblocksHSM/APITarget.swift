import FireblocksAPI
import Foundation

/// Where and as whom API requests go, and how. Built by the caller (the command line resolves
/// it from flags, environment and profile).
public struct APITarget: Sendable {
    public let baseURL: APIBaseURL
    public let apiKey: String
    public let options: ClientOptions
    public let jwtLifetime: Int
    /// Where idempotency records (and onboarding records and locks) are kept.
    public let stateDirectory: URL

    public init(baseURL: APIBaseURL, apiKey: String, options: ClientOptions, jwtLifetime: Int, stateDirectory: URL) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.options = options
        self.jwtLifetime = jwtLifetime
        self.stateDirectory = stateDirectory
    }

    /// The idempotency record file.
    public var idempotencyStore: IdempotencyStore {
        IdempotencyStore(fileURL: stateDirectory.appendingPathComponent("idempotency.json"))
    }
}
