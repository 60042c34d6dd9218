import Foundation
import Testing
import TransactionPolicy

/// The policy language: what it accepts, and that what it refuses names the line.
@Suite struct PolicyParsingTests {
    static let payouts = """
    version: 1
    clients:
      payouts:
        routes:
          - GET /v1/vault/accounts_paged
          - POST /v1/transactions
          - GET /v1/transactions/*
        transactions:
          - name: usdc-payouts
            assets: [USDC, USDC_ETH]
            maxAmount: "10000"
            window: { period: 24h, maxTotal: "250000.50" }
            sourceVaultAccounts: ["3"]
            destinationTypes: [EXTERNAL_WALLET, VAULT_ACCOUNT]
            externalTxId: required
            note: { required: true, pattern: "payout-[0-9]+" }
            hoursUTC:
              - { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:00" }
          - name: eth-gas
            assets: [ETH]
            maxAmount: "0.05"
            destinationTypes: [VAULT_ACCOUNT]
            destinationIds: ["3", "7"]
    default:
      routes: [GET /v1/vault/accounts_paged]

    """

    @Test func readsAPayoutsPolicy() throws {
        let policy = try Policy(yaml: Self.payouts)
        let payouts = try #require(policy.client(named: "payouts"))
        #expect(payouts.routes.map(\.description) == ["GET /v1/vault/accounts_paged", "POST /v1/transactions", "GET /v1/transactions/*"])
        let rules = try #require(payouts.transactions)
        #expect(rules.map(\.name) == ["usdc-payouts", "eth-gas"])
        #expect(rules[0].maximumAmount == ExactDecimal("10000"))
        #expect(rules[0].window == RollingWindow(seconds: 86_400, maximumTotal: ExactDecimal("250000.5")!))
        #expect(rules[0].sourceVaultAccounts == ["3"])
        #expect(rules[0].requiresExternalTxId)
        #expect(rules[0].hours == [TimeWindow(days: [0, 1, 2, 3, 4], fromMinute: 480, toMinute: 1080)])
        #expect(rules[0].line == 9)
        #expect(rules[1].operations == ["TRANSFER"])
        #expect(rules[1].destinationIds == ["3", "7"])
        #expect(policy.client(named: nil)?.routes.count == 1)
        #expect(policy.client(named: "someone-else") == nil, "an unlisted client gets nothing, not the default")
    }

    /// The error's line, or a failure naming what was parsed without one.
    func failure(_ yaml: String) -> PolicyError? {
        do {
            _ = try Policy(yaml: yaml)
            return nil
        } catch {
            return error
        }
    }

    @Test func badYAMLNamesTheLine() throws {
        let error = try #require(failure("version: 1\nclients:\n  payouts:\n    routes: [GET /v1/x\n  other: {\n"))
        #expect(error.code == .syntax)
        #expect(error.line != nil && error.line! >= 4, "\(error)")
    }

    @Test func anUnknownKeyIsRefusedAtItsLine() throws {
        let yaml = Self.payouts.replacingOccurrences(of: "        externalTxId: required", with: "        externalTxID: required")
        let error = try #require(failure(yaml))
        #expect(error.code == .unknownKey)
        #expect(error.line == 15)
        #expect(error.reason.contains("externalTxID"))
    }

    @Test func aNegativeAmountIsRefusedAtItsLine() throws {
        for written in ["\"-5\"", "-5"] {
            let yaml = Self.payouts.replacingOccurrences(of: "maxAmount: \"10000\"", with: "maxAmount: \(written)")
            let error = try #require(failure(yaml))
            #expect(error.code == .invalidValue)
            #expect(error.line == 11)
            #expect(error.reason.contains("negative"), "\(error)")
        }
    }

    @Test func aFloatAmountIsRefusedAtItsLine() throws {
        let yaml = Self.payouts.replacingOccurrences(of: "maxAmount: \"0.05\"", with: "maxAmount: 0.05")
        let error = try #require(failure(yaml))
        #expect(error.code == .invalidValue)
        #expect(error.line == 21)
        #expect(error.reason.contains("quoted decimal string"), "\(error)")
    }

