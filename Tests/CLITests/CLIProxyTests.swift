import Foundation
import SoftHSMTestSupport
import Testing

/// `fireblocks-hsm serve` in the background of a test, as a service manager runs it.
final class ProxyProcess {
    let process = Process()
    let log: String
    let socket: String?

    /// Starts the proxy and waits until it serves (its "serving on …" line), or fails with its log.
    init(cli: CLIHarness, arguments: [String], socket: String?, module: String = SoftHSM.modulePath,
         environment: [String: String] = [:]) throws {
        log = cli.files + "/../serve-\(UUID().uuidString.prefix(6)).log"
        self.socket = socket
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        process.arguments = ["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--module", module,
                             "--log-level", "info"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: cli.files)
        process.environment = cli.environment(environment)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        for _ in 0..<200 {
            if output.contains("serving on ") { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        process.terminate()
        process.waitUntilExit()
        throw TestSupportError("serve did not start (status \(process.terminationStatus)): \(output)")
    }

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// The loopback port from the "serving on 127.0.0.1:PORT" line.
    var port: Int? {
        guard let range = output.range(of: "serving on 127.0.0.1:") else { return nil }
        return Int(output[range.upperBound...].prefix { $0.isNumber })
    }

    /// SIGTERM, then the exit status.
    func terminate() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

@Suite("Command line: signing proxy")
struct CLIProxyTests {
    /// curl through the unix socket: status line and body.
    private func curl(_ socket: String, _ arguments: [String]) throws -> (status: Int, body: String) {
        let result = try Subprocess.run("curl", ["-sS", "--max-time", "30", "--unix-socket", socket, "-o", "-", "-w", "\n%{http_code}"] + arguments)
        let lines = result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func theSocketIsPrivateAndAnOpenDirectoryIsRefused() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let open = cli.directory.path + "/open"
        try FileManager.default.createDirectory(atPath: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        let refused = try cli.run(["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--key", "admin",
                                   "--listen", "unix:\(open)/p.sock", "--allow", "GET /v1/workspace"] + api)
        #expect(refused.status == 2, "\(refused.standardError)")
        #expect(refused.standardError.contains("0700"))
        let remote = try cli.run(["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--key", "admin",
                                  "--listen", "0.0.0.0:8787", "--allow", "GET /v1/workspace"] + api)
        #expect(remote.status == 2 && remote.standardError.contains("loopback"), "\(remote.standardError)")

        let socket = cli.directory.path + "/run/p.sock"  // the directory is made, 0700
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "unix:\(socket)",
                                                           "--allow", "GET /v1/management/api_users"] + api, socket: socket)
        let attributes = try FileManager.default.attributesOfItem(atPath: socket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let directory = try FileManager.default.attributesOfItem(atPath: cli.directory.path + "/run")
        #expect((directory[.posixPermissions] as? Int) == 0o700)
        let listed = try curl(socket, ["http://fb/v1/management/api_users"])
        #expect(listed.status == 200 && listed.body.contains("trusted-admin"), "\(listed)")
        // A second proxy on the same socket is refused, and the first goes on.
        let second = try cli.run(["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--key", "admin",
                                  "--listen", "unix:\(socket)", "--allow", "GET /v1/workspace"] + api)
        #expect(second.status == 2 && second.standardError.contains("another process"), "\(second.standardError)")
        #expect(try curl(socket, ["http://fb/v1/management/api_users"]).status == 200)
        #expect(proxy.terminate() == 0, "\(proxy.output)")
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket is removed at exit")
    }

    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func sigtermLetsRequestsInFlightFinishAndSealsTheAuditLog() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased(), sandboxArguments: ["--delay", "1.5"])
        defer { sandbox.stop(); cli.remove() }
        let socket = cli.directory.path + "/run/p.sock"
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "unix:\(socket)",
                                                           "--allow", "GET /v1/management/api_users"] + api, socket: socket)
        // A request that takes 1.5 s upstream, then SIGTERM while it is in flight.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let out = cli.files + "/inflight.out"
        client.arguments = ["curl", "-sS", "--max-time", "30", "--unix-socket", socket, "-o", out, "-w", "%{http_code}",
                            "http://fb/v1/management/api_users"]
        let status = Pipe()
        client.standardOutput = status
        try client.run()
        // In flight once the stand-in has logged it: its 1.5 s delay follows, then the answer.
        #expect(sandbox.logShows("GET /v1/management/api_users"), "the request never reached the stand-in")
        let exit = proxy.terminate()
        client.waitUntilExit()
        let code = String(decoding: status.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(code == "200", "the request in flight must be answered: \(code); \(proxy.output)")
        #expect(exit == 0, "\(proxy.output)")
        #expect(try String(contentsOfFile: out, encoding: .utf8).contains("trusted-admin"))

        let records = try #require(try cli.runOnToken(["audit", "show", "--json"]).json() as? [[String: Any]])
        let events = records.compactMap { $0["event"] as? String }
        #expect(Array(events.suffix(4)) == ["proxy.started", "proxy.request", "proxy.response", "proxy.stopped"], "\(events)")
        let response = try #require(records.first { $0["event"] as? String == "proxy.response" }?["facts"] as? [String: Any])
        #expect(response["httpStatus"] as? Int == 200)
        #expect((response["xRequestID"] as? String)?.isEmpty == false)
        #expect((response["latencyMs"] as? Int ?? 0) >= 1500)
        // The final checkpoint covers everything, proxy.stopped included.
        let verify = try cli.runOnToken(["audit", "verify", "--json"])
        #expect(verify.status == 0, "\(verify.standardError)")
        let checkpoint = try cli.runOnToken(["audit", "checkpoint"])
        #expect(checkpoint.standardOutput.split(separator: "\n").dropFirst().first == "\(records.count)"[...], "\(checkpoint.standardOutput)")
        let log = try String(contentsOfFile: cli.directory.path + "/audit/" + (try FileManager.default.contentsOfDirectory(atPath: cli.directory.path + "/audit").first { $0.hasSuffix(".jsonl") } ?? ""), encoding: .utf8)
        #expect(!log.contains("eyJ") && !log.contains(cli.userPIN))
    }

