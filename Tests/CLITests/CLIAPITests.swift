import Foundation
import JOSE
import SoftHSMTestSupport
import Synchronization
import Testing

/// `fireblocks-sandbox serve` as a user runs it, in the background of a test.
final class SandboxProcess {
    let process = Process()
    let baseURL: String
    let stateFile: String
    let log: String

    init(cli: CLIHarness, trust: [String], extra: [String] = []) throws {
        let portFile = cli.files + "/../sandbox.port"
        stateFile = cli.files + "/../sandbox.json"
        log = cli.files + "/../sandbox.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: CLIHarness.sandboxBinary)
        process.arguments = ["serve", "--port", "0", "--port-file", portFile, "--state", stateFile]
            + trust.flatMap { ["--trust", $0] } + extra
        process.currentDirectoryURL = URL(fileURLWithPath: cli.files)
        process.environment = cli.environment()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        var port: String?
        for _ in 0..<100 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), !text.isEmpty {
                port = text.trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
            usleep(50_000)
        }
        guard let port else {
            process.terminate()
            throw TestSupportError("sandbox did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        baseURL = "http://127.0.0.1:\(port)/v1"
    }

    /// A token with an admin key, its public key exported, and the stand-in trusting it; the API
    /// flags that sign as that admin.
    static func withAdmin(apiKey: String, role: String = "ADMIN", sandboxArguments: [String] = []) throws
        -> (CLIHarness, SandboxProcess, [String]) {
        let cli = try CLIHarness()
        let generated = try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"])
        guard generated.status == 0 else { throw TestSupportError(generated.standardError) }
        let exported = try cli.runOnToken(["key", "export", "--key", "admin", "--out", "admin.pub"])
        guard exported.status == 0 else { throw TestSupportError(exported.standardError) }
        let sandbox = try SandboxProcess(cli: cli, trust: ["admin.pub=\(apiKey):\(role)"], extra: sandboxArguments)
        return (cli, sandbox, ["--api-key", apiKey, "--base-url", sandbox.baseURL, "--state-dir", cli.directory.path + "/state"])
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    /// Whether the stand-in's log (its stderr) shows `text` within `seconds`: it logs each request
    /// when it has handled it, before any configured `--delay`, so a line means "received".
    func logShows(_ text: String, within seconds: Double = 30) -> Bool {
        CLIHarness.eventually(within: seconds) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(text) }
    }

    func state() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stateFile))) as? [String: Any] ?? [:]
    }
}

@Suite("Command line: Fireblocks API")
struct CLIAPITests {
    let adminKey = UUID().uuidString.lowercased()

    private func setUp(role: String = "ADMIN", sandboxArguments: [String] = []) throws -> (CLIHarness, SandboxProcess, [String]) {
        try SandboxProcess.withAdmin(apiKey: adminKey, role: role, sandboxArguments: sandboxArguments)
    }

