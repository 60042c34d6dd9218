import AsyncHTTPClient
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NIOPosix

/// `HTTPTransport` over AsyncHTTPClient (SwiftNIO): one pooled client per process, a real
/// deadline per exchange (connect, send and the whole answer), no cookies, no caching, and
/// redirects never followed (they would carry the bearer token to wherever they point).
public struct AsyncHTTPClientTransport: HTTPTransport {
    /// The largest answer read; an API answer is far smaller. More is an invalid response.
    public static let maximumResponseSize = 64 << 20

    /// The process's client. It lives as long as the process (AsyncHTTPClient requires a client
    /// to be shut down before it is released; a process-wide one never is), and its connection
    /// pool is shared by every request.
    static let client: HTTPClient = {
        // A connection that cannot be made fails this attempt at once; FireblocksClient's retry
        // policy decides about another (--attempts, with backoff). AsyncHTTPClient's own retry
        // would try again until its 10-second connect timeout, inside every attempt: a wrong
        // --base-url port then took 40 s to say "connection refused". The whole answer is
        // bounded per exchange (``send(url:method:headers:body:timeout:)``).
        HTTPClient(eventLoopGroupProvider: .singleton,
                   configuration: clientConfiguration(connectTimeout: .seconds(10), readTimeout: nil, retryConnectionEstablishment: false))
    }()

    /// The one AsyncHTTPClient configuration of this project (the command line's transport and
    /// the signing proxy's upstream): redirects never followed (they would carry the bearer
    /// token), no decompression, HTTP/2 when offered, a connect deadline, and a deadline for
    /// every silence while an answer comes (`readTimeout`; nil: the caller bounds the whole
    /// answer instead).
    public static func clientConfiguration(connectTimeout: TimeAmount, readTimeout: TimeAmount?,
                                           retryConnectionEstablishment: Bool) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, decompression: .disabled)
        configuration.httpVersion = .automatic
        configuration.timeout = .init(connect: connectTimeout, read: readTimeout)
        configuration.connectionPool.retryConnectionEstablishment = retryConnectionEstablishment
        return configuration
    }

    /// Creates one.
    public init() {}

    /// One exchange within `timeout` seconds (connect, send and the whole answer).
    public func send(url: URL, method: String, headers: [String: String], body: [UInt8]?, timeout: TimeInterval) async throws -> APIResponse {
        // host:port, so that "connection refused" says which port (a stand-in on another one).
        let host = Self.hostAndPort(url)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }

        let milliseconds = Int64(max(1, min(timeout, 3600)) * 1000)
        let deadline = NIODeadline.now() + .milliseconds(milliseconds)
        do {
            let response = try await Self.client.execute(request, deadline: deadline)
            // AsyncHTTPClient's deadline covers the answer's head; the body gets what is left of
            // it too, so a server that sends a head and then trickles cannot hold the command.
            let bytes = try await Self.collect(response.body, upTo: Self.maximumResponseSize, by: deadline)
            var fields: [String: String] = [:]
            for (name, value) in response.headers { fields[name] = fields[name].map { $0 + ", " + value } ?? value }
            let status = Int(response.status.code)
            if (300...399).contains(status) {
                let location = fields.first { $0.key.lowercased() == "location" }?.value ?? "?"
                throw APIClientError(.invalidResponse, "\(host) answered HTTP \(status) (a redirect to \(location)); redirects are not followed: check the base URL")
            }
            return APIResponse(status: status, headers: fields, body: Array(buffer: bytes))
        } catch let error as APIClientError {
            throw error
        } catch let error as HTTPClientError {
            switch error {
            case .connectTimeout:
                throw APIClientError(.timeout, "no connection to \(host) within the connect timeout", notSent: true)
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                throw APIClientError(.timeout, "no answer from \(host) within \(Int(timeout.rounded())) s")
            case .remoteConnectionClosed:
                throw APIClientError(.network, "\(host): the connection was closed before an answer")
            default:
                throw APIClientError(.network, "\(host): \(error)")
            }
        } catch is NIOTooManyBytesError {
            throw APIClientError(.invalidResponse, "\(host) answered with more than \(Self.maximumResponseSize >> 20) MiB")
        } catch let error as IOError {
            // No connection was made: nothing of the request left this host.
            let notSent = [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH].contains(error.errnoCode)
            throw APIClientError(.network, "\(host): \(Self.describe(error))", notSent: notSent)
        } catch {
            throw APIClientError(.network, "\(host): \(error)")
        }
    }

    /// The whole body by `deadline`, or `HTTPClientError.deadlineExceeded` (the reading is
    /// cancelled, which closes the connection).
    public static func collect(_ body: HTTPClientResponse.Body, upTo limit: Int, by deadline: NIODeadline) async throws -> ByteBuffer {
        try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { try await body.collect(upTo: limit) }
            group.addTask {
                let now = NIODeadline.now()
                if deadline > now { try await Task.sleep(nanoseconds: UInt64((deadline - now).nanoseconds)) }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let bytes = first else { throw HTTPClientError.deadlineExceeded }
            return bytes
        }
    }

    /// `host[:port]` of `url` as messages name it (the port when the URL gives one).
    public static func hostAndPort(_ url: URL) -> String {
        let host = url.host ?? "?"
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return bracketed + (url.port.map { ":\($0)" } ?? "")
    }

    /// One readable line for a failed exchange with `host` (`host:port`): what the proxy says
    /// in its 502 and 504, instead of the client library's dump of its error value.
    public static func describe(_ error: any Error, host: String) -> String {
        switch error {
        case let error as HTTPClientError:
            switch error {
            case .connectTimeout: return "\(host): no connection within the connect timeout"
            case .deadlineExceeded, .readTimeout: return "\(host): no answer in time"
            case .writeTimeout: return "\(host): the request could not be sent in time"
            case .remoteConnectionClosed: return "\(host): the connection was closed before an answer"
            case .cancelled: return "\(host): the request was cancelled"
            default: return "\(host): \(error.shortDescription)"
            }
        case let error as IOError:
            return "\(host): \(describe(error))"
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first {
                return describe(first.error, host: host)
            }
            return "\(host): the name could not be resolved"
        case is NIOTooManyBytesError:
            return "\(host): the answer is larger than allowed"
        default:
            return "\(host): \(String(describing: error).prefix(200))"
        }
    }

    private static func describe(_ error: IOError) -> String {
        switch error.errnoCode {
        case ECONNREFUSED: return "connection refused"
        case ECONNRESET: return "the connection was reset"
        case ENETUNREACH, EHOSTUNREACH: return "no route to the host"
        default: return error.description
        }
    }
}
