import Foundation
import Testing
import TransactionPolicy

/// The approval policy of `approvals watch`: rules in order, request types, conditions on
/// fields of requestData with exact decimals, and what the reader refuses.
@Suite struct ApprovalPolicyTests {
    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs")

    /// The example in docs/approvals.md, evaluated.
    static func documented() throws -> ApprovalPolicy {
        let text = try String(contentsOf: docs.appendingPathComponent("approvals.md"), encoding: .utf8)
        let start = try #require(text.range(of: "```yaml\n"))
        let end = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
        return try ApprovalPolicy(yaml: String(text[start.upperBound..<end.lowerBound]))
    }

    @Test func theDocumentedExampleDecidesAsItSays() throws {
        let policy = try Self.documented()
        let small: ApprovalPolicy.Value = .object(["name": .string("hot"), "amount": .string("100")])
        #expect(policy.evaluate(requestType: "TAG_UPDATE", requestData: small).decision == .approve)
        // One atom over the limit: an exact decimal, not a floating-point one.
        let over: ApprovalPolicy.Value = .object(["name": .string("hot"), "amount": .string("100.000000000000000001")])
        #expect(policy.evaluate(requestType: "TAG_UPDATE", requestData: over).decision == .skip)
        #expect(policy.evaluate(requestType: "TAG_UPDATE", requestData: .object(["name": .string("warm"), "amount": .number("1")])).rule == "default")
        let delete = policy.evaluate(requestType: "TAG_DELETE", requestData: nil)
        #expect(delete.decision == .reject && delete.rule == "no-tag-deletions" && !delete.reason.isEmpty)
        let other = policy.evaluate(requestType: "SOMETHING_ELSE", requestData: nil)
        #expect(other.decision == .skip && other.rule == "default")
    }

    @Test func conditionsReadNestedFieldsAndPatterns() throws {
        let policy = try ApprovalPolicy(yaml: """
            version: 1
            rules:
              - name: nested
                requestTypes: [T]
                when:
                  - { field: transfer.amount, min: "1", max: "2.5" }
                  - { field: transfer.note, pattern: "ok-[0-9]+" }
                decision: approve
            """)
        func verdict(_ amount: ApprovalPolicy.Value, _ note: String) -> ApprovalPolicy.Decision {
            policy.evaluate(requestType: "T", requestData: .object(["transfer": .object(["amount": amount, "note": .string(note)])])).decision
        }
        #expect(verdict(.number("2.5"), "ok-1") == .approve)
        #expect(verdict(.number("2.51"), "ok-1") == .skip)
        #expect(verdict(.number("0.999"), "ok-1") == .skip)
        #expect(verdict(.string("not a number"), "ok-1") == .skip)
        #expect(verdict(.number("2"), "ok-1 and more") == .skip, "the pattern matches the whole text")
        #expect(policy.evaluate(requestType: "T", requestData: nil).decision == .skip, "a missing field matches nothing")
    }

    @Test(arguments: [
        ("version: 1\nrules:\n  - { name: a, requestTypes: [T], decision: approve, colour: red }\n", "colour", 3),
        ("version: 1\nrules:\n  - { name: a, decision: approve }\n", "requestTypes", 3),
        ("version: 1\nrules:\n  - { name: a, requestTypes: [T], decision: reject }\n", "reason", 3),
        ("version: 1\nrules: []\ndefault: approve\n", "default", 3),
        ("version: 1\nrules:\n  - { name: a, requestTypes: [T], decision: approve, when: [{ field: x, max: 5 }] }\n", "max", 3),
        ("version: 1\nrules:\n  - { name: a, requestTypes: [T], decision: maybe }\n", "approve, reject or skip", 3),
    ])
    func whatTheReaderRefusesNamesTheLine(text: String, mentioning: String, line: Int) {
        do {
            _ = try ApprovalPolicy(yaml: text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.reason.contains(mentioning), "\(error.reason)")
            #expect(error.line == line, "\(error.reason) at \(error.line ?? -1)")
        }
    }
}
