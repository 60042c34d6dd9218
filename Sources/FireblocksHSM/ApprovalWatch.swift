import AuditTrail
import Crypto
import DurableFiles
import FireblocksAPI
import HexEncoding
import JOSE
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys

/// What a policy decided about one request (`approvals watch`).
public struct ApprovalJudgement: Sendable, Equatable {
    /// `approve`, `reject` or `skip` (leave it for people).
    public let decision: String
    /// The rule that decided.
    public let rule: String
    /// Why.
    public let reason: String

    /// Creates the value from its parts.
    public init(decision: String, rule: String, reason: String) {
        self.decision = decision
        self.rule = rule
        self.reason = reason
    }
}

/// A decision `approvals watch` made, kept in the state directory before it acts, so that a
/// request is never decided (nor signed) twice, across restarts too.
public struct WatchDecision: Codable, Sendable, Equatable {
    /// The request.
    public let requestId: String
    /// Its type.
    public let requestType: String
    /// SHA-256 of the exact payload, lowercase hex.
    public let payloadSHA256: String
    /// `approve`, `reject`, `skip`, or `expired`.
    public let decision: String
    /// The rule.
    public let rule: String
    /// When it was decided, epoch seconds.
    public let decidedAt: Int64
    /// The request's `expiresAt` (0: unknown).
    public let expiresAt: Int64
    /// `deciding` (written before acting), `done`, or `failed: …` (not tried again).
    public var state: String
}

/// What one pass of `approvals watch` did.
public struct WatchPass: Codable, Sendable, Equatable {
    /// The decisions made in this pass.
    public var decided: [WatchDecision] = []
    /// Requests seen that an earlier pass (or run) had decided.
    public var alreadyDecided = 0
}

extension ApprovalOperations {
    /// The state file of `approvals watch` for an API user.
    static func watchState(_ api: APITarget) -> LockedJSONFile<[String: WatchDecision]> {
        LockedJSONFile(path: api.stateDirectory.appendingPathComponent("approvals-watch-\(api.apiKey).json").path, empty: { [:] })
    }

    /// Decisions are kept this long after their request expired (a request the API still lists
    /// must not be decided again; one long expired is not listed).
    static let decisionRetention: Int64 = 7 * 86_400

    /// One pass of the automated approver: lists the requests the API user may act on, and for
    /// each one not decided before: an expired one is recorded and left; otherwise `judge`
    /// decides, the decision is written to the state directory (durably, under its lock) and
    /// only then acted on: approved (the exact payload signed on the token with the approval key
    /// `label`), rejected, or left for people. Each decision is an audit record naming the rule.
    /// A decision is never made twice: a run that stops between writing it and acting leaves
    /// the request to people rather than risk a second signature.
    public static func watchPass(session: APISession, api: APITarget, label: String, now: @Sendable () -> Date = Date.init,
                                 judge: (ApprovalPayload) -> ApprovalJudgement, observer: any OperationObserver) async throws -> WatchPass {
        let tokenLabel = session.token.token.info.label
        guard let pair = try ApprovalOperations.approvalKey(label, in: session.token.session) else {
            throw OperationError(.keyNotFound, "no approval key labelled '\(label)' on token '\(tokenLabel)'")
        }
        let store = watchState(api)
        var pass = WatchPass()
        try await session.recording {
            // The key must be registered before anything is decided: a pass that could not sign
            // decides nothing (each decision is made once).
            let (keys, _) = try await session.client.listApprovalKeys(userID: api.apiKey)
            guard let keyID = keys.first(where: { spkiSHA256(pem: $0.approvalApiPublicKey.publicKeyPem) == pair.fingerprint })?.id else {
                throw OperationError(.keyNotFound, "the approval key '\(label)' is not registered for API user \(api.apiKey): nothing was decided")
            }
            let items = try await session.client.listAllApprovals(includeUserApproved: false)
            for item in items {
                let digest = payloadSHA256(item)
                guard let payload = item.payload,
                      (try? FireblocksClient.checkedApprovalID(payload.requestId, what: "a request id")) != nil else {
                    observer.note("an approval request's payload is not the documented JSON (SHA-256 \(digest)): left for people")
                    continue
                }
                let seconds = Int64(now().timeIntervalSince1970.rounded(.down))
                let expired = payload.isExpired(at: now())
                let judgement = expired ? ApprovalJudgement(decision: "expired", rule: "expiresAt", reason: "expired at \(payload.expiresAt ?? 0)")
                    : judge(payload)
                var decision = WatchDecision(requestId: payload.requestId, requestType: String(payload.requestType.prefix(typeBound)),
                                             payloadSHA256: digest, decision: judgement.decision, rule: judgement.rule, decidedAt: seconds,
                                             expiresAt: payload.expiresAt ?? 0, state: "deciding")
                // Written before anything is signed or sent; a request already in the file is not decided again.
                let fresh = try store.update { decisions -> Bool in
                    decisions = decisions.filter { $0.value.expiresAt == 0 || $0.value.expiresAt > seconds - decisionRetention }
                    guard decisions[payload.requestId] == nil else { return false }
                    decisions[payload.requestId] = decision
                    return true
                }
                guard fresh else {
                    pass.alreadyDecided += 1
                    continue
                }
                var facts: [String: AuditValue] = [
                    "requestId": .string(payload.requestId), "requestType": .string(decision.requestType),
                    "payloadSHA256": .string(digest), "rule": .string(String(judgement.rule.prefix(128))),
                    "reason": .string(String(judgement.reason.prefix(1024))), "via": .string("approvals watch"),
                ]
                do {
                    switch judgement.decision {
                    case "approve":
                        let bytes = Array(item.requestPayload.utf8)
                        let signature = try during("signing approval request \(payload.requestId)", token: tokenLabel, key: label) {
                            try ApprovalKeys.sign(bytes, with: pair, in: session.token.session)
                        }
                        try FaultInjection.point("approvals-watch-signed")
                        let response = try await session.client.approve(requestID: payload.requestId,
                                                                        ApproveApprovalRequest(keyId: keyID, signature: Base64URL.encode(signature)),
                                                                        idempotencyKey: UUID().uuidString.lowercased())
                        facts.merge(["key": .string(label), "keyId": .string(String(keyID.prefix(128))), "spkiSHA256": .string(pair.fingerprint),
                                     "xRequestID": .string(response.requestID ?? "")]) { $1 }
                        try session.audit?.recordDone([AuditEntry(event: "approval.approved", facts: facts)], done: "approval request \(payload.requestId) was approved")
                    case "reject":
                        let response = try await session.client.reject(requestID: payload.requestId, idempotencyKey: UUID().uuidString.lowercased())
                        facts["xRequestID"] = .string(response.requestID ?? "")
                        try session.audit?.recordDone([AuditEntry(event: "approval.rejected", facts: facts)], done: "approval request \(payload.requestId) was rejected")
                    default:
                        try session.audit?.recordDone([AuditEntry(event: "approval.skipped", facts: facts.merging(["decision": .string(judgement.decision)]) { $1 })],
                                                      done: "approval request \(payload.requestId) was left for people")
                    }
                    decision.state = "done"
                } catch let error as OperationError where error.code == .auditUnwritable {
                    throw error
                } catch {
                    // Not tried again (a signature may have been made): the request is left to people.
                    decision.state = "failed: " + String("\(error)".prefix(512))
                    let failed = AuditEntry(event: "approval.failed", outcome: .failed(String("\(error)".prefix(512))), facts: facts.merging(["decision": .string(judgement.decision)]) { $1 })
                    do {
                        try session.audit?.recordDone([failed], done: "approval request \(payload.requestId) failed")
                    } catch let auditFailure {
                        observer.note("approval request \(payload.requestId): its failure could not be recorded in the audit log (\(auditFailure))")
                    }
                    observer.note("approval request \(payload.requestId): \(judgement.decision) failed (\(error)); it is not tried again: left for people")
                }
                let final = decision
                try store.update { decisions in decisions[payload.requestId] = final }
                pass.decided.append(final)
            }
        }
        return pass
    }

