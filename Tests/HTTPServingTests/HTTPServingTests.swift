import Foundation
import HTTPServing
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ProxySettings
import SoftHSMTestSupport
import Synchronization
import Testing

/// What a server with the policy logged.
final class PolicyLog: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }

    /// Whether a line containing `text` is logged within `seconds` (checked every 10 ms).
    func shows(_ text: String, within seconds: Int = 30) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !all.contains(where: { $0.contains(text) }) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}

/// A Hummingbird server on a loopback port with the connection policy in every connection's
/// pipeline, as both of the project's servers have it.
final class PolicyServer: Sendable {
    let port: Int
    let log: PolicyLog
    private let running: Task<Void, any Error>

    private init(port: Int, log: PolicyLog, running: Task<Void, any Error>) {
        self.port = port
        self.log = log
        self.running = running
    }

    static func start(maximum: Int = 64, deadline: TimeAmount = .seconds(30),
                      headDeadline: TimeAmount = ConnectionPolicy.defaultHeadDeadline) async throws -> PolicyServer {
        let router = Router()
        router.get("hello") { _, _ in "hello" }
        router.post("echo") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            return Response(status: .ok, body: ResponseBody(byteBuffer: body))
        }
        router.get("refused") { _, _ -> Response in
            Response(status: .unauthorized, headers: [ConnectionPolicy.closeAfterAnswer: "1"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: "who are you")))
        }
        router.get("dated") { _, _ -> Response in
            Response(status: .ok, headers: [ConnectionPolicy.originalDate: "Mon, 01 Jan 2024 00:00:00 GMT"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: "then")))
        }
        let log = PolicyLog()
        let connections = ConnectionPolicy.Count(maximum: maximum)
        var logger = Logger(label: "http-serving-tests")
        logger.logLevel = .critical
        let bound = BoundAddress()
        let application = Application(
            responder: router.buildResponder(),
            server: .http1(configuration: HTTP1Channel.Configuration(additionalChannelHandlers: [
                ConnectionPolicy(connections: connections, deadline: deadline, headDeadline: headDeadline, log: { log.append($0) }),
            ])),
            configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in bound.set(channel.localAddress) },
            logger: logger)
        let running = bound.run { try await application.runService() }
        switch await bound.wait() {
        case .success(let address):
            return PolicyServer(port: try #require(address.port), log: log, running: running)
        case .failure(let failure):
            running.cancel()
            throw failure
        }
    }

    func stop() { running.cancel() }
}

@Suite("HTTPServing: the connection policy")
struct ConnectionPolicyTests {
    private static let hello = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

    /// At the cap the listener stops accepting: a new connection waits in the kernel's backlog,
    /// unanswered but not refused, and is served as soon as a place frees.
    @Test func atTheCapNewConnectionsWaitInTheBacklogAndAreServedWhenAPlaceFrees() async throws {
        let server = try await PolicyServer.start(maximum: 2)
        defer { server.stop() }
        var held: [RawConnection] = try (0..<2).map { _ in try RawConnection(port: server.port) }
        #expect(await server.log.shows("the connection cap is reached"), "\(server.log.all)")
        let waiting = try RawConnection(port: server.port)
        waiting.send(Self.hello)
        #expect(await !waiting.answered(within: 300), "answered beyond the cap")
        #expect(await !waiting.closedByPeer(within: 100), "refused instead of held in the backlog")
        held.removeFirst()
        #expect(await waiting.answered(within: 30_000), "not served once a place freed")
        #expect(await waiting.received(within: 30_000).hasPrefix("HTTP/1.1 200"))
        _ = held
    }

    /// A connection whose request head does not come in time is closed (an idle or trickling
    /// client holds a place others need); a client that sends its request is served.
    @Test func aConnectionWithoutARequestHeadInTimeIsClosed() async throws {
        let server = try await PolicyServer.start(headDeadline: .milliseconds(300))
        defer { server.stop() }
        let started = ContinuousClock.now
        let silent = try RawConnection(port: server.port)
        let halfHead = try RawConnection(port: server.port)
        halfHead.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        #expect(await silent.closed(within: 30_000))
        #expect(await halfHead.closed(within: 30_000))
        #expect(started.duration(to: .now) >= .milliseconds(250), "closed before its deadline")

        let prompt = try RawConnection(port: server.port)
        prompt.send(Self.hello)
        #expect(await prompt.received(within: 30_000).hasPrefix("HTTP/1.1 200"))
    }

