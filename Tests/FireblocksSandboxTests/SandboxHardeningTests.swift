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

        try await Task.sleep(nanoseconds: 2_500_000_000)
        for connection in idle { #expect(connection.isClosedByPeer(), "a half-sent request still holds its connection") }
    }

    @Test func connectionsBeyondTheCapWaitInTheBacklogAndAreServedWhenAPlaceFrees() async throws {
        let server = try await SandboxServer.start(service: try service(), port: 0,
                                                   limits: SandboxServer.Limits(requestTimeout: 30, maximumConnections: 4))
        defer { Task { try? await server.shutdown() } }
        var held = try (0..<4).map { _ in try RawConnection(port: server.port) }
        try await Task.sleep(nanoseconds: 200_000_000)
        let extra = try RawConnection(port: server.port)
        extra.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try await Task.sleep(nanoseconds: 300_000_000)
        // Not refused: waiting, unanswered, while the four hold every place.
        #expect(!extra.isClosedByPeer())
        #expect(!held[0].isClosedByPeer())
        held.removeFirst()   // a place frees
        var answered = false
        for _ in 0..<50 where !answered {
            try await Task.sleep(nanoseconds: 100_000_000)
            answered = extra.hasData()
        }
        #expect(answered, "the waiting connection was not served once a place freed")
    }

    /// One local process holding idle and trickling connections beyond the cap does not keep a
    /// real client out for longer than the head deadline.
    @Test func idleAndTricklingConnectionsDoNotKeepARealClientOut() async throws {
        let admin = try TokenAdmin(label: "abuse")
        let service = try SandboxService(configuration: SandboxConfiguration(trusted: [try admin.trusted()]))
        let server = try await SandboxServer.start(service: service, port: 0,
                                                   limits: SandboxServer.Limits(requestTimeout: 30, maximumConnections: 64))
        defer { Task { try? await server.shutdown() } }
        let client = FireblocksClient(baseURL: try APIBaseURL(validating: server.baseURL),
                                      issuer: try RequestTokenIssuer(apiKey: admin.apiKey, signer: admin.signer),
                                      options: RunningSandbox.fastOptions(attempts: 1, timeout: 30), transport: AsyncHTTPClientTransport())
        // Normal latency, on a connection of its own (the client's first connection must be made
        // while the abuse goes on).
        let calm = ContinuousClock.now
        let probe = try RawConnection(port: server.port)
        probe.send("GET /v1/workspace HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in 0..<100 where !probe.hasData() {}
        let normal = calm.duration(to: .now)
        let abuse = LocalAbuse(port: server.port, idle: 100, trickling: 20, requesting: 40)
        defer { abuse.stop() }
        try await Task.sleep(nanoseconds: 500_000_000)
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

/// A raw TCP client on loopback, to misbehave as HTTP clients never do.
final class RawConnection {
    let descriptor: Int32

    init(port: Int) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(descriptor) }

    func send(_ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count - 1) }
    }

    /// True when something (an answer) can be read.
    func hasData() -> Bool {
        var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&poll, 1, 100) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK)) > 0
    }

    /// True when the server closed the connection (a read returns end of file or an error).
    func isClosedByPeer() -> Bool {
        var poll = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&poll, 1, 100) > 0 else { return false }
        var byte: UInt8 = 0
        return recv(descriptor, &byte, 1, Int32(MSG_PEEK)) <= 0
    }
}