    @Test func onboardRefusesToAdoptAKeyItDidNotMake() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "someone-elses", "--bits", "2048"]).status == 0)
        let result = try cli.runOnToken(["onboard", "--key", "someone-elses", "--name", "x", "--role", "SIGNER", "--o", "Acme",
                                         "--state-dir", cli.directory.path + "/state"])
        #expect(result.status == 6)
        #expect(result.standardError.contains("no onboard of this machine made"))
    }

    @Test func apiUserCreateChecksTheCSRFirst() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        try Data("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".utf8)
            .write(to: URL(fileURLWithPath: cli.files + "/bad.csr"))
        let result = try cli.runOnToken(["api-user", "create", "--key", "admin", "--name", "x", "--role", "SIGNER", "--csr", "bad.csr"] + api)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("not a PEM certificate request"))
        let log = try String(contentsOfFile: sandbox.log, encoding: .utf8)
        #expect(!log.contains("POST"), "nothing was sent")
    }

    @Test func jwtVerifiesWithTheExportedKeyAndHasTheClaims() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        try Data(#"{"a":1}"#.utf8).write(to: URL(fileURLWithPath: cli.files + "/body.json"))
        let result = try cli.runOnToken(["jwt", "--key", "admin", "--method", "POST", "--path", "/v1/management/api_users",
                                         "--body-file", "body.json"] + api)
        #expect(result.status == 0, "\(result.standardError)")
        let token = result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!result.standardError.contains(token), "the token goes to stdout only")
        let jws = try #require(CompactJWS(compact: token))
        let claims = try #require(try JSONSerialization.jsonObject(with: Data(jws.payload)) as? [String: Any])
        #expect(claims["uri"] as? String == "/v1/management/api_users")
        #expect(claims["sub"] as? String == adminKey)
        #expect(claims["bodyHash"] as? String == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862")
        #expect((claims["exp"] as? Int).map { $0 - (claims["iat"] as? Int ?? 0) } == 55)

        // openssl, not this project's code, checks the signature with the exported public key.
        let parts = token.split(separator: ".")
        try Data((parts[0] + "." + parts[1]).utf8).write(to: URL(fileURLWithPath: cli.files + "/input"))
        try Base64URL.decode(parts[2])!.write(to: URL(fileURLWithPath: cli.files + "/signature"))
        let verify = try Subprocess.run("openssl", ["dgst", "-sha256", "-verify", "admin.pub", "-signature", "signature", "input"],
                                        workingDirectory: cli.files)
        #expect(verify.standardOutput.contains("Verified OK"), "\(verify.standardOutput) \(verify.standardError)")
    }

    @Test func exitCodesPerClass() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        let notFound = try cli.runOnToken(["request", "GET", "/v1/nothing", "--key", "admin"] + api)
        #expect(notFound.status == 9)
        #expect(notFound.standardError.contains("HTTP 404"))
        #expect(notFound.standardError.contains("X-Request-ID: "))

        let stranger = ["--api-key", UUID().uuidString.lowercased(), "--base-url", sandbox.baseURL]
        let unauthorised = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin"] + stranger)
        #expect(unauthorised.status == 8)
        #expect(unauthorised.standardError.contains("(code -7)"))

        let ok = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin", "--json"] + api)
        #expect(ok.status == 0, "\(ok.standardError)")
        #expect((try ok.json() as? [String: Any])?["status"] as? Int == 200)
    }

    @Test func serverFailuresAreExitCode10AfterRetries() throws {
        let (cli, sandbox, api) = try setUp(sandboxArguments: ["--fail-first", "50"])
        defer { sandbox.stop(); cli.remove() }
        let result = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin", "--attempts", "2"] + api)
        #expect(result.status == 10)
        #expect(result.errorLines.last?.contains("after 2 attempts") == true)
    }

    @Test func retriesUnderFailFirstCreateOneUser() throws {
        let (cli, sandbox, api) = try setUp(sandboxArguments: ["--fail-first", "2", "--lose-response-first", "1"])
        defer { sandbox.stop(); cli.remove() }
        #expect(try cli.runOnToken(["csr", "--key", "admin", "--o", "Acme", "--out", "u.csr"]).status == 0)
        let created = try cli.runOnToken(["api-user", "create", "--key", "admin", "--name", "ci-bot", "--role", "signer", "--csr", "u.csr", "--json"] + api)
        #expect(created.status == 0, "\(created.standardError)")
        #expect((try sandbox.state()["users"] as? [[String: Any]])?.count == 1)
    }

    /// A wrong port: each attempt is refused at once and --attempts decides about the next.
    /// AsyncHTTPClient's own retry of connection establishment would spend its 10-second connect
    /// timeout inside every attempt (at least 20 s here); the bound below is far from both.
    @Test func aRefusedConnectionIsReportedWithinTheAttemptsNotAfterAConnectTimeoutEach() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        let port = try LoopbackPort.closed()
        let started = Date()
        let result = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin", "--api-key", adminKey,
                                         "--base-url", "http://127.0.0.1:\(port)/v1", "--attempts", "2"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 10, "\(result.standardError)")
        #expect(result.errorLines.last?.contains("connection refused (after 2 attempts)") == true, "\(result.standardError)")
        #expect(elapsed < 12, "two refused attempts took \(elapsed) s")

        // A POST without an Idempotency-Key is retried too when nothing of it was sent.
        let post = try cli.runOnToken(["request", "POST", "/v1/vault/accounts", "--data", "{}", "--key", "admin", "--api-key", adminKey,
                                       "--base-url", "http://127.0.0.1:\(port)/v1", "--attempts", "2"])
        #expect(post.status == 10, "\(post.standardError)")
        #expect(post.errorLines.last?.contains("connection refused (after 2 attempts)") == true, "\(post.standardError)")
    }

    @Test func plainHTTPToANonLoopbackHostIsRefusedBeforeAnyLookup() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        let result = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin", "--api-key", adminKey,
                                         "--base-url", "http://fireblocks-api.example.invalid/v1", "--attempts", "3"])
        #expect(result.status == 2)
        #expect(result.standardError.contains("refusing plain http"))
        #expect(!result.standardError.contains("retrying"), "no attempt was made")
    }

    @Test func noEnvironmentIsAnErrorNotProduction() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.runOnToken(["api-user", "list", "--key", "admin", "--api-key", adminKey])
        #expect(result.status == 2)
        #expect(result.standardError.contains("no API environment"))
    }

    @Test func aProfileSuppliesDefaultsAndNeverAPIN() throws {
        let (cli, sandbox, _) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        let config = cli.directory.path + "/config"
        try FileManager.default.createDirectory(atPath: config, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let profile: [String: Any] = ["profiles": ["test": [
            "module": SoftHSM.modulePath, "token": "fb", "key": "admin", "apiKey": adminKey,
            "baseURL": sandbox.baseURL, "pinSource": "env:TEST_HSM_PIN"]]]
        try JSONSerialization.data(withJSONObject: profile).write(to: URL(fileURLWithPath: config + "/config.json"))
        chmod(config + "/config.json", 0o600)
        let environment = ["FIREBLOCKS_HSM_CONFIG": config + "/config.json"]
        let listed = try cli.run(["api-user", "list", "--profile", "test", "--json"], module: nil, environment: environment)
        #expect(listed.status == 0, "\(listed.standardError)")

        // Flags beat the profile.
        let flagged = try cli.run(["api-user", "list", "--profile", "test", "--api-key", UUID().uuidString], module: nil, environment: environment)
        #expect(flagged.status == 8)

        let withPIN: [String: Any] = ["profiles": ["test": ["token": "fb", "pin": "1234"]]]
        try JSONSerialization.data(withJSONObject: withPIN).write(to: URL(fileURLWithPath: config + "/config.json"))
        let refused = try cli.run(["api-user", "list", "--profile", "test"], module: nil, environment: environment)
        #expect(refused.status == 2)
        #expect(refused.standardError.contains("PINs are never stored in profiles"))
        #expect(!refused.standardError.contains("1234"))

        chmod(config + "/config.json", 0o666)
        let writable = try cli.run(["api-user", "list", "--profile", "test"], module: nil, environment: environment)
        #expect(writable.status == 2)
        #expect(writable.standardError.contains("writable by group or others"))
    }
}