    /// A head on time does not buy unlimited time for the body: the whole request has its deadline.
    @Test func aRequestWhoseBodyDoesNotEndInTimeIsClosed() async throws {
        let server = try await PolicyServer.start(deadline: .milliseconds(500))
        defer { server.stop() }
        let slow = try RawConnection(port: server.port)
        slow.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n1")
        #expect(await slow.closed(within: 30_000), "a request without its end still holds its connection")

        let whole = try RawConnection(port: server.port)
        whole.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        let answer = await whole.received(within: 30_000)
        #expect(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix("0123456789"), "\(answer)")
    }

    /// An answer marked for it closes its connection once written (a caller that did not
    /// authenticate keeps no place); the marker itself never leaves the server.
    @Test func anAnswerMarkedToCloseClosesItsConnection() async throws {
        let server = try await PolicyServer.start()
        defer { server.stop() }
        let connection = try RawConnection(port: server.port)
        connection.send("GET /refused HTTP/1.1\r\nHost: x\r\n\r\n")
        let answer = await connection.received(within: 30_000)
        #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
        #expect(answer.lowercased().contains("connection: close"), "\(answer)")
        #expect(!answer.lowercased().contains(ConnectionPolicy.closeAfterAnswer.canonicalName), "\(answer)")
        #expect(await connection.closed(within: 5000))

        // An ordinary answer keeps the connection for the next request.
        let kept = try RawConnection(port: server.port)
        kept.send(Self.hello)
        #expect(await kept.received(within: 30_000).hasPrefix("HTTP/1.1 200"))
        kept.send(Self.hello)
        #expect(await kept.received(within: 30_000).hasPrefix("HTTP/1.1 200"))
    }

    /// The relayed `Date` replaces the one the server stamps.
    @Test func theRelayedDateIsPutBack() async throws {
        let server = try await PolicyServer.start()
        defer { server.stop() }
        let connection = try RawConnection(port: server.port)
        connection.send("GET /dated HTTP/1.1\r\nHost: x\r\n\r\n")
        let answer = await connection.received(within: 30_000)
        let dates = answer.components(separatedBy: "\r\n").filter { $0.lowercased().hasPrefix("date:") }
        #expect(dates == ["date: Mon, 01 Jan 2024 00:00:00 GMT"] || dates == ["Date: Mon, 01 Jan 2024 00:00:00 GMT"], "\(answer)")
        #expect(!answer.lowercased().contains(ConnectionPolicy.originalDate.canonicalName), "\(answer)")
    }
}

@Suite("HTTPServing: what a server may bind")
struct LoopbackAddressTests {
    @Test(arguments: [("127.0.0.1", "127.0.0.1"), ("127.1.2.3", "127.1.2.3"), ("127.255.255.255", "127.255.255.255"),
                      ("::1", "::1"), ("[::1]", "::1"), ("0:0:0:0:0:0:0:1", "::1"), ("localhost", "127.0.0.1")])
    func loopbackLiteralsAreBound(host: String, bound: String) {
        #expect(LoopbackAddress.bindHost(host) == bound)
    }

    @Test(arguments: ["0.0.0.0", "10.0.0.1", "::", "LOCALHOST", "localhost.example", "127.0.0.1.nip.io", "127.evil.example",
                      "127.0.0.256", "127.0.0.01", "127.00.0.1", "127.0.0", "127.0.0.1.", "1٢7.0.0.1", "127.0.0.١", "", "[::1",
                      " 127.0.0.1"])
    func anythingElseIsRefused(host: String) {
        #expect(LoopbackAddress.bindHost(host) == nil, "\(host.debugDescription) would be bound")
    }
}
