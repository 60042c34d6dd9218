import AuditTrail
import CoreMetrics
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PolicyLimits
import Synchronization
import TransactionPolicy
import Foundation

/// The policy the proxy reads before the token signs (docs/policy.md): the current policy file
/// (replaced whole by a reload, never half), and the store that holds the rolling totals.
public final class PolicyGate: Sendable {
    private let current: Mutex<PolicyFile>
    private let store: any LimitStore

    private let auditor = Mutex<ProxyAuditor?>(nil)

    /// A gate for `file`, its windows' totals in `store`.
    public init(file: PolicyFile, store: any LimitStore) {
        self.current = Mutex(file)
        self.store = store
    }

    /// Where reloads are recorded (the running proxy's audit log).
    func attach(_ auditor: ProxyAuditor) { self.auditor.withLock { $0 = auditor } }

    /// Reads the policy file again (SIGHUP): a policy that validates is put in force and its
    /// SHA-256 recorded; one that does not leaves the old one in force, and the failure is
    /// recorded, counted (`fireblocks_hsm_proxy_policy_reload_failures_total`) and returned.
    public func reload() async -> Result<PolicyFile, PolicyError> {
        let path = file.path
        let auditor = self.auditor.withLock { $0 }
        do {
            let fresh = try PolicyFile(path: path)
            replace(with: fresh)
            auditor?.recordLater(AuditEntry(event: "proxy.policy-reloaded", facts: [
                "policyFile": .string(path), "policySHA256": .string(fresh.sha256),
            ]))
            return .success(fresh)
        } catch {
            Counter(label: "fireblocks_hsm_proxy_policy_reload_failures_total").increment()
            auditor?.recordLater(AuditEntry(event: "proxy.policy-reload-failed", outcome: .failed(ProxyResponder.printable(error.description)), facts: [
                "policyFile": .string(path), "policySHA256": .string(file.sha256),
            ]))
            return .failure(error)
        }
    }

    /// The policy in force.
    public var file: PolicyFile { current.withLock { $0 } }

    /// Puts `file` in force (a reload that validated).
    public func replace(with file: PolicyFile) { current.withLock { $0 = file } }

    /// What the gate decides for one request.
    package enum Judgement: Sendable {
        /// Allowed; a window's reservation, when the rule has one, is held until released. It
        /// may not be durable yet: nothing goes upstream before `commit.wait()` returned.
        case allowed(Verdict, reservation: ReservationID?, commit: PendingCommit)
        /// Denied by the policy (or by a window that is full).
        case denied(Verdict)
        /// The limit store failed: nothing is signed (fail closed).
        case unavailable(String)
    }

    /// Judges `request` and, when the rule has a window, reserves its amount: returned once
    /// decided, the reservation's commit possibly still under way (see `Judgement.allowed`).
    package func judge(_ request: PolicyRequest) async -> (Judgement, sha256: String) {
        let file = self.file
        let verdict = file.policy.evaluate(request)
        guard verdict.allowed else { return (.denied(verdict), file.sha256) }
        guard let reservation = verdict.reservation else { return (.allowed(verdict, reservation: nil, commit: .done), file.sha256) }
        do {
            let (decision, commit) = try await store.decide(reservation, at: request.secondsSince1970)
            switch decision {
            case .reserved(let id, _):
                return (.allowed(verdict, reservation: id, commit: commit), file.sha256)
            case .exceeded(let total):
                let window = reservation.window
                let full = Verdict(allowed: false, client: verdict.client, rule: verdict.rule, check: "window",
                                   reason: "amount \(reservation.amount) with the \(total) already within \(window.seconds) s would pass the rule's total of \(window.maximumTotal)",
                                   facts: verdict.facts, reservation: nil)
                return (.denied(full), file.sha256)
            }
        } catch {
            return (.unavailable(error.reason), file.sha256)
        }
    }

    /// Releases a reservation whose transaction was not made (the upstream refused it, or it
    /// was never sent).
    package func release(_ id: ReservationID) async throws(LimitStoreError) {
        try await store.release(id)
    }

    /// Closes the store.
    public func close() async { await store.close() }

