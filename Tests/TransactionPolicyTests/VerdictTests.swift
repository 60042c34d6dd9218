import Foundation
import ProxySettings
import Testing
import TransactionPolicy

/// Verdicts: each denial names the rule and the check; what cannot be evaluated is denied.
@Suite struct VerdictTests {
    let policy: Policy
    /// Wednesday 2026-12-02 12:00:00 UTC.
    static let wednesdayNoon: Int64 = 1_796_212_800
    /// Saturday 2026-12-05 12:00:00 UTC.
    static let saturdayNoon: Int64 = 1_796_472_000

    init() throws { policy = try Policy(yaml: PolicyParsingTests.payouts) }

    static func body(_ changes: [String: Any?] = [:]) -> [UInt8] {
        var fields: [String: Any] = [
            "assetId": "USDC",
            "amount": "2500.75",
            "source": ["type": "VAULT_ACCOUNT", "id": "3"],
            "destination": ["type": "EXTERNAL_WALLET", "id": "wallet-9"],
            "externalTxId": "payout-2026-0001",
            "note": "payout-17",
        ]
        for (key, value) in changes { fields[key] = value }
        return Array(try! JSONSerialization.data(withJSONObject: fields))
    }

    func verdict(_ body: [UInt8], client: String? = "payouts", method: String = "POST", target: String = "/v1/transactions",
                 at seconds: Int64 = wednesdayNoon) throws -> Verdict {
        let request = try #require(PolicyRequest(method: method, target: target, client: client, body: body, secondsSince1970: seconds))
        return policy.evaluate(request)
    }

    @Test func aPayoutWithinPolicyIsAllowedWithItsReservation() throws {
        let verdict = try verdict(Self.body())
        #expect(verdict.allowed, "\(verdict)")
        #expect(verdict.rule == "usdc-payouts")
        #expect(verdict.reservation?.amount == ExactDecimal("2500.75"))
        #expect(verdict.reservation?.window.seconds == 86_400)
        #expect(verdict.reservation?.assetId == "USDC")
        #expect(verdict.facts?.destinationId == "wallet-9")
    }

    /// What a client chooses (an asset, an id, an operation) is shown bounded in the denial and
    /// in the facts the proxy records: a body of a megabyte cannot make a record of one.
    @Test(arguments: [["assetId"], ["destination"], ["operation"], ["source"]])
    func aHugeValueIsShownBounded(field: [String]) throws {
        let huge = String(repeating: "A", count: 200_000)
        let change: [String: Any?] = switch field[0] {
        case "destination": ["destination": ["type": "EXTERNAL_WALLET", "id": huge]]
        case "source": ["source": ["type": "VAULT_ACCOUNT", "id": huge]]
        default: [field[0]: huge]
        }
        // Denied or (a destination no rule restricts) allowed: either way bounded.
        let verdict = try verdict(Self.body(change))
        #expect(verdict.allowed == (field[0] == "destination"))
        #expect(verdict.reason.count < 400, "\(verdict.reason.prefix(200))")
        let facts = try #require(verdict.facts)
        let recorded = try JSONEncoder().encode(facts)
        #expect(recorded.count < 1_000, "\(recorded.count) bytes of facts")
    }

    @Test func eachConditionDeniesNamingTheRuleAndCheck() throws {
        let cases: [(changes: [String: Any?], rule: String, check: String)] = [
            (["amount": "10000.01"], "usdc-payouts", "maxAmount"),
            (["assetId": "BTC"], "transactions", "asset"),
            (["destination": ["type": "ONE_TIME_ADDRESS", "oneTimeAddress": ["address": "0xabc"]]], "usdc-payouts", "destinationType"),
            (["externalTxId": nil], "usdc-payouts", "externalTxId"),
            (["note": nil], "usdc-payouts", "note"),
            (["note": "refund-17"], "usdc-payouts", "note"),
            (["source": ["type": "VAULT_ACCOUNT", "id": "0"]], "usdc-payouts", "source"),
            (["operation": "RAW"], "usdc-payouts", "operation"),
            (["amount": 2500.75], "transactions", "body"),
            (["amount": "2,500"], "transactions", "body"),
            (["amount": "-1"], "transactions", "body"),
            (["amount": nil], "usdc-payouts", "maxAmount"),
            (["assetId": "ETH", "amount": "0.01", "destination": ["type": "VAULT_ACCOUNT", "id": "4"]], "eth-gas", "destinationId"),
            (["amountt": "1"], "transactions", "body"),
            (["destinations": [["amount": "1", "destination": ["type": "VAULT_ACCOUNT", "id": "3"]]]], "transactions", "body"),
            (["destination": ["type": "EXTERNAL_WALLET", "id": 9]], "transactions", "body"),
            (["destination": ["type": "EXTERNAL_WALLET", "id": "w", "oneTimeAddress": ["address": "0x1"]]], "transactions", "body"),
        ]
        for item in cases {
            var changes = item.changes
            for (key, value) in item.changes where value == nil { changes[key] = NSNull() }
            let body = Self.body(changes).filter { _ in true }
            let cleaned = try Self.withoutNulls(body)
            let verdict = try verdict(cleaned)
            #expect(!verdict.allowed, "\(item.changes): \(verdict)")
            #expect(verdict.rule == item.rule, "\(item.changes): \(verdict)")
            #expect(verdict.check == item.check, "\(item.changes): \(verdict)")
            #expect(verdict.reservation == nil)
        }
    }

