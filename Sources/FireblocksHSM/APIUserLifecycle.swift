import ErrorShape
import AuditTrail
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Which API user: by name (must be unique) or by id.
public enum APIUserLookup: Sendable, Equatable, CustomStringConvertible {
    case name(String)
    case id(String)

    /// As the user gave it.
    public var description: String {
        switch self {
        case .name(let name): return "'\(name)'"
        case .id(let id): return "id \(id)"
        }
    }

    func matches(_ user: APIUser) -> Bool {
        switch self {
        case .name(let name): return user.name == name
        case .id(let id): return user.id == id
        }
    }
}

/// Why a lifecycle step stopped. Matchable by ``code``; never carries a pairing token.
public struct APIUserLifecycleError: LibraryError, Equatable {
    /// What happened.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// No listed user has that name or id.
        public static let notFound = Code("notFound")
        /// Several listed users have that name (see ``candidates``).
        public static let ambiguous = Code("ambiguous")
        /// The user was listed, then no longer.
        public static let disappeared = Code("disappeared")
        /// The user is disabled.
        public static let disabled = Code("disabled")
        /// The wait ended before the status was reached.
        public static let timeout = Code("timeout")
        /// A pairing token was refused: the user is not `PENDING_ACTIVATION` (see ``status``).
        public static let notPendingActivation = Code("notPendingActivation")
    }

    /// What happened.
    public let code: Code
    /// The facts.
    public let reason: String
    /// Users that could be meant, for `ambiguous`.
    public let candidates: [APIUser]
    /// The user's status when it stopped, when known.
    public let status: String?
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(_ code: Code, _ reason: String, candidates: [APIUser] = [], status: String? = nil,
                file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.candidates = candidates
        self.status = status
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The facts.
    public var description: String { reason }

    /// Equal by code.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}

/// What `api-user show` reports.
public struct APIUserDetails: Codable, Sendable, Equatable {
    /// The id (its API key).
    public let id: String
    /// The name.
    public let name: String
    /// The role.
    public let role: String?
    /// The status.
    public let status: String?
    /// Whether it is enabled.
    public let enabled: Bool?
    /// API or CONSOLE.
    public let userType: String?
    /// The addresses it may call from; empty: any.
    public let whitelistedIPs: [String]
    /// True when no address is whitelisted (any IP may call).
    public let anyIPAllowed: Bool
}

/// What `api-user pairing-token` got. ``pairingToken`` is a secret: `description` leaves it out.
public struct PairingTokenIssue: Sendable, CustomStringConvertible {
    /// The user.
    public let user: APIUser
    /// Its status after the token was issued.
    public let status: String?
    /// The token (valid one hour).
    public let pairingToken: String
    /// The Idempotency-Key it was asked with (a re-run with it gets the same token).
    public let idempotencyKey: String
    /// The request id.
    public let requestID: String?

    /// Everything but the token.
    public var description: String { "pairing token for '\(user.name)' (\(user.id)), status \(status ?? "?")" }
}

/// What a wait tells its caller as it goes.
public enum APIUserWaitEvent: Sendable {
    /// The user is not listed (yet): a creation awaiting the admin quorum's approval.
    case notListed(elapsed: TimeInterval)
    /// The user was first seen, or its status changed.
    case status(APIUser, at: Date)
    /// A poll found nothing new; the next is in `next` seconds.
    case unchanged(APIUser, elapsed: TimeInterval, next: TimeInterval)
    /// The API answered 429, 5xx or not at all; the wait slows down and goes on.
    case backingOff(seconds: TimeInterval, reason: String)
}

/// `api-user show | wait | pairing-token`: the lifecycle after creation.
public enum APIUserLifecycle {
    /// Finds the user in a list (unique name, or id).
    public static func resolve(_ lookup: APIUserLookup, in users: [APIUser]) throws -> APIUser {
        let matches = users.filter(lookup.matches)
        guard let user = matches.first else {
            throw APIUserLifecycleError(.notFound, "no API user \(lookup) is listed (a creation awaiting approval is not listed yet)")
        }
        guard matches.count == 1 else {
            throw APIUserLifecycleError(.ambiguous, "\(matches.count) API users are named \(lookup); give the id", candidates: matches)
        }
        return user
    }

    /// The user and its whitelisted IPs.
    public static func show(token: TokenTarget, api: APITarget, lookup: APIUserLookup,
                            observer: any OperationObserver) async throws -> APIUserDetails {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        return try await session.recording {
            let (users, _) = try await session.client.listAPIUsers()
            let user = try resolve(lookup, in: users)
            let (whitelist, _) = try await session.client.whitelistedIPs(userID: user.id)
            return APIUserDetails(id: user.id, name: user.name, role: user.role, status: user.status, enabled: user.enabled,
                                  userType: user.userType, whitelistedIPs: whitelist.whitelistedIps,
                                  anyIPAllowed: whitelist.whitelistedIps.isEmpty)
        }
    }

    /// How a wait polls.
    public struct WaitPolicy: Sendable {
        /// Longest wait, seconds.
        public var timeout: TimeInterval
        /// Time between polls, seconds (±20 % jitter).
        public var interval: TimeInterval
        /// Longest time between polls when backing off.
        public var maximumInterval: TimeInterval

        /// A policy.
        public init(timeout: TimeInterval, interval: TimeInterval, maximumInterval: TimeInterval? = nil) {
            self.timeout = timeout
            self.interval = interval
            self.maximumInterval = maximumInterval ?? max(interval, min(300, interval * 8))
        }
    }

    /// Polls the user list until the user reaches `status` (or a later one), backing off on
    /// 429/5xx/network trouble (which never end the wait), and stopping early when the user
    /// disappears or is disabled. Its API calls are recorded in the audit trail once, at the end.
    public static func wait(token: TokenTarget, api: APITarget, lookup: APIUserLookup, until status: APIUserStatus,
                            policy: WaitPolicy, observer: any OperationObserver,
                            onEvent: @escaping @Sendable (APIUserWaitEvent) -> Void) async throws -> APIUser {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let user = try await session.recording {
            try await wait(client: session.client, lookup: lookup, until: status, policy: policy, onEvent: onEvent)
        }
        if user.status == APIUserStatus.READY.rawValue, let audit = session.audit {
            let entry = readyEntry(user)
            let note = try audit.recordDone([entry], done: "API user '\(user.name)' was seen READY")
            audit.addMilestone(entry, sealedBy: note, apiUserID: user.id, apiUserName: user.name, stateDirectory: api.stateDirectory)
        }
        return user
    }

    /// The record of a user seen READY: paired, signing its own requests.
    static func readyEntry(_ user: APIUser) -> AuditEntry {
        AuditEntry(event: "api-user.ready", facts: ["userID": .string(user.id), "name": .string(user.name),
                                                   "status": .string(user.status ?? ""), "role": .string(user.role ?? "")])
    }

    /// The wait on a client already open (what `onboard --wait-until` uses).
    public static func wait(client: FireblocksClient, lookup: APIUserLookup, until target: APIUserStatus, policy: WaitPolicy,
                            onEvent: @escaping @Sendable (APIUserWaitEvent) -> Void) async throws -> APIUser {
        let started = Date()
        // One deadline for everything inside the wait: each poll's own retries and their
        // Retry-After waits end with it too.
        let client = client.within(deadline: started.addingTimeInterval(policy.timeout))
        var seen: APIUser?
        var delay = policy.interval
        while true {
            let elapsed = Date().timeIntervalSince(started)
            var users: [APIUser]?
            do {
                users = try await client.listAPIUsers().users
                delay = policy.interval
            } catch let error as FireblocksAPIError where error.status == 429 || error.isServerSide {
                // The client already waited out Retry-After on its own retries; slow down further.
                delay = min(policy.maximumInterval, delay * 2)
                onEvent(.backingOff(seconds: delay, reason: "HTTP \(error.status) [X-Request-ID: \(error.requestID ?? "none")]"))
            } catch let error as APIClientError where error.code == .network || error.code == .timeout {
                delay = min(policy.maximumInterval, delay * 2)
                onEvent(.backingOff(seconds: delay, reason: error.reason))
            }
            if let users {
                let lookupNow: APIUserLookup = seen.map { .id($0.id) } ?? lookup
                let matches = users.filter(lookupNow.matches)
                if matches.count > 1 {
                    throw APIUserLifecycleError(.ambiguous, "\(matches.count) API users are named \(lookup); give the id", candidates: matches)
                }
                if let user = matches.first {
                    if user.enabled == false {
                        throw APIUserLifecycleError(.disabled, "API user '\(user.name)' (\(user.id)) is disabled; it will not reach \(target.rawValue)",
                                                    status: user.status)
                    }
                    if seen?.status != user.status || seen == nil { onEvent(.status(user, at: Date())) }
                    seen = user
                    // Reached, or already past (a user that is READY has been through pairing).
                    if let current = user.status.flatMap(APIUserStatus.init(rawValue:)), current.stage >= target.stage {
                        return user
                    }
                } else if let last = seen {
                    throw APIUserLifecycleError(.disappeared, "API user '\(last.name)' (\(last.id)) is no longer listed (last seen \(last.status ?? "?"))",
                                                status: last.status)
                } else {
                    onEvent(.notListed(elapsed: elapsed))
                }
            }
            let jittered = delay * Double.random(in: 0.8...1.2)
            let remaining = policy.timeout - Date().timeIntervalSince(started)
            guard remaining > 0 else {
                let where_ = seen.map { "'\($0.name)' is \($0.status ?? "?")" } ?? "the user is not listed"
                throw APIUserLifecycleError(.timeout, "waited \(Int(policy.timeout.rounded())) s for \(lookup) to reach \(target.rawValue); \(where_)",
                                            status: seen?.status)
            }
            if let seen { onEvent(.unchanged(seen, elapsed: Date().timeIntervalSince(started), next: min(jittered, remaining))) }
            try await Task.sleep(for: .milliseconds(Int64(min(jittered, remaining) * 1000)))
        }
    }

    /// Issues a pairing token (`POST …/{id}/pairing_token` with an Idempotency-Key, so a retry
    /// gets the same token). A 409 is explained with the user's current status. The audit trail
    /// records that a token was issued, never the token.
    public static func issuePairingToken(token: TokenTarget, api: APITarget, lookup: APIUserLookup, idempotencyKey: String?,
                                         observer: any OperationObserver) async throws -> PairingTokenIssue {
        if let idempotencyKey { try IdempotencyStore.validate(key: idempotencyKey) }
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let issue = try await session.recording {
            try await issuePairingToken(client: session.client, lookup: lookup, idempotencyKey: idempotencyKey)
        }
        let key = issue.idempotencyKey
        let entry = AuditEntry(event: "api-user.pairing-token-issued", facts: [
            "userID": .string(issue.user.id), "name": .string(issue.user.name), "status": .string(issue.status ?? ""),
            "idempotencyKey": .string(key), "requestID": .string(issue.requestID ?? ""),
        ])
        if let audit = session.audit {
            let note = try audit.recordDone([entry], done: "a pairing token was issued for API user '\(issue.user.name)'")
            audit.addMilestone(entry, sealedBy: note, apiUserID: issue.user.id, apiUserName: issue.user.name, stateDirectory: api.stateDirectory)
        }
        return issue
    }

    /// The same on a client already open. Without a key, one derived from the user's id: a
    /// re-run (after a crash, a lost answer, a killed process) asks again with the same key and
    /// gets the same token back instead of a 409 with the first one lost.
    public static func issuePairingToken(client: FireblocksClient, lookup: APIUserLookup, idempotencyKey: String?) async throws -> PairingTokenIssue {
        let (users, _) = try await client.listAPIUsers()
        let user = try resolve(lookup, in: users)
        let idempotencyKey = idempotencyKey ?? "pairing-" + String(user.id.prefix(32))
        do {
            let (answer, response) = try await client.issuePairingToken(userID: user.id, idempotencyKey: idempotencyKey)
            return PairingTokenIssue(user: user, status: answer.status, pairingToken: answer.pairingToken,
                                     idempotencyKey: idempotencyKey, requestID: response.requestID)
        } catch let error as FireblocksAPIError where error.status == 409 {
            let now = (try? await client.listAPIUsers().users.first { $0.id == user.id })?.status ?? user.status ?? "?"
            throw APIUserLifecycleError(.notPendingActivation, "API user '\(user.name)' is \(now), not PENDING_ACTIVATION: a pairing token is issued only to a user waiting for activation (one per user; a re-run with the same idempotency key gets the first token) [HTTP 409, X-Request-ID: \(error.requestID ?? "none")]",
                                        status: now)
        }
    }
}
