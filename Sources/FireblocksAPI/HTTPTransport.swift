import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP exchange, no retries: what ``FireblocksClient`` sends through.
public protocol HTTPTransport: Sendable {
    /// Sends and returns the answer; throws ``APIClientError`` (`network`, `timeout`,
    /// `invalidResponse`) when there is none.
    func send(url: URL, method: String, headers: [String: String], body: [UInt8]?, timeout: TimeInterval) async throws -> APIResponse
}

/// `HTTPTransport` over Foundation's URLSession: ephemeral (no cookies, no cache), and redirects
/// are not followed (they would carry the bearer token to wherever they point).
public final class URLSessionTransport: HTTPTransport {
    private let session: URLSession

    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.urlCache = nil
        configuration.httpShouldSetCookies = false
        configuration.requestCachePolicy = .reloadIgnoringLocalAndRemoteCacheData
        session = URLSession(configuration: configuration, delegate: RedirectRefusal(), delegateQueue: nil)
    }

    deinit {
        session.finishTasksAndInvalidate()
    }

    public func send(url: URL, method: String, headers: [String: String], body: [UInt8]?, timeout: TimeInterval) async throws -> APIResponse {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalAndRemoteCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body { request.httpBody = Data(body) }

        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await exchange(request, timeout: timeout)
        } catch let error as URLError {
            switch error.code {
            case .timedOut:
                throw APIClientError(.timeout, "no answer from \(url.host ?? "?") within \(Int(timeout)) s")
            case .networkConnectionLost, .cannotConnectToHost, .notConnectedToInternet, .cannotFindHost,
                 .dnsLookupFailed, .secureConnectionFailed, .badServerResponse, .resourceUnavailable:
                throw APIClientError(.network, "\(url.host ?? "?"): \(Self.describe(error))")
            default:
                throw APIClientError(.network, "\(url.host ?? "?"): \(Self.describe(error))")
            }
        }
        guard let http = response as? HTTPURLResponse else {
            throw APIClientError(.invalidResponse, "\(url.host ?? "?") did not answer with HTTP")
        }
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { fields[name] = value }
        }
        if (300...399).contains(http.statusCode) {
            throw APIClientError(.invalidResponse, "\(url.host ?? "?") answered HTTP \(http.statusCode) (a redirect to \(fields["Location"] ?? fields["location"] ?? "?")); redirects are not followed, check --base-url")
        }
        return APIResponse(status: http.statusCode, headers: fields, body: Array(data))
    }

    /// The exchange, with the deadline enforced here: FoundationNetworking on Linux does not honour
    /// `URLRequest.timeoutInterval` for an answer that never comes.
    private func exchange(_ request: URLRequest, timeout: TimeInterval) async throws -> (Data, URLResponse) {
        let session = self.session
        return try await withThrowingTaskGroup(of: (Data, URLResponse).self) { group in
            group.addTask { try await session.data(for: request) }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
                throw URLError(.timedOut)
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw URLError(.unknown) }
            return first
        }
    }

    private static func describe(_ error: URLError) -> String {
        switch error.code {
        case .networkConnectionLost: return "the connection was dropped before an answer"
        case .cannotConnectToHost: return "connection refused"
        case .cannotFindHost, .dnsLookupFailed: return "the host name does not resolve"
        case .notConnectedToInternet: return "no network"
        case .secureConnectionFailed: return "TLS failed"
        case .badServerResponse: return "the answer was not valid HTTP (connection closed?)"
        default: return error.localizedDescription
        }
    }
}

/// Declines every redirect.
private final class RedirectRefusal: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}
