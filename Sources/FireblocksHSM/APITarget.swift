import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Where and as whom API requests go, and how. Built by the caller (the command line resolves
/// it from flags, environment and profile).
public struct APITarget: Sendable {
    /// The base URL.
    public let baseURL: APIBaseURL
    /// The API key.
    public let apiKey: String
    /// The options.
    public let options: ClientOptions
    /// The JWT lifetime.
    public let jwtLifetime: Int
    /// Where idempotency records (and onboarding records and locks) are kept.
    public let stateDirectory: URL
    /// Where the token's audit log is kept; every API call is recorded there. Nil: not recorded.
    public let auditDirectory: URL?
    /// What the requests go through (AsyncHTTPClientTransport, from the AsyncHTTPTransport
    /// target, in the tool): chosen by the executable, so one that only signs carries no HTTP
    /// stack.
    public let transport: any HTTPTransport

    /// A target; with `auditDirectory`, every call is recorded in the token's audit trail.
    public init(baseURL: APIBaseURL, apiKey: String, options: ClientOptions, jwtLifetime: Int, stateDirectory: URL,
                auditDirectory: URL? = nil, transport: any HTTPTransport) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.options = options
        self.jwtLifetime = jwtLifetime
        self.stateDirectory = stateDirectory
        self.auditDirectory = auditDirectory
        self.transport = transport
    }

    /// The idempotency record file.
    public var idempotencyStore: IdempotencyStore {
        IdempotencyStore(fileURL: stateDirectory.appendingPathComponent("idempotency.json"))
    }
}
