import AsyncHTTPTransport
import FireblocksAPI
import Foundation
import SoftHSMTestSupport
import Testing

/// `AsyncHTTPClientTransport` against real loopback servers that misbehave on purpose: what goes
/// out, what comes back, and that every way a server can fail becomes an `APIClientError` of the
/// right kind within the exchange's deadline.
@Suite("AsyncHTTPClientTransport")
struct AsyncHTTPTransportTests {
    let transport = AsyncHTTPClientTransport()

    private func url(_ server: ScriptedServer, _ path: String = "/v1/thing") -> URL {
        URL(string: "http://127.0.0.1:\(server.port)\(path)")!
    }

    /// The APIClientError `work` throws (and records an issue when it throws none or another).
    private func clientError(_ work: () async throws -> APIResponse) async -> APIClientError? {
        do {
            let response = try await work()
            Issue.record("expected an error, got HTTP \(response.status)")
        } catch let error as APIClientError {
            return error
        } catch {
            Issue.record("expected an APIClientError, got \(type(of: error)): \(error)")
        }
        return nil
    }

    @Test func anExchangeCarriesTheRequestAndTheWholeAnswer() async throws {
        let body = #"{"id":"u-1","name":"bot"}"#
        let server = try ScriptedServer { _, connection in
            connection.write("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Request-ID: req-1\r\nX-Multi: a\r\nX-Multi: b\r\n"
                             + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
        }
        defer { server.stop() }
        let sent = Array(#"{"role":"SIGNER"}"#.utf8)
        let response = try await transport.send(url: url(server, "/v1/management/api_users?x=1"), method: "POST",
                                                headers: ["Authorization": "Bearer abc", "Content-Type": "application/json",
                                                          "Idempotency-Key": "k-1"],
                                                body: sent, timeout: 10)
        #expect(response.status == 201)
        #expect(response.requestID == "req-1")
        #expect(response.headers["x-multi"] == "a, b", "repeated fields are joined, none lost")
        #expect(response.body == Array(body.utf8))

        let request = try #require(server.requests.first)
        #expect(server.requests.count == 1)
        #expect(request.method == "POST")
        #expect(request.target == "/v1/management/api_users?x=1")
        #expect(request.headers["authorization"] == "Bearer abc")
        #expect(request.headers["idempotency-key"] == "k-1")
        #expect(request.body == sent)
        #expect(request.headers["cookie"] == nil && request.headers["accept-encoding"] == nil, "no cookies, no decompression asked for")
    }

    /// A redirect would carry the bearer token to wherever it points: never followed, said.
    @Test(arguments: [301, 302, 307, 308])
    func aRedirectIsNotFollowed(status: Int) async throws {
        let server = try ScriptedServer { request, connection in
            if request.target == "/elsewhere" {
                connection.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            } else {
                connection.write("HTTP/1.1 \(status) Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
            }
        }
        defer { server.stop() }
        let error = await clientError {
            try await transport.send(url: url(server), method: "GET", headers: ["Authorization": "Bearer abc"], body: nil, timeout: 10)
        }
        #expect(error?.code == .invalidResponse)
        #expect(error?.reason.contains("redirects are not followed") == true && error?.reason.contains("/elsewhere") == true,
                "\(String(describing: error))")
        #expect(server.requests.map(\.target) == ["/v1/thing"], "the redirect was followed")
    }

    @Test func aServerThatNeverAnswersIsCutOffAtTheDeadline() async throws {
        let server = try ScriptedServer { _, connection in connection.holdUntilTheClientLeaves() }
        defer { server.stop() }
        let started = ContinuousClock.now
        let error = await clientError {
            try await transport.send(url: url(server), method: "GET", headers: [:], body: nil, timeout: 1)
        }
        let took = started.duration(to: .now)
        #expect(error?.code == .timeout)
        #expect(error?.reason.contains("within 1 s") == true, "\(String(describing: error))")
        #expect(error?.notSent == false, "the request was sent: its outcome is unknown")
        // Not before the deadline. No upper bound on the clock: with the whole suite at once on
        // two cores this task may resume long after; the server holds for 10 minutes, so only
        // the deadline ends the exchange with a timeout.
        #expect(took >= .milliseconds(900), "\(took)")
    }

    /// A head on time and then a body one byte at a time: the deadline covers the whole answer.
    @Test(arguments: [false, true])
    func aBodyThatTricklesIsCutOffAtTheDeadline(chunked: Bool) async throws {
        let server = try ScriptedServer { _, connection in
            let framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: 100000"
            connection.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\(framing)\r\n\r\n")
            connection.trickle(every: 0.1, chunked: chunked)
        }
        defer { server.stop() }
        let error = await clientError {
            try await transport.send(url: url(server), method: "GET", headers: [:], body: nil, timeout: 1)
        }
        // The body trickles for 10 minutes: only the exchange's deadline ends it with a timeout.
        #expect(error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.reason.contains("within 1 s") == true, "\(String(describing: error))")
    }

    @Test func anAnswerOverTheLimitIsRefused() async throws {
        let server = try ScriptedServer { _, connection in
            connection.write("HTTP/1.1 200 OK\r\nContent-Length: \(AsyncHTTPClientTransport.maximumResponseSize + 1)\r\n\r\n")
            let megabyte = [UInt8](repeating: 0x20, count: 1 << 20)
            for _ in 0...(AsyncHTTPClientTransport.maximumResponseSize >> 20) where connection.write(megabyte) {}
        }
        defer { server.stop() }
        let error = await clientError {
            try await transport.send(url: url(server), method: "GET", headers: [:], body: nil, timeout: 30)
        }
        #expect(error?.code == .invalidResponse)
        #expect(error?.reason.contains("more than 64 MiB") == true, "\(String(describing: error))")
    }

    /// Nothing listening: said at once, and known not to have been sent (a retry is safe).
    @Test func aRefusedConnectionIsANetworkErrorOfARequestNeverSent() async throws {
        let port = try LoopbackPort.closed()
        let error = await clientError {
            try await transport.send(url: URL(string: "http://127.0.0.1:\(port)/v1/thing")!, method: "POST", headers: [:],
                                     body: Array("{}".utf8), timeout: 30)
        }
        #expect(error?.code == .network)
        #expect(error?.notSent == true)
        // Refused, not a connect timeout: AsyncHTTPClient's own retries until its 10 s connect
        // timeout are off (FireblocksClient's retry policy decides about another attempt).
        #expect(error?.reason.contains("connection refused") == true, "\(String(describing: error))")
        // Which port: a stand-in or proxy on another one is the usual cause.
        #expect(error?.reason.contains("127.0.0.1:\(port): connection refused") == true, "\(String(describing: error))")
    }

    /// The server read the request and hung up: the request may have been acted on.
    @Test func aConnectionClosedWithoutAnAnswerIsANetworkErrorOfARequestSent() async throws {
        let server = try ScriptedServer { _, _ in }
        defer { server.stop() }
        let error = await clientError {
            try await transport.send(url: url(server), method: "POST", headers: [:], body: Array("{}".utf8), timeout: 10)
        }
        #expect(error?.code == .network, "\(String(describing: error))")
        #expect(error?.notSent == false)
        #expect(server.requests.count == 1)
    }
}