    /// The body with `null` members removed (an absent field, as SDKs send it).
    static func withoutNulls(_ body: [UInt8]) throws -> [UInt8] {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
        for (key, value) in object where value is NSNull { object.removeValue(forKey: key) }
        return Array(try JSONSerialization.data(withJSONObject: object))
    }

    @Test func outsideTheUTCHoursIsDenied() throws {
        let verdict = try verdict(Self.body(), at: Self.saturdayNoon)
        #expect(!verdict.allowed)
        #expect(verdict.check == "hours")
        #expect(try self.verdict(Self.body(), at: Self.wednesdayNoon + 7 * 3600).check == "hours", "19:00 is after 18:00")
    }

    @Test func aBodyThatIsNotJSONIsDenied() throws {
        for body in [Array("".utf8), Array("not json".utf8), Array("[1]".utf8), Array("{\"amount\":".utf8)] {
            let verdict = try verdict(body)
            #expect(!verdict.allowed)
            #expect(verdict.check == "body")
        }
    }

    /// Each member the rules read, in every JSON shape that is not its own, is denied as a body
    /// that cannot be evaluated, naming the member; `null` is read as absent; members the rules
    /// do not read may have any shape.
    @Test func everyShapeOfAReadMemberIsToldApart() throws {
        let good = #"{"assetId":"USDC","amount":"2500.75","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"wallet-9"},"externalTxId":"payout-2026-0001","note":"payout-17"}"#
        #expect(try verdict(Array(good.utf8)).allowed)
        func replacing(_ member: String, with value: String, in text: String = good) throws -> [UInt8] {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            object[member] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
            return Array(try JSONSerialization.data(withJSONObject: object))
        }
        let wrongShapes = ["true", "12", "[\"USDC\"]", #"{"a":"USDC"}"#]
        for member in ["assetId", "externalTxId", "note", "operation", "amount"] {
            for shape in wrongShapes {
                let verdict = try verdict(try replacing(member, with: shape))
                #expect(!verdict.allowed && verdict.check == "body", "\(member): \(shape): \(verdict)")
                #expect(verdict.reason.contains(member), "\(member): \(shape): \(verdict.reason)")
            }
        }
        for member in ["source", "destination"] {
            for shape in ["true", "12", #""VAULT_ACCOUNT""#, #"[{"type":"VAULT_ACCOUNT","id":"3"}]"#] {
                let verdict = try verdict(try replacing(member, with: shape))
                #expect(!verdict.allowed && verdict.check == "body", "\(member): \(shape): \(verdict)")
                #expect(verdict.reason.contains("\(member) is not an object"), "\(member): \(shape): \(verdict.reason)")
            }
            for shape in wrongShapes {
                for field in ["type", "id"] {
                    var peer: [String: Any] = ["type": "EXTERNAL_WALLET", "id": "wallet-9"]
                    peer[field] = try JSONSerialization.jsonObject(with: Data(shape.utf8), options: .fragmentsAllowed)
                    let text = String(decoding: try JSONSerialization.data(withJSONObject: peer), as: UTF8.self)
                    let verdict = try verdict(try replacing(member, with: text))
                    #expect(!verdict.allowed && verdict.check == "body", "\(member).\(field): \(shape): \(verdict)")
                    #expect(verdict.reason.contains("\(member).\(field)"), "\(member).\(field): \(shape): \(verdict.reason)")
                }
            }
        }
        // null is absent: no destinations, no one-time address, no operation (a TRANSFER).
        for (member, value) in [("destinations", "null"), ("operation", "null"), ("feeLevel", #"{"any":["shape",1,true]}"#)] {
            let verdict = try verdict(try replacing(member, with: value))
            #expect(verdict.allowed, "\(member): \(value): \(verdict)")
        }
        let nullAddress = try replacing("destination", with: #"{"type":"EXTERNAL_WALLET","id":"wallet-9","oneTimeAddress":null}"#)
        #expect(try verdict(nullAddress).allowed, "a null oneTimeAddress is none")
        let noAmount = try verdict(try replacing("amount", with: "null"))
        #expect(noAmount.check == "maxAmount", "a null amount is no amount: \(noAmount)")
    }

    /// The proxy forwards the whole body, so the whole body is checked, not only the members the
    /// rules read: a value that is not JSON anywhere in it (an escape, a number, a control
    /// character, a lone surrogate, bytes that are not UTF-8, another encoding) is denied.
    @Test func aBodyThatIsNotStrictJSONAnywhereIsDenied() throws {
        let good = #"{"assetId":"USDC","amount":"2500.75","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"wallet-9"},"externalTxId":"payout-2026-0001","note":"payout-17""#
        #expect(try verdict(Array((good + "}").utf8)).allowed)
        let unreadMembers = [
            #","gasLimit":1.2.3"#, #","gasLimit":01"#, #","gasLimit":1e"#, #","gasLimit":-"#, #","customerRefId":"\q""#,
            #","feeLevel":"\uD800""#, ",\"customerRefId\":\"a\nb\"", #","extraParameters":{"x":"\u00g0"}"#,
            #","extraParameters":[1,tru]"#,
        ]
        for member in unreadMembers {
            let verdict = try verdict(Array((good + member + "}").utf8))
            #expect(!verdict.allowed && verdict.check == "body", "\(member.debugDescription): \(verdict)")
        }
        // An escape the duplicate scan would misread, hiding a second amount behind it.
        let hiding = Array(#"{"customerRefId":"\u000\","assetId":"USDC","amount":"1","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"wallet-9"},"externalTxId":"x","note":"payout-1","amount":"999999"}"#.utf8)
        #expect(try verdict(hiding).check == "body")
        // Not UTF-8: a byte that is not, UTF-16 (JSONSerialization would read it), a byte-order mark.
        let latin1 = Array(#"{"note":"payout-1","customerRefId":""#.utf8) + [0xE9] + Array(#"","assetId":"USDC"}"#.utf8)
        #expect(try verdict(latin1).check == "body")
        let utf16 = Array((good + "}").data(using: .utf16LittleEndian) ?? Data())
        #expect(!utf16.isEmpty)
        #expect(try verdict(utf16).check == "body")
        #expect(try verdict([0xEF, 0xBB, 0xBF] + Array((good + "}").utf8)).check == "body")
    }

    @Test func aDuplicatedFieldIsNotReadTwoWays() throws {
        // Read one way by the policy, another by the server: refused, or read as the larger.
        let body = Array(#"{"assetId":"USDC","amount":"1","amount":"999999","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"w"},"externalTxId":"x","note":"payout-1"}"#.utf8)
        let verdict = try verdict(body)
        #expect(!verdict.allowed, "\(verdict)")
        #expect(verdict.check == "body")
        let escaped = Array(#"{"assetId":"USDC","amount":"1","amo\u0075nt":"999999"}"#.utf8)
        #expect(try self.verdict(escaped).check == "body", "the same name, escaped")
        let nested = Array(#"{"assetId":"USDC","source":{"type":"VAULT_ACCOUNT","id":"3","id":"4"}}"#.utf8)
        #expect(try self.verdict(nested).check == "body", "in a nested object")
        let apart = try self.verdict(Array(#"{"note":"payout-1","assetId":"USDC","amount":"1","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"3"},"externalTxId":"[{\"id\":1}]"}"#.utf8))
        #expect(apart.allowed, "the same name in two objects, and braces in a string, are no duplicate: \(apart)")
    }

    @Test func routesAndClients() throws {
        #expect(try verdict([], method: "GET", target: "/v1/transactions/abc").allowed)
        #expect(try verdict([], method: "GET", target: "/v1/transactions/abc").rule == "routes")
        #expect(try verdict([], method: "DELETE", target: "/v1/transactions/abc").check == "route")
        #expect(try verdict([], client: nil, method: "GET", target: "/v1/vault/accounts_paged?limit=5").allowed)
        #expect(try verdict(Self.body(), client: nil).check == "route", "the default may not create transactions")
        #expect(try verdict(Self.body(), client: "stranger").check == "client")
        #expect(PolicyRequest(method: "GET", target: "/v1/../admin", client: nil, body: [], secondsSince1970: 0) == nil)
    }

    @Test func allowRulesAreAOneRulePolicyForEveryClient() throws {
        let policy = Policy(allowing: [try AllowRule(parsing: "POST /v1/transactions")])
        let request = try #require(PolicyRequest(method: "POST", target: "/v1/transactions", client: "anyone", body: Array("{}".utf8), secondsSince1970: 0))
        #expect(policy.evaluate(request).allowed, "allow rules read no body, as before")
        let other = try #require(PolicyRequest(method: "GET", target: "/v1/transactions", client: nil, body: [], secondsSince1970: 0))
        #expect(policy.evaluate(other).check == "route")
    }

    @Test func utcDaysAreRight() {
        let weekdays = TimeWindow(days: [2], fromMinute: 0, toMinute: 1440)
        #expect(weekdays.contains(secondsSince1970: Self.wednesdayNoon))
        #expect(!weekdays.contains(secondsSince1970: Self.saturdayNoon))
        #expect(TimeWindow(days: [3], fromMinute: 0, toMinute: 1).contains(secondsSince1970: 0), "1970-01-01T00:00Z was a Thursday")
    }
}