    /// The official Python SDK, unmodified, with a placeholder key: it creates and lists API
    /// users, lists vault accounts, and creates and reads a transaction (its smoke test) through
    /// the proxy, which re-signs every request on the token.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"] != nil && Subprocess.isAvailable("openssl")))
    func theOfficialPythonSDKWorksThroughTheProxyWithAPlaceholderKey() throws {
        let sdk = try #require(ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"])
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        // A CSR for the new user, signed on the token; a throwaway placeholder key for the SDK.
        #expect(try cli.runOnToken(["key", "generate", "--key", "py-bot", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["csr", "--key", "py-bot", "--o", "Acme", "--cn", "py-bot", "--out", "py-bot.csr"]).status == 0)
        let placeholder = try Subprocess.run("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                                                         "-out", cli.files + "/placeholder.pem"])
        #expect(placeholder.status == 0)
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "127.0.0.1:0",
                                                           "--allow", "GET /v1/management/api_users",
                                                           "--allow", "POST /v1/management/api_users",
                                                           "--allow", "GET /v1/vault/accounts_paged", "--allow", "POST /v1/transactions",
                                                           "--allow", "GET /v1/transactions/*"] + api, socket: nil)
        let port = try #require(proxy.port)
        #expect(proxy.output.contains("without --client-token-file"), "a TCP proxy without client tokens is warned about")
        let script = """
            import json, sys
            from fireblocks.client import Fireblocks
            from fireblocks.client_configuration import ClientConfiguration
            from fireblocks.models.create_api_user import CreateAPIUser
            from fireblocks.models.transaction_request import TransactionRequest
            from fireblocks.models.transaction_request_amount import TransactionRequestAmount
            from fireblocks.models.source_transfer_peer_path import SourceTransferPeerPath
            from fireblocks.models.destination_transfer_peer_path import DestinationTransferPeerPath
            from fireblocks.models.transfer_peer_path_type import TransferPeerPathType
            configuration = ClientConfiguration(api_key="placeholder", secret_key=open("placeholder.pem").read(),
                                                base_path="http://127.0.0.1:\(port)/v1")
            with Fireblocks(configuration) as fireblocks:
                created = fireblocks.api_user.create_api_user(
                    create_api_user=CreateAPIUser(role="SIGNER", name="py-bot", csr_pem=open("py-bot.csr").read()),
                    idempotency_key="py-bot-create-1").result()
                listed = fireblocks.api_user.get_api_users().result()
                vaults = fireblocks.vaults.get_paged_vault_accounts(limit=10).result().data
                request = TransactionRequest(
                    asset_id="BTC_TEST", amount=TransactionRequestAmount("0.001"), note="smoke test", external_tx_id="py-smoke-1",
                    source=SourceTransferPeerPath(type=TransferPeerPathType.VAULT_ACCOUNT, id=vaults.accounts[0].id),
                    destination=DestinationTransferPeerPath(type=TransferPeerPathType.VAULT_ACCOUNT, id=vaults.accounts[1].id))
                transaction = fireblocks.transactions.create_transaction(transaction_request=request).result().data
                read = fireblocks.transactions.get_transaction(tx_id=transaction.id).result().data
                print(json.dumps({"created": created.status_code, "names": [u.name for u in listed.data.users],
                                  "vaults": [a.name for a in vaults.accounts], "total": vaults.accounts[0].assets[0].total,
                                  "created_tx": transaction.status, "tx": read.id == transaction.id, "tx_status": read.status,
                                  "tx_amount": read.amount_info.amount, "tx_external": read.external_tx_id}))
            """
        let run = try Subprocess.run("python3", ["-c", script], environment: cli.environment(["PYTHONPATH": sdk]), workingDirectory: cli.files)
        let exit = proxy.terminate()
        #expect(run.status == 0, "\(run.standardError)\n\(proxy.output)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any])
        #expect((result["names"] as? [String])?.contains("py-bot") == true, "\(result)")
        #expect(result["vaults"] as? [String] == ["Default", "Treasury"] && result["total"] as? String == "1.5", "\(result)")
        #expect(result["created_tx"] as? String == "SUBMITTED" && result["tx"] as? Bool == true, "\(result)")
        #expect(result["tx_amount"] as? String == "0.001" && result["tx_external"] as? String == "py-smoke-1", "\(result)")
        #expect(result["tx_status"] is String, "\(result)")
        #expect(exit == 0)
        let users = try sandbox.state()
        #expect("\(users)".contains("py-bot"))
    }

    /// The whole chain on a token reached through `p11-kit server` and `p11-kit-client.so`, as
    /// an HSM on another host is: key generation, CSR, JWT, and a request through the proxy.
    @Test(.enabled(if: P11Kit.clientModule != nil && Subprocess.isAvailable("p11-kit") && Subprocess.isAvailable("curl")))
    func keygenCSRJWTAndAProxiedRequestWorkOnARemoteToken() throws {
        let cli = try CLIHarness(label: "remote")
        defer { cli.remove() }
        let server = try P11Kit.Server(cli: cli, token: "remote")
        defer { server.stop() }
        let socket = server.socket

        // From here on the token is reached only through the socket.
        let client = try #require(P11Kit.clientModule)
        let remote = ["P11_KIT_SERVER_ADDRESS": "unix:path=\(socket)", "SOFTHSM2_CONF": "/nonexistent"]
        func onRemote(_ arguments: [String]) throws -> ProcessResult {
            try cli.run(arguments + ["--token", "remote", "--pin-source", "env:TEST_HSM_PIN"], module: client, environment: remote)
        }
        let generated = try onRemote(["key", "generate", "--key", "admin", "--bits", "2048"])
        #expect(generated.status == 0, "\(generated.standardError)")
        #expect(try onRemote(["key", "export", "--key", "admin", "--out", "admin.pub"]).status == 0)
        let csr = try onRemote(["csr", "--key", "admin", "--o", "Acme", "--out", "remote.csr"])
        #expect(csr.status == 0, "\(csr.standardError)")
        #expect(try Subprocess.run("openssl", ["req", "-in", "remote.csr", "-verify", "-noout"], workingDirectory: cli.files).status == 0)
        let apiKey = UUID().uuidString.lowercased()
        let jwt = try onRemote(["jwt", "--key", "admin", "--api-key", apiKey, "--path", "/v1/workspace"])
        #expect(jwt.status == 0 && jwt.standardOutput.hasPrefix("eyJ"), "\(jwt.standardError)")

        let sandbox = try SandboxProcess(cli: cli, trust: ["admin.pub=\(apiKey):ADMIN"])
        defer { sandbox.stop() }
        let proxySocket = cli.directory.path + "/run/p.sock"
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "unix:\(proxySocket)",
                                                           "--allow", "GET /v1/management/api_users", "--api-key", apiKey,
                                                           "--base-url", sandbox.baseURL], socket: proxySocket,
                                     module: client, environment: remote)
        let listed = try curl(proxySocket, ["http://fb/v1/management/api_users"])
        #expect(listed.status == 200 && listed.body.contains("trusted-admin"), "\(listed) \(proxy.output)")
        #expect(proxy.terminate() == 0, "\(proxy.output)")
        let verify = try onRemote(["audit", "verify"])
        #expect(verify.status == 0, "\(verify.standardError)")
    }
}