    /// The audit record of a denial: the client, the rule, the check and the request's facts
    /// (asset, amount, source, destination, externalTxId), never the whole body.
    static func deniedEntry(_ verdict: Verdict, method: String, uri: String, sha256: String) -> AuditEntry {
        var facts: [String: AuditValue] = [
            "method": .string(method), "uri": .string(uri), "client": .string(verdict.client), "rule": .string(verdict.rule),
            "check": .string(verdict.check), "httpStatus": .integer(403), "policySHA256": .string(sha256),
        ]
        if let transaction = verdict.facts {
            let known: [(String, String?)] = [
                ("operation", transaction.operation), ("assetId", transaction.assetId), ("amount", transaction.amount),
                ("sourceType", transaction.sourceType), ("sourceId", transaction.sourceId),
                ("destinationType", transaction.destinationType), ("destinationId", transaction.destinationId),
                ("externalTxId", transaction.externalTxId),
            ]
            for (name, value) in known { if let value { facts[name] = .string(ProxyResponder.printable(value)) } }
        }
        return AuditEntry(event: "proxy.denied", outcome: .failed(ProxyResponder.printable(verdict.reason)), facts: facts)
    }

    /// The 403 answer: a JSON body naming the rule and the check.
    static func deniedBody(_ verdict: Verdict) -> [UInt8] {
        let document: [String: Any] = [
            "message": "fireblocks-hsm proxy: denied by policy rule \(verdict.rule) (\(verdict.check)): \(verdict.reason)",
            "code": -1, "rule": verdict.rule, "check": verdict.check,
        ]
        return Array((try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data())
    }
}

/// The responder's one hook into the policy: judge after the body is read, before the record
/// and the signature; release a reservation whose transaction was not made.
extension ProxyResponder {
    enum PolicyOutcome {
        /// Answer this (a denial, or the store failing), signing and forwarding nothing.
        case answer(Response)
        /// Go on, under this rule, holding this reservation; forward only once `commit.wait()`
        /// returned (the record and the signature are made meanwhile).
        case proceed(rule: String, reservation: ReservationID?, commit: PendingCommit)
    }

    func judge(_ policy: PolicyGate, method: String, uri: String, path: RequestPath, client: String?, body: [UInt8],
               started: ContinuousClock.Instant) async -> PolicyOutcome {
        let request = PolicyRequest(method: method, segments: path.segments, client: client, body: body,
                                    secondsSince1970: Int64(Date().timeIntervalSince1970.rounded(.down)))
        let (judgement, sha256) = await policy.judge(request)
        switch judgement {
        case .allowed(let verdict, let reservation, let commit):
            return .proceed(rule: verdict.rule, reservation: reservation, commit: commit)
        case .denied(let verdict):
            Counter(label: "fireblocks_hsm_proxy_policy_denied_total", dimensions: [("check", verdict.check)]).increment()
            logger.notice("\(Self.printable(method)) \(Self.pathOnly(uri)) -> 403 denied by policy", metadata: [
                "client": "\(verdict.client)", "rule": "\(Self.printable(verdict.rule))", "check": "\(verdict.check)",
                "reason": "\(Self.printable(verdict.reason))",
            ])
            auditor.recordLater(PolicyGate.deniedEntry(verdict, method: Self.printable(method), uri: Self.printable(uri), sha256: sha256))
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            headers[HTTPField.Name("X-Fireblocks-HSM-Proxy")!] = "refused"
            let response = Response(status: .forbidden, headers: headers,
                                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: PolicyGate.deniedBody(verdict))))
            return .answer(finish(response, route: "policy:\(verdict.rule)", started: started))
        case .unavailable(let reason):
            logger.error("request refused: the policy's limit store failed", metadata: ["error": "\(reason)", "uri": "\(uri)"])
            return .answer(finish(Self.errorResponse(503, "the proxy cannot reserve this transaction against its policy's limits, so it signs nothing (fail closed); its operator finds why in the proxy's log"),
                                  route: "policy", started: started))
        }
    }

    /// Releases `reservation` (nil: nothing held): its transaction was not made.
    func releaseUnsent(_ reservation: ReservationID?) async {
        guard let reservation, let policy = configuration.policy else { return }
        do {
            try await policy.release(reservation)
        } catch {
            logger.error("a reservation could not be released: it counts until its window passes", metadata: ["error": "\(error.reason)"])
        }
    }
}
