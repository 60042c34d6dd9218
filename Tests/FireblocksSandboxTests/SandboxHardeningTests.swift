import APITestSupport
import AsyncHTTPTransport
import FireblocksAPI
import FireblocksSandbox
import Foundation
import SoftHSMTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The stand-in as a server that bad clients and bad flags cannot take down.
@Suite("Stand-in hardening")
struct SandboxHardeningTests {
    /// Whether `condition` holds within `seconds`, checked every 10 ms.
    static func eventually(within seconds: Int = 30, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    private func service() throws -> SandboxService {
        let signer = try SoftwareSigner()
        return try SandboxService(configuration: SandboxConfiguration(
            trusted: [try TrustedAPIUser(apiKey: "k", role: .ADMIN, publicKeyPEM: signer.publicKeyPEM)]))
    }

    @Test(arguments: ["0.0.0.0", "127.evil.example", "127.0.0.1.nip.io", "10.0.0.1", "::", "localhost.example", "127.0.0.256", "1٢7.0.0.1"])
    func onlyLoopbackLiteralsAreBound(host: String) async throws {
        await #expect(throws: SandboxError.self) {
            let server = try await SandboxServer.start(service: try service(), host: host, port: 0)
            try await server.shutdown()
        }
    }

    @Test func localhostIsBoundAs127001WithoutAskingDNS() async throws {
        let server = try await SandboxServer.start(service: try service(), host: "localhost", port: 0)
        defer { Task { try? await server.shutdown() } }
        #expect(server.host == "127.0.0.1")
    }

    @Test func ipv6LoopbackWorksEndToEnd() async throws {
        let admin = try TokenAdmin(label: "v6")
        let service = try SandboxService(configuration: SandboxConfiguration(trusted: [try admin.trusted()]))
        let server = try await SandboxServer.start(service: service, host: "::1", port: 0)
        #expect(server.baseURL.hasPrefix("http://[::1]:"))
        let client = FireblocksClient(baseURL: try APIBaseURL(validating: server.baseURL),
                                      issuer: try RequestTokenIssuer(apiKey: admin.apiKey, signer: admin.signer),
                                      options: RunningSandbox.fastOptions(), transport: AsyncHTTPClientTransport())
        let response = try await client.send(APIRequest(method: "GET", path: "/v1/workspace"))
        #expect(response.status == 200)
        try await server.shutdown()
    }

