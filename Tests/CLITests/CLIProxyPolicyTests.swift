import Foundation
import SoftHSMTestSupport
import Testing

/// `serve --policy` with the unmodified official Python SDK against the stand-in: what the
/// policy allows passes; what it denies is answered 403 naming the rule, never signed or
/// forwarded, and audited; a window's total survives a restart of the proxy.
@Suite("Command line: the signing proxy's policy, through the official SDK")
struct CLIProxyPolicyTests {
    static let policy = """
    version: 1
    default:
      routes: [GET /v1/vault/accounts_paged, POST /v1/transactions, GET /v1/transactions/*]
      transactions:
        - name: btc-payouts
          assets: [BTC_TEST]
          maxAmount: "0.01"
          window: { period: 24h, maxTotal: "0.015" }
          destinationTypes: [VAULT_ACCOUNT, EXTERNAL_WALLET]
          externalTxId: required

    """

    /// A Python script creating the transactions `calls` lists through the SDK; prints, for each,
    /// the HTTP status and the denial's rule and check.
    static func script(port: Int, calls: String) -> String {
        """
        import json
        from fireblocks.client import Fireblocks
        from fireblocks.client_configuration import ClientConfiguration
        from fireblocks.exceptions import ApiException
        from fireblocks.models.transaction_request import TransactionRequest
        from fireblocks.models.transaction_request_amount import TransactionRequestAmount
        from fireblocks.models.source_transfer_peer_path import SourceTransferPeerPath
        from fireblocks.models.destination_transfer_peer_path import DestinationTransferPeerPath
        from fireblocks.models.one_time_address import OneTimeAddress
        from fireblocks.models.transfer_peer_path_type import TransferPeerPathType
        configuration = ClientConfiguration(api_key="placeholder", secret_key=open("placeholder.pem").read(),
                                            base_path="http://127.0.0.1:\(port)/v1")
        results = []
        with Fireblocks(configuration) as fireblocks:
            vaults = fireblocks.vaults.get_paged_vault_accounts(limit=10).result().data.accounts
            def create(amount, asset="BTC_TEST", external="ext", one_time=False):
                destination = (DestinationTransferPeerPath(type=TransferPeerPathType.ONE_TIME_ADDRESS,
                                                           one_time_address=OneTimeAddress(address="tb1qexample"))
                               if one_time else DestinationTransferPeerPath(type=TransferPeerPathType.VAULT_ACCOUNT, id=vaults[1].id))
                request = TransactionRequest(asset_id=asset, amount=TransactionRequestAmount(amount), external_tx_id=external,
                                             source=SourceTransferPeerPath(type=TransferPeerPathType.VAULT_ACCOUNT, id=vaults[0].id),
                                             destination=destination)
                try:
                    fireblocks.transactions.create_transaction(transaction_request=request).result()
                    results.append({"status": 200})
                except ApiException as error:
                    body = json.loads(error.body) if error.body else {}
                    results.append({"status": error.status, "rule": body.get("rule"), "check": body.get("check")})
        \(calls)
        print(json.dumps(results))
        """
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"] != nil && Subprocess.isAvailable("openssl")))
    func theSDKIsHeldToThePolicyAndTheWindowOutlivesARestart() throws {
        let sdk = try #require(ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"])
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        #expect(try Subprocess.run("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                                               "-out", cli.files + "/placeholder.pem"]).status == 0)
        let policyPath = cli.files + "/payouts.yaml"
        try Self.policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        let arguments = ["--key", "admin", "--listen", "127.0.0.1:0", "--policy", policyPath,
                         "--policy-store", "sqlite:" + cli.files + "/limits.sqlite"] + api

        var proxy = try ProxyProcess(cli: cli, arguments: arguments, socket: nil)
        #expect(proxy.output.contains("policy \(policyPath) sha256 "), "\(proxy.output)")
        let first = try Subprocess.run("python3", ["-c", Self.script(port: try #require(proxy.port), calls: """
            create("0.001", external="tx-1")
            create("0.02", external="tx-2")
            create("0.001", asset="ETH_TEST", external="tx-3")
            create("0.001", one_time=True, external="tx-4")
            create("0.001", external=None)
            """)], environment: cli.environment(["PYTHONPATH": sdk]), workingDirectory: cli.files)
        #expect(proxy.terminate() == 0)
        #expect(first.status == 0, "\(first.standardError)\n\(proxy.output)")
        let results = try #require(try JSONSerialization.jsonObject(with: Data(first.standardOutput.utf8)) as? [[String: Any]])
        #expect(results.map { $0["status"] as? Int } == [200, 403, 403, 403, 403], "\(results)")
        #expect(results.dropFirst().map { "\($0["rule"] ?? "")/\($0["check"] ?? "")" }
                == ["btc-payouts/maxAmount", "transactions/asset", "btc-payouts/destinationType", "btc-payouts/externalTxId"], "\(results)")

        // A restart in the middle of the window: 0.001 is held; 0.01 more fits, 0.005 more does not.
        proxy = try ProxyProcess(cli: cli, arguments: arguments, socket: nil)
        let second = try Subprocess.run("python3", ["-c", Self.script(port: try #require(proxy.port), calls: """
            create("0.01", external="tx-5")
            create("0.005", external="tx-6")
            """)], environment: cli.environment(["PYTHONPATH": sdk]), workingDirectory: cli.files)
        #expect(proxy.terminate() == 0)
        let after = try #require(try JSONSerialization.jsonObject(with: Data(second.standardOutput.utf8)) as? [[String: Any]],
                                 "\(second.standardError)")
        #expect(after.map { $0["status"] as? Int } == [200, 403], "\(after)")
        #expect(after.last?["check"] as? String == "window", "\(after)")

        // The audit trail: the denials with their facts, and only the allowed transactions recorded for signing.
        let audit = cli.directory.path + "/audit"
        let log = try #require(try FileManager.default.contentsOfDirectory(atPath: audit).first { $0.hasSuffix(".jsonl") })
        let records = try String(contentsOfFile: audit + "/" + log, encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let denied = records.filter { $0["event"] as? String == "proxy.denied" }.compactMap { $0["facts"] as? [String: Any] }
        #expect(denied.count == 5)
        #expect(denied.first?["amount"] as? String == "0.02" && denied.first?["assetId"] as? String == "BTC_TEST", "\(denied)")
        #expect(denied.contains { $0["destinationType"] as? String == "ONE_TIME_ADDRESS" })
        let signed = records.filter {
            $0["event"] as? String == "proxy.request" && ($0["facts"] as? [String: Any])?["uri"] as? String == "/v1/transactions"
        }
        #expect(signed.count == 2, "only the two allowed transactions were signed and forwarded")
        let started = records.filter { $0["event"] as? String == "proxy.started" }.compactMap { $0["facts"] as? [String: Any] }
        #expect(started.count == 2 && started.allSatisfy { ($0["policySHA256"] as? String)?.count == 64 })
    }
}

/// `kill -HUP`: a policy that validates is put in force and recorded; one that does not is
/// refused, logged, and the one in force kept.
@Suite("Command line: serve reloads its policy on SIGHUP")
struct CLIProxyPolicyReloadTests {
    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func aHangUpReloadsAValidPolicyAndKeepsTheOldOneOtherwise() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let path = cli.files + "/policy.yaml"
        let readOnly = "version: 1\ndefault:\n  routes: [GET /v1/vault/accounts_paged]\n"
        try readOnly.write(toFile: path, atomically: true, encoding: .utf8)
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "127.0.0.1:0", "--policy", path,
                                                           "--policy-store", "sqlite:" + cli.files + "/limits.sqlite"] + api, socket: nil)
        let port = try #require(proxy.port)
        func status(_ target: String) throws -> String {
            try Subprocess.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
                                        "http://127.0.0.1:\(port)\(target)"]).standardOutput
        }
        func waitForLog(_ text: String) {
            for _ in 0..<200 where !proxy.output.contains(text) { usleep(50_000) }
        }
        #expect(try status("/v1/vault/accounts_paged") == "200")
        #expect(try status("/v1/supported_assets") == "403")

        // A broken policy: refused, the one in force kept.
        try (readOnly + "  transactionz: []\n").write(toFile: path, atomically: true, encoding: .utf8)
        kill(proxy.process.processIdentifier, SIGHUP)
        waitForLog("policy reload refused")
        #expect(proxy.output.contains("policy reload refused"), "\(proxy.output)")
        #expect(proxy.output.contains("line 4"), "the log names the line: \(proxy.output)")
        #expect(try status("/v1/vault/accounts_paged") == "200")

        // A valid one: in force for the next request.
        try "version: 1\ndefault:\n  routes: [GET /v1/supported_assets]\n".write(toFile: path, atomically: true, encoding: .utf8)
        kill(proxy.process.processIdentifier, SIGHUP)
        waitForLog("policy reloaded")
        #expect(try status("/v1/vault/accounts_paged") == "403")
        #expect(try status("/v1/supported_assets") != "403")
        #expect(proxy.terminate() == 0)

        let audit = cli.directory.path + "/audit"
        let log = try #require(try FileManager.default.contentsOfDirectory(atPath: audit).first { $0.hasSuffix(".jsonl") })
        let events = try String(contentsOfFile: audit + "/" + log, encoding: .utf8).split(separator: "\n")
            .compactMap { (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["event"] as? String }
        #expect(events.contains("proxy.policy-reload-failed") && events.contains("proxy.policy-reloaded"), "\(events)")
    }
}

/// Two `serve` processes sharing one limit through PostgreSQL (a real server the test starts).
@Suite("Command line: two proxies, one limit (PostgreSQL)",
       .enabled(if: ThrowawayPostgres.available, "needs Debian's postgresql package (ci/install-deps); runs always in CI"))
struct CLIProxySharedLimitTests {
    /// Over TLS, as two hosts would share it: the server takes TCP over TLS only, and each
    /// proxy checks its certificate against the test's CA and the name `localhost`.
    @Test func twoProxiesSharingPostgreSQLNeverPassTheLimitTogether() throws {
        let server = try ThrowawayPostgres(tls: true)
        defer { server.stop() }
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let policyPath = cli.files + "/payouts.yaml"
        try CLIProxyPolicyTests.policy.write(toFile: policyPath, atomically: true, encoding: .utf8)
        // The password only in the environment: an address with one is refused, and not repeated.
        let refused = try cli.run(["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--key", "admin",
                                   "--listen", "127.0.0.1:0", "--policy", policyPath,
                                   "--policy-store", "postgres://\(server.user):\(server.password)@127.0.0.1:\(server.port)/postgres"] + api)
        #expect(refused.status == 2 && refused.standardError.contains("PGPASSWORD"), "\(refused.standardError)")
        #expect(!refused.standardError.contains(server.password))
        // A TLS mode that does not check the server's name is refused, naming the one taken.
        let unchecked = try cli.run(["serve", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--key", "admin",
                                     "--listen", "127.0.0.1:0", "--policy", policyPath,
                                     "--policy-store", "postgres://\(server.user)@localhost:\(server.port)/postgres?sslmode=require"] + api,
                                    environment: ["PGPASSWORD": server.password])
        #expect(unchecked.status == 2 && unchecked.standardError.contains("verify-full"), "\(unchecked.standardError)")

        let arguments = ["--key", "admin", "--listen", "127.0.0.1:0", "--policy", policyPath, "--policy-store", server.location] + api
        let first = try ProxyProcess(cli: cli, arguments: arguments, socket: nil, environment: ["PGPASSWORD": server.password])
        let second = try ProxyProcess(cli: cli, arguments: arguments, socket: nil, environment: ["PGPASSWORD": server.password])
        let ports = [try #require(first.port), try #require(second.port)]
        // 24 transactions of 0.001 at once, alternately through each proxy, against 0.015 a day.
        let script = """
            import json, threading, urllib.request, urllib.error
            ports = \(ports)
            statuses = []
            lock = threading.Lock()
            def send(index):
                body = json.dumps({"assetId": "BTC_TEST", "amount": "0.001", "externalTxId": "shared-%d" % index,
                                   "source": {"type": "VAULT_ACCOUNT", "id": "0"},
                                   "destination": {"type": "VAULT_ACCOUNT", "id": "1"}}).encode()
                request = urllib.request.Request("http://127.0.0.1:%d/v1/transactions" % ports[index % 2], data=body,
                                                 headers={"Content-Type": "application/json"}, method="POST")
                try:
                    status = urllib.request.urlopen(request, timeout=60).status
                except urllib.error.HTTPError as error:
                    status = error.code
                with lock:
                    statuses.append(status)
            threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
            for thread in threads: thread.start()
            for thread in threads: thread.join()
            print(json.dumps(statuses))
            """
        let run = try Subprocess.run("python3", ["-c", script], environment: cli.environment(), workingDirectory: cli.files)
        #expect(first.terminate() == 0)
        #expect(second.terminate() == 0)
        #expect(run.status == 0, "\(run.standardError)\n\(first.output)\n\(second.output)")
        let statuses = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [Int])
        #expect(statuses.count == 24)
        #expect(statuses.filter { (200..<300).contains($0) }.count == 15, "exactly 0.015 of 0.024 asked: \(statuses)")
        #expect(statuses.filter { $0 == 403 }.count == 9, "\(statuses)")
        #expect(!first.output.contains(server.password) && !second.output.contains(server.password), "the password is never logged")
    }
}