    /// `approvals watch`: passes every `interval` (±20 % jitter; slower while the API answers
    /// 429 or 5xx or cannot be reached) until `shouldStop` says so; with `once`, one pass.
    /// `events` (the `--listen` endpoint's /healthz and /metrics) hears of each pass and of each
    /// pass that failed and is tried again.
    public static func watch(token: TokenTarget, api: APITarget, label: String, interval: TimeInterval, once: Bool,
                             judge: @escaping @Sendable (ApprovalPayload) -> ApprovalJudgement, shouldStop: @escaping @Sendable () -> Bool,
                             observer: any OperationObserver, events: (any WatchEvents)? = nil,
                             onPass: @escaping @Sendable (WatchPass) -> Void) async throws -> WatchPass {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        var total = WatchPass()
        var delay = interval
        while true {
            do {
                let pass = try await watchPass(session: session, api: api, label: label, judge: judge, observer: observer)
                total.decided += pass.decided
                total.alreadyDecided = pass.alreadyDecided
                events?.passed(pass, at: Date())
                onPass(pass)
                delay = interval
            } catch let error as FireblocksAPIError where !once && (error.status == 429 || error.isServerSide) {
                delay = min(max(interval, 300), delay * 2)
                events?.passFailed("HTTP \(error.status)", at: Date())
                observer.note("HTTP \(error.status) [X-Request-ID: \(error.requestID ?? "none")]: next pass in \(Int(delay.rounded())) s")
            } catch let error as APIClientError where !once && (error.code == .network || error.code == .timeout) {
                delay = min(max(interval, 300), delay * 2)
                events?.passFailed(String(error.reason.prefix(256)), at: Date())
                observer.note("\(error.reason): next pass in \(Int(delay.rounded())) s")
            }
            if once || shouldStop() { return total }
            let until = Date().addingTimeInterval(delay * Double.random(in: 0.8...1.2))
            while Date() < until, !shouldStop() { try await Task.sleep(for: .milliseconds(100)) }
            if shouldStop() { return total }
        }
    }
}

/// What `approvals watch --listen` reports: told of every pass by ``ApprovalOperations/watch``.
public protocol WatchEvents: Sendable {
    /// A pass listed the requests and made `pass`'s decisions.
    func passed(_ pass: WatchPass, at time: Date)
    /// A pass failed (429, 5xx, network) and will be tried again; `reason` names no secret.
    func passFailed(_ reason: String, at time: Date)
}