    @Test(arguments: [-1, 65536, 99999])
    func portsOutOfRangeAreRefused(port: Int) async throws {
        await #expect(throws: SandboxError.self) {
            _ = try await SandboxServer.start(service: try service(), port: port)
        }
    }

    @Test(arguments: [Double.infinity, -1, Double.nan, 601])
    func anImpossibleDelayIsRefused(delay: Double) throws {
        var configuration = try service().configuration
        configuration.delay = delay
        #expect(throws: SandboxError.self) { try configuration.validate() }
    }

    @Test func aRoleThatDoesNotExistIsBlamedOnTrust() throws {
        do {
            _ = try TrustedAPIUser(trustArgument: "admin.pub=3f1c:WIZARD")
            Issue.record("expected an error")
        } catch let error as SandboxError {
            // The library names the setting (its command line names the flag), never a flag.
            #expect(error.setting == "trusted" && error.description.contains("'WIZARD' is not a Fireblocks role"))
            #expect(!error.description.contains("--"))
        }
    }

    /// A client that connects and sends half a request is cut off at the deadline, and while it
    /// hangs on, real clients are served.
    @Test func slowAndIdleClientsAreCutOffAndDoNotBlockOthers() async throws {
        let admin = try TokenAdmin(label: "slow")
        let service = try SandboxService(configuration: SandboxConfiguration(trusted: [try admin.trusted()]))
        let server = try await SandboxServer.start(service: service, port: 0,
                                                   limits: SandboxServer.Limits(requestTimeout: 1, maximumConnections: 64))
        defer { Task { try? await server.shutdown() } }

        let idle = try (0..<40).map { _ in try RawConnection(port: server.port) }
        for connection in idle { connection.send("GET /v1/workspace HTTP/1.1\r\nHost: x\r\n") }

        let client = FireblocksClient(baseURL: try APIBaseURL(validating: server.baseURL),
                                      issuer: try RequestTokenIssuer(apiKey: admin.apiKey, signer: admin.signer),
                                      options: RunningSandbox.fastOptions(attempts: 1, timeout: 5), transport: AsyncHTTPClientTransport())
        #expect(try await client.send(APIRequest(method: "GET", path: "/v1/workspace")).status == 200)

        // Each is closed at its 1 s deadline: watched for, up to 10 s.
        for connection in idle {
            #expect(await connection.closed(within: 30_000), "a half-sent request still holds its connection")
        }
    }

    @Test func connectionsBeyondTheCapWaitInTheBacklogAndAreServedWhenAPlaceFrees() async throws {
        let log = Lines()
        let server = try await SandboxServer.start(service: try service(), port: 0,
                                                   limits: SandboxServer.Limits(requestTimeout: 120, maximumConnections: 4, headTimeout: 120),
                                                   log: { log.append($0) })
        defer { Task { try? await server.shutdown() } }
        // Their head deadline is far beyond the test, so only the test frees a place, however
        // slow the machine.
        var held = try (0..<4).map { _ in try RawConnection(port: server.port) }
        // The server has taken the four and paused its listener.
        #expect(await Self.eventually { log.all.contains { $0.contains("the connection cap is reached") } }, "\(log.all)")
        let extra = try RawConnection(port: server.port)
        extra.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        // Not refused: waiting, unanswered (watched for 300 ms), while the four hold every place.
        #expect(await !extra.answered(within: 300))
        #expect(await !extra.closedByPeer(within: 100))
        #expect(await !held[0].closedByPeer(within: 100))
        held.removeFirst()   // a place frees
        #expect(await extra.answered(within: 30_000), "the waiting connection was not served once a place freed")
    }

    /// One local process holding idle and trickling connections beyond the cap does not keep a
    /// real client out for longer than the head deadline.
    @Test func idleAndTricklingConnectionsDoNotKeepARealClientOut() async throws {
        let admin = try TokenAdmin(label: "abuse")
        let service = try SandboxService(configuration: SandboxConfiguration(trusted: [try admin.trusted()]))
        let log = Lines()
        let server = try await SandboxServer.start(service: service, port: 0,
                                                   limits: SandboxServer.Limits(requestTimeout: 30, maximumConnections: 64),
                                                   log: { log.append($0) })
        defer { Task { try? await server.shutdown() } }
        let client = FireblocksClient(baseURL: try APIBaseURL(validating: server.baseURL),
                                      issuer: try RequestTokenIssuer(apiKey: admin.apiKey, signer: admin.signer),
                                      options: RunningSandbox.fastOptions(attempts: 1, timeout: 30), transport: AsyncHTTPClientTransport())
        // Normal latency, on a connection of its own (the client's first connection must be made
        // while the abuse goes on).
        let calm = ContinuousClock.now
        let probe = try RawConnection(port: server.port)
        probe.send("GET /v1/workspace HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = await probe.answered(within: 30_000)
        let normal = calm.duration(to: .now)
        let abuse = LocalAbuse(port: server.port, idle: 100, trickling: 20, requesting: 40)
        defer { abuse.stop() }
        // The abuse holds every place: the server said so when it paused its listener.
        #expect(await Self.eventually { log.all.contains { $0.contains("the connection cap is reached") } }, "\(log.all)")
        let started = ContinuousClock.now
        for _ in 0..<20 {
            #expect(try await client.send(APIRequest(method: "GET", path: "/v1/workspace")).status == 200)
        }
        let took = started.duration(to: .now)
        abuse.stop()
        // The head deadline (5 s) frees the places the idle ones took.
        #expect(took < .seconds(5) + normal * 20 + .seconds(5), "20 requests took \(took)")
    }
}
