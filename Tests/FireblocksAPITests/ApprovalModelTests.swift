import FireblocksAPI
import Foundation
import Testing

/// The Approvals API's models as this client reads them (SDK 35.1.0 shapes).
@Suite("Approvals API models")
struct ApprovalModelTests {
    @Test func aPayloadIsReadWithoutBeingRewritten() throws {
        let text = "{\"requestType\": \"TAG_UPDATE\",\"requestId\":\"r-1\", \"expiresAt\": 4102444800,\n \"requestTimestamp\": 1765000000000, \"requestData\": {\"a\": 1.5, \"b\": 7, \"c\": \"9.99\", \"d\": 100.0000000000000000000000000000000000000001}}"
        let item = try JSONDecoder().decode(ApprovalRequestItem.self, from: Data(try JSONSerialization.data(withJSONObject: [
            "requestPayload": text, "userStatus": "USER_NOT_APPROVED", "quorumStatus": NSNull(),
        ])))
        #expect(item.requestPayload == text, "the text is kept byte for byte")
        let payload = try #require(item.payload)
        #expect(payload.requestId == "r-1" && payload.requestType == "TAG_UPDATE")
        #expect(payload.expiresAt == 4_102_444_800 && payload.requestTimestamp == 1_765_000_000_000)
        #expect(!payload.isExpired(at: Date(timeIntervalSince1970: 4_102_444_799)) && payload.isExpired(at: Date(timeIntervalSince1970: 4_102_444_800)))
        guard case .object(let data)? = payload.requestData else { Issue.record("requestData is an object"); return }
        #expect(data["b"] == .number("7") && data["c"] == .string("9.99") && data["a"] == .number("1.5"))
        // Why numbers are never compared by a policy: the decoder rounds this one to 100.
        #expect(data["d"] == .number("100"))
    }

    @Test(arguments: ["", "[]", "{\"requestType\": \"T\"}", "{\"requestId\": 5, \"requestType\": \"T\"}", "not json"])
    func anUndocumentedPayloadIsNotRead(text: String) {
        #expect(ApprovalPayload(text: text) == nil)
    }

    @Test func algorithmsAndIDsAreChecked() throws {
        #expect(try ApprovalKeyAlgorithm(validating: "ecdsa_secp256r1") == .ECDSA_SECP256R1)
        #expect(throws: APIClientError.self) { try ApprovalKeyAlgorithm(validating: "ES256") }
        for bad in ["", "..", "a/b", "a?b=1", String(repeating: "a", count: 129), "é"] {
            #expect(throws: APIClientError.self) { try FireblocksClient.checkedApprovalID(bad, what: "an id") }
        }
        #expect(try FireblocksClient.checkedApprovalID("5e0c-1_2.3", what: "an id") == "5e0c-1_2.3")
    }
}
