import AuditTrail
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys

/// What `approval-key rotate` reports.
public struct ApprovalKeyRotationReport: Codable, Sendable, Equatable {
    /// The new key's registration.
    public let new: ApprovalKeyCreationReport
    /// The old key's label on the token.
    public let oldLabel: String
    /// The old key's registered id (nil: it was not registered any more, an earlier run deleted it).
    public let oldKeyID: String?
    /// `deleted`, `pending-deletion` (an approval request decides; the key stays active until
    /// then) or `already-deleted`.
    public let oldKey: String
    /// The approval request the old key's deletion waits for (empty when none, or not known).
    public let ccrIdPendingDeletion: String
}

/// One step of a rotation, as it happens (for progress lines).
public enum ApprovalKeyRotationEvent: Sendable {
    /// The new key is registered (or was already).
    case registered(ApprovalKeyCreationReport)
    /// The new key's status, polled.
    case status(String, elapsed: TimeInterval)
    /// The API answered 429 or 5xx (or could not be reached): polling slows down.
    case backingOff(seconds: TimeInterval, reason: String)
}

extension ApprovalOperations {
    /// The two-key overlap: register the new approval key (generated on the token, or taken from
    /// an earlier run), wait until the API lists it ENABLED, then delete the old key's
    /// registration. Each step first reads where things are, so a run stopped anywhere is
    /// resumed by running it again: a key already on the token is not generated twice, a public
    /// key already registered is not sent again, an old key no longer listed is not deleted
    /// again. The old key stays on the token. Recorded as `approval-key.rotated`.
    public static func rotate(token: TokenTarget, api: APITarget, from oldLabel: String, to newLabel: String, choice: ApprovalKeyChoice,
                              name: String?, wait policy: APIUserLifecycle.WaitPolicy, observer: any OperationObserver,
                              onEvent: @escaping @Sendable (ApprovalKeyRotationEvent) -> Void = { _ in }) async throws -> ApprovalKeyRotationReport {
        guard oldLabel != newLabel else { throw OperationError(.invalidInput, "the old and new approval keys must have different labels") }
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let tokenLabel = session.token.token.info.label
        guard let old = try session.token.recordingFailure(of: "approval-key rotate", auditDirectory: api.auditDirectory, {
            try ApprovalOperations.approvalKey(oldLabel, in: session.token.session)
        }) else {
            throw OperationError(.keyNotFound, "no approval key labelled '\(oldLabel)' on token '\(tokenLabel)'")
        }
        let (registration, pair) = try await register(session, api: api, label: newLabel, choice: choice, name: name, observer: observer)
        onEvent(.registered(registration))
        try FaultInjection.point("approval-key-rotate-registered")

        // Step 2: until the new key is ENABLED.
        try await session.recording {
            let started = Date()
            let client = session.client.within(deadline: started.addingTimeInterval(policy.timeout))
            var delay = policy.interval
            var last: String?
            while true {
                do {
                    let (keys, _) = try await client.listApprovalKeys(userID: api.apiKey)
                    delay = policy.interval
                    guard let listed = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == pair.fingerprint }) else {
                        throw OperationError(.keyNotFound, "the new approval key '\(newLabel)' is no longer registered (its registration was rejected?); run the rotation again to register it anew")
                    }
                    if listed.status != last { onEvent(.status(listed.status, elapsed: Date().timeIntervalSince(started))) }
                    last = listed.status
                    if listed.status == "APPROVAL_API_KEY_STATUS_ENABLED" { break }
                } catch let error as FireblocksAPIError where error.status == 429 || error.isServerSide {
                    delay = min(policy.maximumInterval, delay * 2)
                    onEvent(.backingOff(seconds: delay, reason: "HTTP \(error.status) [X-Request-ID: \(error.requestID ?? "none")]"))
                } catch let error as APIClientError where error.code == .network || error.code == .timeout {
                    delay = min(policy.maximumInterval, delay * 2)
                    onEvent(.backingOff(seconds: delay, reason: error.reason))
                }
                let remaining = policy.timeout - Date().timeIntervalSince(started)
                guard remaining > 0 else {
                    throw APIUserLifecycleError(.timeout, "waited \(Int(policy.timeout.rounded())) s for the new approval key '\(newLabel)' to be enabled (it is \(last ?? "not listed")); the old key is still registered: run the rotation again to go on", status: last)
                }
                try await Task.sleep(for: .milliseconds(Int64(min(delay * Double.random(in: 0.8...1.2), remaining) * 1000)))
            }
        }
        try FaultInjection.point("approval-key-rotate-enabled")

        // Step 3: the old key's registration.
        let (oldID, outcome, ccr, requestID): (String?, String, String, String?) = try await session.recording {
            let (keys, _) = try await session.client.listApprovalKeys(userID: api.apiKey)
            guard let listed = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == old.fingerprint }) else {
                return (nil, "already-deleted", "", nil)
            }
            if listed.status == "APPROVAL_API_KEY_STATUS_PENDING_DELETION" { return (listed.id, "pending-deletion", "", nil) }
            let (answer, response) = try await session.client.deleteApprovalKey(userID: api.apiKey, keyID: listed.id)
            return (listed.id, answer.ccrIdPendingDeletion.isEmpty ? "deleted" : "pending-deletion", answer.ccrIdPendingDeletion, response.requestID)
        }
        let report = ApprovalKeyRotationReport(new: registration, oldLabel: oldLabel, oldKeyID: oldID, oldKey: outcome, ccrIdPendingDeletion: ccr)
        try session.audit?.recordDone([AuditEntry(event: "approval-key.rotated", facts: [
            "userId": .string(api.apiKey), "newLabel": .string(newLabel), "newKeyId": .string(String(registration.keyID.prefix(128))),
            "newSpkiSHA256": .string(pair.fingerprint), "oldLabel": .string(oldLabel), "oldKeyId": .string(String((oldID ?? "").prefix(128))),
            "oldSpkiSHA256": .string(old.fingerprint), "oldKey": .string(outcome), "ccrIdPendingDeletion": .string(String(ccr.prefix(128))),
            "xRequestID": .string(requestID ?? ""),
        ])], done: "approval key '\(oldLabel)' was rotated to '\(newLabel)'")
        return report
    }
}