    @Test func otherMistakesNameTheirLines() throws {
        let cases: [(from: String, to: String, code: PolicyError.Code, line: Int)] = [
            ("maxAmount: \"10000\"", "maxAmount: \"1e4\"", .invalidValue, 11),
            ("destinationTypes: [EXTERNAL_WALLET, VAULT_ACCOUNT]", "destinationTypes: [EXTERNAL_WALLET, VAULT]", .invalidValue, 14),
            ("period: 24h", "period: 24 hours", .invalidValue, 12),
            ("from: \"08:00\"", "from: \"19:00\"", .invalidValue, 18),
            ("pattern: \"payout-[0-9]+\"", "pattern: \"payout-([0-9]+\"", .invalidValue, 16),
            ("      - POST /v1/transactions", "      - POST v1/transactions", .invalidValue, 6),
            ("version: 1", "version: 2", .invalidValue, 1),
            ("      - name: eth-gas", "      - name: usdc-payouts", .duplicateKey, 19),
            ("        assets: [ETH]", "        assets: []", .invalidValue, 20),
        ]
        for item in cases {
            let yaml = Self.payouts.replacingOccurrences(of: item.from, with: item.to)
            #expect(yaml != Self.payouts, "the case \(item.from) changed nothing")
            let error = failure(yaml)
            #expect(error?.code == item.code, "\(item.to): \(String(describing: error))")
            #expect(error?.line == item.line, "\(item.to): \(String(describing: error))")
        }
    }

    @Test func aDuplicatedKeyIsRefused() throws {
        let error = try #require(failure("version: 1\ndefault:\n  routes: [GET /v1/x]\n  routes: [POST /v1/x]\n"))
        #expect(error.code == .duplicateKey)
    }

    @Test func aMissingKeyIsRefused() throws {
        let error = try #require(failure("version: 1\nclients:\n  payouts:\n    transactions: []\n"))
        #expect(error.code == .missingKey)
        #expect(error.line == 4)
        #expect(failure("")?.code == .missingKey)
        #expect(failure("version: 1\n")?.code == .missingKey)
    }
}

/// Exact decimal amounts: no floating point, no rounding.
@Suite struct ExactDecimalTests {
    @Test func parsesOnlyPlainDecimals() {
        for text in ["0", "1", "10.5", "0.000001", "007.500", "99999999999999999999.123456789012345678"] {
            #expect(ExactDecimal(text) != nil, "\(text)")
        }
        for text in ["", "-1", "+1", "1e3", ".5", "5.", "1,000", " 1", "1..2", "0x10", "١"] {
            #expect(ExactDecimal(text) == nil, "\(text)")
        }
        #expect(ExactDecimal(String(repeating: "9", count: 41)) == nil)
    }

    @Test func comparesAndAddsExactly() throws {
        let tenth = try #require(ExactDecimal("0.1"))
        let fifth = try #require(ExactDecimal("0.2"))
        #expect(tenth + fifth == ExactDecimal("0.3"), "0.1 + 0.2 is 0.3 exactly")
        #expect(ExactDecimal("007.500") == ExactDecimal("7.5"))
        #expect(ExactDecimal("7.5")!.description == "7.5")
        #expect(ExactDecimal("0.050")!.description == "0.05")
        #expect(ExactDecimal("0")! == .zero)
        #expect(ExactDecimal("10")! > ExactDecimal("9.999999999999999999")!)
        #expect(ExactDecimal("100.01")! > ExactDecimal("100.001")!)
        #expect(!(ExactDecimal("5")! < ExactDecimal("5.000")!))
        #expect((ExactDecimal("99.99")! + ExactDecimal("0.01")!).description == "100")
        #expect((ExactDecimal("0.001")! + .zero).description == "0.001")
        #expect(ExactDecimal.subtracting(ExactDecimal("0.01")!, from: ExactDecimal("100")!) == ExactDecimal("99.99"))
        #expect(ExactDecimal.subtracting(ExactDecimal("7.5")!, from: ExactDecimal("7.50")!) == .zero)
        #expect(ExactDecimal.subtracting(ExactDecimal("7.51")!, from: ExactDecimal("7.5")!) == nil)
        #expect(ExactDecimal.subtracting(ExactDecimal("0.3")!, from: ExactDecimal("1000.2")!)?.description == "999.9")
    }
}
