import Foundation
import Testing
import TransactionPolicy

/// docs/policy.md and docs/policy.schema.json say what the parser does.
@Suite struct PolicyDocumentationTests {
    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs")

    @Test func theWorkedExampleIsAValidPolicy() throws {
        let text = try String(contentsOf: Self.docs.appendingPathComponent("policy.md"), encoding: .utf8)
        let start = try #require(text.range(of: "```yaml\n"))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        let policy = try Policy(yaml: String(text[start.upperBound..<end.lowerBound]))
        #expect(policy.client(named: "payouts")?.transactions?.map(\.name) == ["usdc-payouts", "eth-gas"])
        #expect(policy.client(named: "reporting")?.transactions == nil)
        #expect(policy.client(named: nil) != nil)
    }

    @Test func theSchemaNamesTheKeysTheParserReads() throws {
        let data = try Data(contentsOf: Self.docs.appendingPathComponent("policy.schema.json"))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let definitions = try #require(schema["$defs"] as? [String: Any])
        let rule = try #require((definitions["transactionRule"] as? [String: Any])?["properties"] as? [String: Any])
        #expect(Set(rule.keys) == ["name", "assets", "operations", "maxAmount", "window", "sourceVaultAccounts", "destinationTypes",
                                   "destinationIds", "externalTxId", "note", "hoursUTC"])
        // Each key the schema names is one the parser accepts: a rule with all of them parses.
        _ = try Policy(yaml: """
        version: 1
        default:
          routes: [POST /v1/transactions]
          transactions:
            - name: all
              assets: [BTC]
              operations: [TRANSFER]
              maxAmount: "1"
              window: { period: 7d, maxTotal: "2" }
              sourceVaultAccounts: ["0"]
              destinationTypes: [ONE_TIME_ADDRESS]
              destinationIds: ["x"]
              externalTxId: optional
              note: { required: false, pattern: "[a-z]*" }
              hoursUTC: [{ from: "00:00", to: "24:00" }]
        """)
    }
}
