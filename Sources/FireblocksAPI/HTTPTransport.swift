#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One HTTP exchange, no retries: what ``FireblocksClient`` sends through. The implementation
/// over AsyncHTTPClient is `AsyncHTTPClientTransport`, in the `AsyncHTTPTransport` target: this
/// module stays free of SwiftNIO, so an executable that only signs does not carry it.
public protocol HTTPTransport: Sendable {
    /// Sends and returns the answer; throws ``APIClientError`` (`network`, `timeout`,
    /// `invalidResponse`) when there is none.
    func send(url: URL, method: String, headers: [String: String], body: [UInt8]?, timeout: TimeInterval) async throws -> APIResponse
}
