import Foundation
import SoftHSMTestSupport
import Testing

/// `policy check` and `policy test`, through the tool as a user runs it (handed to the
/// companion, which links the YAML parser).
@Suite("Command line: policy check and policy test")
struct CLIPolicyTests {
    static let policy = """
    version: 1
    clients:
      payouts:
        routes: [POST /v1/transactions, GET /v1/transactions/*]
        transactions:
          - name: usdc-payouts
            assets: [USDC]
            maxAmount: "10000"
            window: { period: 24h, maxTotal: "250000" }
            destinationTypes: [EXTERNAL_WALLET]
            externalTxId: required
      legacy:
        routes: [POST /v1/transactions]

    """

    func write(_ text: String, _ name: String, in cli: CLIHarness) throws -> String {
        let path = cli.files + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func checkReportsTheFileAndWarnsOfAClientWithoutTransactionRules() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let path = try write(Self.policy, "payouts.yaml", in: cli)
        let result = try cli.run(["policy", "check", path], module: nil)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("valid: 2 client(s) (legacy, payouts)"), "\(result.standardOutput)")
        #expect(result.standardError.contains("line 12: client 'legacy' may POST /v1/transactions but has no transaction rules"),
                "\(result.standardError)")
        let json = try cli.run(["policy", "check", "--json", path], module: nil)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect(report["valid"] as? Bool == true)
        #expect(report["transactionRules"] as? Int == 1)
        let sha256 = try Subprocess.run("/usr/bin/sha256sum", [path], environment: [:], workingDirectory: cli.files).standardOutput
        #expect(sha256.hasPrefix(try #require(report["sha256"] as? String)), "the SHA-256 is the file's (as sha256sum reads it)")
    }

    @Test func brokenFilesExit2NamingTheLine() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let cases: [(from: String, to: String, line: String, says: String)] = [
            ("    routes: [POST /v1/transactions]\n", "    routes: [POST /v1/transactions\n", "", "not YAML"),
            ("externalTxId: required", "externalTxID: required", ":11:", "'externalTxID' is not a key"),
            ("maxAmount: \"10000\"", "maxAmount: \"-10000\"", ":8:", "negative"),
            ("maxAmount: \"10000\"", "maxAmount: 10000.5", ":8:", "quoted decimal string"),
        ]
        for item in cases {
            let text = Self.policy.replacingOccurrences(of: item.from, with: item.to)
            #expect(text != Self.policy)
            let path = try write(text, "broken.yaml", in: cli)
            let result = try cli.run(["policy", "check", path], module: nil)
            #expect(result.status == 2, "\(item.to): \(result.standardError)")
            #expect(result.standardError.contains("broken.yaml\(item.line)"), "\(item.to): \(result.standardError)")
            #expect(result.standardError.contains(item.says), "\(item.to): \(result.standardError)")
            let json = try cli.run(["policy", "check", "--json", path], module: nil)
            #expect(json.status == 2)
            #expect(json.standardOutput.contains("\"class\" : \"usage\""), "\(json.standardOutput)")
        }
        #expect(try cli.run(["policy", "check", cli.files + "/absent.yaml"], module: nil).status == 3)
    }

    @Test func testPrintsTheVerdictAndTheRule() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let path = try write(Self.policy, "payouts.yaml", in: cli)
        let within = try write(#"{"assetId":"USDC","amount":"9999.99","destination":{"type":"EXTERNAL_WALLET","id":"w1"},"externalTxId":"p-1"}"#,
                               "within.json", in: cli)
        let allowed = try cli.run(["policy", "test", path, "--client", "payouts", "--request", within], module: nil)
        #expect(allowed.status == 0, "\(allowed.standardError)")
        #expect(allowed.standardOutput.hasPrefix("allowed by rule usdc-payouts"), "\(allowed.standardOutput)")

        let over = try write(#"{"assetId":"USDC","amount":"10000.01","destination":{"type":"EXTERNAL_WALLET","id":"w1"},"externalTxId":"p-2"}"#,
                             "over.json", in: cli)
        let denied = try cli.run(["policy", "test", path, "--client", "payouts", "--request", over, "--json"], module: nil)
        #expect(denied.status == 13, "a denial exits 13 (docs/exit-codes.md)")
        let verdict = try #require(try JSONSerialization.jsonObject(with: Data(denied.standardOutput.utf8)) as? [String: Any])
        #expect(verdict["allowed"] as? Bool == false)
        #expect(verdict["rule"] as? String == "usdc-payouts")
        #expect(verdict["check"] as? String == "maxAmount")
        #expect((verdict["facts"] as? [String: Any])?["amount"] as? String == "10000.01")

        let oneTime = try write(#"{"assetId":"USDC","amount":"1","destination":{"type":"ONE_TIME_ADDRESS","oneTimeAddress":{"address":"0x1"}},"externalTxId":"p-3"}"#,
                                "one-time.json", in: cli)
        let refused = try cli.run(["policy", "test", path, "--client", "payouts", "--request", oneTime], module: nil)
        #expect(refused.status == 13)
        #expect(refused.standardOutput.hasPrefix("denied by rule usdc-payouts (destinationType"), "\(refused.standardOutput)")

        let unknown = try cli.run(["policy", "test", path, "--client", "stranger", "--request", within], module: nil)
        #expect(unknown.status == 13 && unknown.standardOutput.contains("denied by rule clients"), "\(unknown.standardOutput)")
        let badTime = try cli.run(["policy", "test", path, "--request", within, "--at", "noon"], module: nil)
        #expect(badTime.status == 2 && badTime.standardError.contains("--at"), "\(badTime.standardError)")
    }
}
