import FireblocksAPI
import Foundation
import JOSE

// The Approvals API routes (early availability; shapes of the official Python SDK 35.1.0):
// approval keys of the caller's own API user, the approval requests it may act on, and approving
// (signature over the exact `requestPayload`) or rejecting them, with quorum counting.

extension SandboxService {
    /// Roles the SDK documents as allowed to register keys and approve or reject.
    static func mayApprove(_ role: APIUserRole) -> Bool {
        [.OWNER, .ADMIN, .NON_SIGNING_ADMIN, .APPROVER, .SIGNER, .SECURITY_ADMIN].contains(role)
    }

    static func query(of request: SandboxRequest) -> [String: String] {
        var query: [String: String] = [:]
        if let rawQuery = request.target.split(separator: "?", maxSplits: 1).dropFirst().first {
            for pair in rawQuery.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
                guard let name = parts.first, !name.isEmpty else { continue }
                query[name] = parts.count > 1 ? parts[1] : ""
            }
        }
        return query
    }

    /// Routes of the Approvals API; nil when the request is none of them.
    func routeApprovals(_ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                        requestID: String, now: Date) -> SandboxReply? {
        let path = request.path.split(separator: "/").map(String.init)
        switch (request.method, path) {
        case ("POST", let p) where p.count == 5 && p[0] == "v1" && p[1] == "management" && p[2] == "api_users" && p[4] == "approval_keys":
            return registerApprovalKey(userID: p[3], request, caller: caller, state: &state, requestID: requestID, now: now)
        case ("GET", let p) where p.count == 5 && p[0] == "v1" && p[1] == "management" && p[2] == "api_users" && p[4] == "approval_keys":
            return listApprovalKeys(userID: p[3], request, caller: caller, state: state, requestID: requestID, now: now)
        case ("DELETE", let p) where p.count == 6 && p[0] == "v1" && p[1] == "management" && p[2] == "api_users" && p[4] == "approval_keys":
            return deleteApprovalKey(userID: p[3], keyID: p[5], caller: caller, state: &state, requestID: requestID, now: now)
        case ("GET", ["v1", "approvals"]):
            return listApprovals(request, caller: caller, state: state, requestID: requestID, now: now)
        case ("GET", let p) where p.count == 3 && p[0] == "v1" && p[1] == "approvals":
            return approval(id: p[2], request, caller: caller, state: state, requestID: requestID, now: now)
        case ("POST", let p) where p.count == 4 && p[0] == "v1" && p[1] == "approvals" && (p[3] == "approve" || p[3] == "reject"):
            return act(on: p[2], approve: p[3] == "approve", request, caller: caller, state: &state, requestID: requestID, now: now)
        default:
            return nil
        }
    }

    // MARK: Idempotency

    /// The first answer to this Idempotency-Key again, or a refusal when the key was used for
    /// another request; nil when the key is new (or absent).
    private func replay(_ request: SandboxRequest, fingerprint: String, caller: TrustedAPIUser, state: SandboxState,
                        requestID: String, now: Date) -> SandboxReply? {
        guard let key = request.headers["idempotency-key"],
              let earlier = state.idempotency.first(where: { $0.key == key && $0.apiKey == caller.apiKey }) else { return nil }
        guard earlier.bodySHA256 == fingerprint else {
            return Self.errorResponse(400, "VALIDATION", "Idempotency-Key \(key) was already used for another request", requestID: requestID, now: now)
        }
        let type: [(String, String)] = earlier.body.isEmpty ? [] : [("Content-Type", "application/json")]
        return .respond(status: earlier.status, headers: Self.baseHeaders(requestID: earlier.requestID, now: now) + type + [("Idempotent-Replay", "true")],
                        body: Array(earlier.body.utf8))
    }

    private func remember(_ request: SandboxRequest, fingerprint: String, caller: TrustedAPIUser, status: Int, body: [UInt8],
                          state: inout SandboxState, requestID: String, now: Date) {
        guard let key = request.headers["idempotency-key"] else { return }
        state.remember(SandboxState.IdempotentAnswer(key: key, apiKey: caller.apiKey, bodySHA256: fingerprint, status: status,
                                                     body: String(decoding: body, as: UTF8.self), requestID: requestID, createdAt: now),
                       limit: configuration.limits.idempotencyAnswers, now: now)
    }

    private static func jsonBody(_ object: [String: Any]) -> [UInt8] {
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }

    // MARK: Approval keys

    private func registerApprovalKey(userID: String, _ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                                     requestID: String, now: Date) -> SandboxReply {
        guard userID == caller.apiKey else {
            return Self.errorResponse(403, "AUTHORIZATION", "Approval keys are registered only for the caller's own API user", requestID: requestID, now: now)
        }
        guard Self.mayApprove(caller.role) else {
            return Self.errorResponse(403, "AUTHORIZATION", "Role \(caller.role.rawValue) may not register approval keys", requestID: requestID, now: now)
        }
        let fingerprint = RequestClaims.bodyHash(Array("POST \(request.path) ".utf8) + request.body)
        if let replayed = replay(request, fingerprint: fingerprint, caller: caller, state: state, requestID: requestID, now: now) { return replayed }
        guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let name = object["name"] as? String, !name.isEmpty, name.count <= 256,
              let publicKey = object["approvalApiPublicKey"] as? [String: Any],
              let algorithm = publicKey["algorithm"] as? String, let pem = publicKey["publicKeyPem"] as? String else {
            return Self.errorResponse(400, "VALIDATION", "Body must be RegisterApprovalApiKeyRequest: {name, approvalApiPublicKey: {algorithm, publicKeyPem}}",
                                      requestID: requestID, now: now)
        }
        if let problem = ApprovalSignatureCheck.problem(algorithm: algorithm, publicKeyPem: pem) {
            return Self.errorResponse(400, "VALIDATION", problem, requestID: requestID, now: now)
        }
        let mine = state.keys.filter { $0.userId == caller.apiKey }
        guard mine.count < 2 else {
            return Self.errorResponse(400, "VALIDATION", "An API user has at most 2 approval keys; delete one first", requestID: requestID, now: now)
        }
        guard !mine.contains(where: { $0.publicKeyPem.filter { !$0.isWhitespace } == pem.filter { !$0.isWhitespace } }) else {
            return Self.errorResponse(409, "CONFLICT", "This public key is already registered for the API user", requestID: requestID, now: now)
        }
        let keyID = UUID().uuidString.lowercased()
        var ccr = ""
        if !configuration.approvalKeysActiveAtOnce {
            let data = Self.jsonBody(["userId": caller.apiKey, "keyId": keyID, "name": name, "algorithm": algorithm])
            guard let record = state.addApproval(type: "APPROVAL_KEY_REGISTRATION", requestDataJSON: String(decoding: data, as: UTF8.self), now: now,
                                                 lifetime: configuration.approvalRequestLifetime, threshold: 1, notEligible: [caller.apiKey],
                                                 keyID: keyID, keyAction: "register", limit: configuration.limits.approvals) else {
                return Self.errorResponse(429, "RATE_LIMIT", "The stand-in keeps at most \(configuration.limits.approvals) approval requests and all are open",
                                          requestID: requestID, now: now, extraHeaders: [("Retry-After", "60")])
            }
            ccr = record.id
        }
        var keys = state.approvalKeys ?? []
        keys.append(SandboxState.ApprovalKeyRecord(
            id: keyID, name: name, userId: caller.apiKey, algorithm: algorithm, publicKeyPem: pem, createdAt: now, lastUsedAt: nil,
            status: ccr.isEmpty ? "APPROVAL_API_KEY_STATUS_ENABLED" : "APPROVAL_API_KEY_STATUS_PENDING_REGISTRATION",
            pendingRequestID: ccr.isEmpty ? nil : ccr))
        state.approvalKeys = keys
        let body = Self.jsonBody(["keyId": keyID, "ccrIdPendingRegistration": ccr])
        remember(request, fingerprint: fingerprint, caller: caller, status: 200, body: body, state: &state, requestID: requestID, now: now)
        return .respond(status: 200, headers: Self.baseHeaders(requestID: requestID, now: now) + [("Content-Type", "application/json")], body: body)
    }

    /// Whole seconds since the epoch, clamped: a date from a state file edited elsewhere must
    /// not trap.
    static func epochSeconds(_ date: Date) -> Int64 {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite else { return 0 }
        return Int64(min(max(seconds, -1e15), 1e15))
    }

    static func keyDocument(_ key: SandboxState.ApprovalKeyRecord) -> [String: Any] {
        ["id": key.id, "name": key.name, "createdAt": String(epochSeconds(key.createdAt)),
         "lastUsedAt": String(key.lastUsedAt.map(epochSeconds) ?? 0),
         "approvalApiPublicKey": ["algorithm": key.algorithm, "publicKeyPem": key.publicKeyPem], "userId": key.userId, "status": key.status]
    }

    /// One page of `items` after the cursor (an item's id), and the next cursor.
    static func page<T>(_ items: [T], id: (T) -> String, cursor: String?, size: Int) -> (page: [T], next: String?)? {
        var start = 0
        if let cursor, !cursor.isEmpty {
            guard let index = items.firstIndex(where: { id($0) == cursor }) else { return nil }
            start = index
        }
        let end = min(items.count, start + size)
        return (Array(items[start..<end]), end < items.count ? id(items[end]) : nil)
    }

    private func listApprovalKeys(userID: String, _ request: SandboxRequest, caller: TrustedAPIUser, state: SandboxState,
                                  requestID: String, now: Date) -> SandboxReply {
        guard userID == caller.apiKey || [.OWNER, .ADMIN, .NON_SIGNING_ADMIN, .SECURITY_ADMIN, .SECURITY_AUDITOR].contains(caller.role) else {
            return Self.errorResponse(403, "AUTHORIZATION", "Role \(caller.role.rawValue) may list only its own approval keys", requestID: requestID, now: now)
        }
        let query = Self.query(of: request)
        var size = 10
        if let text = query["pageSize"] {
            guard let value = Int(text), (1...15).contains(value) else {
                return Self.errorResponse(400, "VALIDATION", "pageSize must be 1 to 15", requestID: requestID, now: now)
            }
            size = value
        }
        guard let (page, next) = Self.page(state.keys.filter { $0.userId == userID }, id: \.id, cursor: query["pageCursor"], size: size) else {
            return Self.errorResponse(400, "VALIDATION", "pageCursor is not one this stand-in gave", requestID: requestID, now: now)
        }
        var document: [String: Any] = ["data": page.map(Self.keyDocument)]
        if let next { document["next"] = next }
        return Self.json(200, document, requestID: requestID, now: now)
    }

    private func deleteApprovalKey(userID: String, keyID: String, caller: TrustedAPIUser, state: inout SandboxState,
                                   requestID: String, now: Date) -> SandboxReply {
        guard userID == caller.apiKey, Self.mayApprove(caller.role) else {
            return Self.errorResponse(403, "AUTHORIZATION", "Approval keys are deleted here only by their own API user", requestID: requestID, now: now)
        }
        guard var keys = state.approvalKeys, let index = keys.firstIndex(where: { $0.id == keyID && $0.userId == userID }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No approval key \(keyID) of API user \(userID)", requestID: requestID, now: now)
        }
        if let pending = keys[index].pendingRequestID, keys[index].status == "APPROVAL_API_KEY_STATUS_PENDING_DELETION" {
            return Self.json(200, ["ccrIdPendingDeletion": pending], requestID: requestID, now: now)
        }
        let enabled = keys.filter { $0.userId == userID && $0.status == "APPROVAL_API_KEY_STATUS_ENABLED" }
        let isLast = keys[index].status == "APPROVAL_API_KEY_STATUS_ENABLED" && enabled.count == 1
        // The last key's deletion always waits for approval, as does every one when registrations do.
        guard isLast || (!configuration.approvalKeysActiveAtOnce && keys[index].status == "APPROVAL_API_KEY_STATUS_ENABLED") else {
            if let pending = keys[index].pendingRequestID, let requestIndex = state.approvalRequests.firstIndex(where: { $0.id == pending }) {
                var requests = state.approvals ?? []
                requests[requestIndex].state = "CANCELLED"
                state.approvals = requests
            }
            keys.remove(at: index)
            state.approvalKeys = keys
            return Self.json(200, ["ccrIdPendingDeletion": ""], requestID: requestID, now: now)
        }
        let data = Self.jsonBody(["userId": userID, "keyId": keyID, "name": keys[index].name])
        guard let record = state.addApproval(type: "APPROVAL_KEY_DELETION", requestDataJSON: String(decoding: data, as: UTF8.self), now: now,
                                             lifetime: configuration.approvalRequestLifetime, threshold: 1, notEligible: [userID],
                                             keyID: keyID, keyAction: "delete", limit: configuration.limits.approvals) else {
            return Self.errorResponse(429, "RATE_LIMIT", "The stand-in keeps at most \(configuration.limits.approvals) approval requests and all are open",
                                      requestID: requestID, now: now, extraHeaders: [("Retry-After", "60")])
        }
        keys[index].status = "APPROVAL_API_KEY_STATUS_PENDING_DELETION"
        keys[index].pendingRequestID = record.id
        state.approvalKeys = keys
        return Self.json(200, ["ccrIdPendingDeletion": record.id], requestID: requestID, now: now)
    }

    // MARK: Approval requests

    private func itemDocument(_ record: SandboxState.ApprovalRecord, caller: TrustedAPIUser, quorum: Bool, now: Date) -> [String: Any] {
        let userStatus: String
        if record.notEligible.contains(caller.apiKey) || !Self.mayApprove(caller.role) {
            userStatus = "USER_NOT_ELIGIBLE_TO_APPROVE"
        } else {
            userStatus = record.approvedBy.contains(caller.apiKey) ? "USER_APPROVED" : "USER_NOT_APPROVED"
        }
        var document: [String: Any] = ["requestPayload": record.payload, "requestSignature": "", "userStatus": userStatus]
        if quorum {
            let state = record.reportedState(at: now)
            document["quorumStatus"] = [
                "requestStatus": state,
                "quorum": ["type": "SIMPLE", "threshold": record.threshold, "currentApprovalCount": record.approvedBy.count,
                           "status": state == "APPROVED" ? "APPROVED" : "PENDING"] as [String: Any],
            ] as [String: Any]
        } else {
            document["quorumStatus"] = NSNull()
        }
        return document
    }

    /// `quorumStatusMode`: NONE (default), SUMMARY, and FULL where allowed; nil when refused.
    private static func quorumMode(_ query: [String: String], fullAllowed: Bool) -> Bool?? {
        switch query["quorumStatusMode"] {
        case nil, "NONE": return .some(false)
        case "SUMMARY": return .some(true)
        case "FULL" where fullAllowed: return .some(true)
        default: return .none
        }
    }

    private func listApprovals(_ request: SandboxRequest, caller: TrustedAPIUser, state: SandboxState, requestID: String, now: Date) -> SandboxReply {
        let query = Self.query(of: request)
        guard case .some(.some(let quorum)) = Self.quorumMode(query, fullAllowed: false) else {
            return Self.errorResponse(400, "VALIDATION", "quorumStatusMode must be NONE or SUMMARY here", requestID: requestID, now: now)
        }
        if query["userId"] != nil || query["includeAllUsers"] == "true" {
            return Self.errorResponse(400, "VALIDATION", "userId and includeAllUsers are not simulated by the stand-in", requestID: requestID, now: now)
        }
        var size = 20
        if let text = query["pageSize"] {
            guard let value = Int(text), (1...30).contains(value) else {
                return Self.errorResponse(400, "VALIDATION", "pageSize must be 1 to 30", requestID: requestID, now: now)
            }
            size = value
        }
        let includeApproved = query["includeUserApproved"] == "true"
        let eligible = state.approvalRequests.filter { record in
            record.isOpen(at: now) && Self.mayApprove(caller.role) && !record.notEligible.contains(caller.apiKey)
                && (includeApproved || !record.approvedBy.contains(caller.apiKey))
        }
        guard let (page, next) = Self.page(eligible, id: \.id, cursor: query["pageCursor"], size: size) else {
            return Self.errorResponse(400, "VALIDATION", "pageCursor is not one this stand-in gave", requestID: requestID, now: now)
        }
        var document: [String: Any] = ["data": page.map { itemDocument($0, caller: caller, quorum: quorum, now: now) }]
        if let next { document["next"] = next }
        return Self.json(200, document, requestID: requestID, now: now)
    }

    private func approval(id: String, _ request: SandboxRequest, caller: TrustedAPIUser, state: SandboxState, requestID: String, now: Date) -> SandboxReply {
        guard case .some(.some(let quorum)) = Self.quorumMode(Self.query(of: request), fullAllowed: true) else {
            return Self.errorResponse(400, "VALIDATION", "quorumStatusMode must be NONE, SUMMARY or FULL", requestID: requestID, now: now)
        }
        guard let record = state.approvalRequests.first(where: { $0.id == id }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No approval request \(id)", requestID: requestID, now: now)
        }
        return Self.json(200, itemDocument(record, caller: caller, quorum: quorum, now: now), requestID: requestID, now: now)
    }

    private func act(on id: String, approve: Bool, _ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                     requestID: String, now: Date) -> SandboxReply {
        let fingerprint = RequestClaims.bodyHash(Array("POST \(request.path) ".utf8) + request.body)
        if let replayed = replay(request, fingerprint: fingerprint, caller: caller, state: state, requestID: requestID, now: now) { return replayed }
        guard let index = state.approvalRequests.firstIndex(where: { $0.id == id }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No approval request \(id)", requestID: requestID, now: now)
        }
        let record = state.approvalRequests[index]
        guard Self.mayApprove(caller.role), !record.notEligible.contains(caller.apiKey) else {
            return Self.errorResponse(403, "AUTHORIZATION", "This API user may not act on approval request \(id)", requestID: requestID, now: now)
        }
        guard record.state == "PENDING" else {
            return Self.errorResponse(409, "CONFLICT", "Approval request \(id) is \(record.state), no longer pending", requestID: requestID, now: now)
        }
        guard record.expiresAt > now else {
            return Self.errorResponse(400, "VALIDATION", "Approval request \(id) expired at \(Self.epochSeconds(record.expiresAt))", requestID: requestID, now: now)
        }
        guard !record.approvedBy.contains(caller.apiKey) else {
            return Self.errorResponse(409, "CONFLICT", "This API user already approved request \(id)", requestID: requestID, now: now)
        }
        if approve {
            guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
                  let text = object["signature"] as? String else {
                return Self.errorResponse(400, "VALIDATION", "Body must be ApproveApprovalRequest: {signature, keyId?}", requestID: requestID, now: now)
            }
            guard let signature = Base64URL.decode(text).map({ Array($0) }) else {
                return Self.errorResponse(400, "VALIDATION", "signature is not base64url", requestID: requestID, now: now)
            }
            let keyID = object["keyId"] as? String
            // A key waiting for its registration cannot sign; one waiting for its deletion still can.
            let usable = state.keys.filter {
                $0.userId == caller.apiKey && ($0.status == "APPROVAL_API_KEY_STATUS_ENABLED" || $0.status == "APPROVAL_API_KEY_STATUS_PENDING_DELETION")
                    && (keyID == nil || $0.id == keyID)
            }
            guard !usable.isEmpty else {
                return Self.errorResponse(400, "VALIDATION", keyID.map { "No active approval key \($0) of this API user" } ?? "This API user has no active approval key",
                                          requestID: requestID, now: now)
            }
            let payload = Array(record.payload.utf8)
            guard let signer = usable.first(where: { ApprovalSignatureCheck.isValid(signature: signature, payload: payload, algorithm: $0.algorithm, publicKeyPem: $0.publicKeyPem) }) else {
                return Self.errorResponse(400, "VALIDATION", "The signature does not verify with \(keyID == nil ? "any active approval key of this API user" : "approval key \(keyID ?? "")") over requestPayload",
                                          requestID: requestID, now: now)
            }
            if var keys = state.approvalKeys, let keyIndex = keys.firstIndex(where: { $0.id == signer.id }) {
                keys[keyIndex].lastUsedAt = now
                state.approvalKeys = keys
            }
            var requests = state.approvals ?? []
            requests[index].approvedBy.append(caller.apiKey)
            state.approvals = requests
            if requests[index].approvedBy.count >= requests[index].threshold {
                state.finish(approval: index, as: "APPROVED", by: caller.apiKey)
            }
        } else {
            state.finish(approval: index, as: "REJECTED", by: caller.apiKey)
        }
        remember(request, fingerprint: fingerprint, caller: caller, status: 204, body: [], state: &state, requestID: requestID, now: now)
        return .respond(status: 204, headers: Self.baseHeaders(requestID: requestID, now: now), body: [])
    }
}

extension SandboxService {
    /// Adds an approval request (what `fireblocks-sandbox approvals add` does to a state file),
    /// for tests that run the service in-process. Nil at the bound with every request open.
    public func addApproval(type: String, requestDataJSON: String, lifetime: TimeInterval, threshold: Int = 1) -> SandboxState.ApprovalRecord? {
        let now = now()
        return mutate { state in
            state.addApproval(type: type, requestDataJSON: requestDataJSON, now: now, lifetime: lifetime, threshold: threshold,
                              limit: configuration.limits.approvals)
        }
    }

    /// Approves an open request from the Console's side (`fireblocks-sandbox approvals approve`).
    public func approveFromConsole(_ id: String) -> SandboxState.ApprovalRecord? {
        let now = now()
        return mutate { $0.approveFromConsole(id, now: now) }
    }
}