@Suite("Command line: the stand-in's lifecycle")
struct CLISandboxLifecycleTests {
    /// SIGTERM stops accepting, lets the request in flight finish, and exits 0.
    @Test func sigtermFinishesTheRequestInFlight() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased(), sandboxArguments: ["--delay", "1.5"])
        defer { cli.remove() }
        let done = DispatchSemaphore(value: 0)
        let listing = Mutex<ProcessResult?>(nil)
        DispatchQueue.global().async {
            let result = try? cli.runOnToken(["api-user", "list", "--key", "admin", "--attempts", "1"] + api)
            listing.withLock { $0 = result }
            done.signal()
        }
        // The request is in flight once the stand-in has logged it (its 1.5 s delay follows).
        #expect(sandbox.logShows("GET /v1/management/api_users"), "the request never reached the stand-in")
        sandbox.process.terminate()
        sandbox.process.waitUntilExit()
        #expect(sandbox.process.terminationStatus == 0)
        done.wait()
        let listed = listing.withLock { $0 }
        #expect(listed?.status == 0, "\(listed?.standardError ?? "did not run")")
        let log = (try? String(contentsOfFile: sandbox.log, encoding: .utf8)) ?? ""
        #expect(log.contains("stopped"), "\(log)")
    }
}

/// A server of Tests/Fixtures/misbehaving-server.py, on loopback.
final class MisbehavingServer {
    let process = Process()
    let port: Int

    init(mode: String, directory: String) throws {
        let portFile = directory + "/misbehaving-\(UUID().uuidString.prefix(6)).port"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", CLIHarness.repository + "/Tests/Fixtures/misbehaving-server.py", mode, portFile]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var found: Int?
        for _ in 0..<200 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let value = Int(text) { found = value; break }
            usleep(25_000)
        }
        guard let found else { process.terminate(); throw TestSupportError("the misbehaving server did not start") }
        port = found
    }

    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    func stop() {
        // SIGKILL: a handler thread stuck in its trickle must not keep the server (and the test) up.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite("Command line: every wait is bounded")
struct CLIDeadlineTests {
    @Test(.enabled(if: Subprocess.isAvailable("python3")), arguments: ["trickle-sized", "trickle-chunked"])
    func aBodyThatTricklesIsCutOffAtTheRequestTimeout(mode: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let server = try MisbehavingServer(mode: mode, directory: cli.files)
        defer { server.stop() }
        let started = Date()
        let result = try cli.runOnToken(["request", "GET", "/v1/slow", "--key", "k", "--api-key", "k", "--base-url", server.baseURL,
                                         "--request-timeout", "2", "--attempts", "1"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 10, "\(result.standardError)")
        #expect(elapsed < 30, "the trickling body held the command for \(elapsed) s")
        #expect(result.standardError.contains("within 2 s"), "\(result.standardError)")
    }

    @Test(.enabled(if: Subprocess.isAvailable("python3")))
    func aWaitsTimeoutIsADeadlineRetryAfterIncluded() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let server = try MisbehavingServer(mode: "retry-after", directory: cli.files)
        defer { server.stop() }
        let started = Date()
        let result = try cli.runOnToken(["api-user", "wait", "bot", "--until", "READY", "--timeout", "2s", "--key", "k", "--api-key", "k",
                                         "--base-url", server.baseURL])
        let elapsed = Date().timeIntervalSince(started)
        #expect(result.status == 12, "\(result.standardError)")
        #expect(elapsed < 12, "a 2 s wait took \(elapsed) s")
    }
}
