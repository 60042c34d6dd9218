import Crypto
import DurableFiles
import FireblocksAPI
import Foundation
import Synchronization
import X509

/// A request as the server received it.
public struct SandboxRequest: Sendable {
    /// The method.
    public let method: String
    /// Path and query exactly as received (`/v1/management/api_users?x=1`).
    public let target: String
    /// Header names lower-cased.
    public let headers: [String: String]
    /// The body.
    public let body: [UInt8]

    /// Creates the value from its parts.
    public init(method: String, target: String, headers: [String: String], body: [UInt8]) {
        self.method = method.uppercased()
        self.target = target
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        self.body = body
    }

    var path: String { String(target.split(separator: "?", maxSplits: 1).first ?? "") }
}

/// What the server should do.
public enum SandboxReply: Sendable {
    case respond(status: Int, headers: [(String, String)], body: [UInt8])
    /// Close the connection without answering (fault injection).
    case drop
}

/// The offline stand-in of the Fireblocks API: routing, authentication, API users, idempotency,
/// fault injection. Pure request → reply, so it is tested without sockets; ``SandboxServer``
/// puts it on loopback.
public final class SandboxService: Sendable {
    /// The configuration.
    public let configuration: SandboxConfiguration
    private let state: Mutex<Mutable>

    private struct Mutable {
        var persistent: SandboxState
        /// The state file's modification time when this process last wrote or read it: a
        /// different one means `fireblocks-sandbox approve` (or an editor) changed it.
        var stateFileStamp: Date?
        var nonces: [String: Date] = [:]
        var received = 0
        var authenticated = 0
        var routed = 0
    }

    /// Creates the value from its parts.
    public init(configuration: SandboxConfiguration) throws {
        self.configuration = configuration
        state = Mutex(Mutable(persistent: try SandboxState.load(from: configuration.stateFile)))
        try state.withLock { state in
            try state.persistent.save(to: configuration.stateFile)
            state.stateFileStamp = Self.stamp(configuration.stateFile)
        }
    }

    static func stamp(_ url: URL?) -> Date? {
        guard let url else { return nil }
        return (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
    }

    /// The current state (users created, idempotency records).
    public var snapshot: SandboxState { state.withLock { $0.persistent } }

    /// The stand-in's own clock.
    public func now() -> Date { Date().addingTimeInterval(configuration.clockOffset) }

    /// Authenticates, applies the configured faults, routes, and answers.
    public func handle(_ request: SandboxRequest) -> SandboxReply {
        let now = now()
        let requestID = UUID().uuidString.lowercased()
        return state.withLock { state in
            state.received += 1
            if state.received <= configuration.dropFirst { return .drop }

            // Changes made to the state file from outside (an approval), then the lifecycle's clock.
            if let file = configuration.stateFile, Self.stamp(file) != state.stateFileStamp,
               let reloaded = try? SandboxState.load(from: file) {
                state.persistent = reloaded
                state.stateFileStamp = Self.stamp(file)
            }
            let usersMoved = state.persistent.advance(now: now, pairAfter: configuration.pairAfter)
            let transactionsMoved = state.persistent.advanceTransactions(now: now, step: configuration.transactionStep)
            if usersMoved || transactionsMoved {
                persist(&state)
            }
            // A created user that is READY (and enabled) signs its own requests, with its CSR's key.
            let ready = state.persistent.users.filter { $0.isVisible && $0.enabled && $0.status == "READY" }.compactMap { user -> TrustedAPIUser? in
                guard let csr = try? CertificateSigningRequest(pemEncoded: user.csrPem),
                      let pem = try? csr.publicKey.serializeAsPEM().pemString else { return nil }
                return try? TrustedAPIUser(apiKey: user.id, role: APIUserRole(rawValue: user.role) ?? .VIEWER, publicKeyPEM: pem, name: user.name)
            }
            let verifier = RequestVerifier(configuration: configuration)
            let verified = verifier.verify(request, now: now, created: ready) { nonce in state.nonces[nonce] != nil }
            let user: TrustedAPIUser
            switch verified {
            case .failure(let failure):
                return Self.errorSchema(401, failure.schemaCode, failure.message, requestID: requestID, now: now)
            case .success(let (caller, claims)):
                user = caller
                state.nonces = state.nonces.filter { $0.value.addingTimeInterval(120) > now }
                // Every live nonce is kept (forgetting one would let its replay through): when
                // they fill the bound, the request waits for the oldest to be forgotten.
                if state.nonces.count >= configuration.limits.nonces {
                    let free = state.nonces.values.min().map { $0.addingTimeInterval(120).timeIntervalSince(now) } ?? 1
                    return Self.errorResponse(429, "RATE_LIMIT", "Too many requests: the stand-in remembers at most \(configuration.limits.nonces) JWT nonces still alive",
                                              requestID: requestID, now: now, extraHeaders: [("Retry-After", "\(max(1, Int(free.rounded(.up))))")])
                }
                state.nonces[claims.nonce] = Date(timeIntervalSince1970: TimeInterval(claims.exp))
            }
            state.authenticated += 1
            if state.authenticated <= configuration.rateLimitFirst {
                return Self.errorResponse(429, "RATE_LIMIT", "Too many requests (stand-in fault: rateLimitFirst)", requestID: requestID,
                                          now: now, extraHeaders: [("Retry-After", "1")])
            }
            if state.authenticated <= configuration.rateLimitFirst + configuration.failFirst {
                return Self.errorResponse(503, "INTERNAL", "Service unavailable (stand-in fault: failFirst)", requestID: requestID, now: now)
            }
            let before = state.persistent
            let reply = route(request, caller: user, state: &state.persistent, requestID: requestID, now: now)
            if state.persistent != before { persist(&state) }
            state.routed += 1
            return state.routed <= configuration.loseResponseFirst ? .drop : reply
        }
    }

    // MARK: Routes

    private func route(_ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                       requestID: String, now: Date) -> SandboxReply {
        let segments = request.path.split(separator: "/").map(String.init)
        switch (request.method, segments) {
        case ("GET", ["v1", "workspace"]):
            return Self.json(200, ["id": state.workspace.id, "name": state.workspace.name], requestID: requestID, now: now)
        case ("GET", ["v1", "management", "api_users"]):
            return Self.json(200, ["users": listedUsers(state)], requestID: requestID, now: now)
        case ("POST", ["v1", "management", "api_users"]):
            return createUser(request, caller: caller, state: &state, requestID: requestID, now: now)
        case ("POST", let path) where path.count == 5 && path[0] == "v1" && path[1] == "management" && path[2] == "api_users" && path[4] == "pairing_token":
            return pairingToken(userID: path[3], request: request, caller: caller, state: &state, requestID: requestID, now: now)
        case ("GET", let path) where path.count == 5 && path[0] == "v1" && path[1] == "management" && path[2] == "api_users" && path[4] == "whitelist_ip_addresses":
            return whitelist(userID: path[3], state: state, requestID: requestID, now: now)
        case ("GET", ["v1", "vault", "accounts_paged"]):
            return vaultAccountsPaged(request, state: state, requestID: requestID, now: now)
        case ("POST", ["v1", "transactions"]):
            return createTransaction(request, caller: caller, state: &state, requestID: requestID, now: now)
        case ("GET", let path) where path.count == 3 && path[0] == "v1" && path[1] == "transactions":
            return transaction(id: path[2], state: state, requestID: requestID, now: now)
        default:
            if let reply = routeApprovals(request, caller: caller, state: &state, requestID: requestID, now: now) { return reply }
            return Self.errorResponse(404, "NOT_FOUND", "No route for \(request.method) \(request.path)", requestID: requestID, now: now)
        }
    }

    private func listedUsers(_ state: SandboxState) -> [[String: Any]] {
        let trusted: [[String: Any]] = configuration.trusted.map {
            ["id": $0.apiKey, "name": $0.name, "role": $0.role.rawValue, "enabled": true, "status": "READY", "userType": "API"]
        }
        let created: [[String: Any]] = state.users.filter(\.isVisible).map {
            ["id": $0.id, "name": $0.name, "role": $0.role, "enabled": $0.enabled, "status": $0.status, "userType": "API"]
        }
        return trusted + created
    }

    private func createUser(_ request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                            requestID: String, now: Date) -> SandboxReply {
        guard caller.role.mayCreateAPIUsers else {
            return Self.errorResponse(403, "AUTHORIZATION", "Role \(caller.role.rawValue) may not create API users (Admin or Non-Signing Admin required)",
                                      requestID: requestID, now: now)
        }
        let bodyHash = RequestClaims.bodyHash(request.body)
        let idempotencyKey = request.headers["idempotency-key"]
        if let idempotencyKey, let earlier = state.idempotency.first(where: { $0.key == idempotencyKey && $0.apiKey == caller.apiKey }) {
            guard earlier.bodySHA256 == bodyHash else {
                return Self.errorResponse(400, "VALIDATION", "Idempotency-Key \(idempotencyKey) was already used with a different request body",
                                          requestID: requestID, now: now)
            }
            // The first answer, again (its X-Request-ID included), and nothing new is created.
            return .respond(status: earlier.status, headers: Self.baseHeaders(requestID: earlier.requestID, now: now) + [("Idempotent-Replay", "true")],
                            body: Array(earlier.body.utf8))
        }

        let reply: SandboxReply
        let status: Int
        let answerBody: String
        switch validateCreation(request.body) {
        case .failure(let message):
            status = 400
            answerBody = Self.errorBody(type: "VALIDATION", message: message)
            reply = .respond(status: 400, headers: Self.baseHeaders(requestID: requestID, now: now) + [("Content-Type", "application/json")],
                             body: Array(answerBody.utf8))
        case .success(let creation):
            // Never made room for: a user forgotten would stop authenticating its key unseen.
            guard state.users.count < configuration.limits.users else {
                return Self.errorResponse(409, "CONFLICT", "The stand-in keeps at most \(configuration.limits.users) API users; remove some from its state to create more",
                                          requestID: requestID, now: now)
            }
            status = 200
            answerBody = ""
            // The creation goes to the admin quorum; an approved user takes --initial-status.
            let approvedNow = configuration.autoApproveAfter == 0
            state.users.append(SandboxState.CreatedUser(
                id: UUID().uuidString.lowercased(), name: creation.body.name, role: creation.body.role,
                status: configuration.initialStatus, enabled: true, csrPem: creation.body.csrPem,
                publicKeySHA256: creation.publicKeySHA256, coSignerSetupType: creation.body.coSignerSetupType,
                coSignerSetupIsFirstUser: creation.body.coSignerSetupIsFirstUser, createdBy: caller.apiKey,
                createdAt: now, requestID: requestID,
                approvalDue: configuration.autoApproveAfter.map { now.addingTimeInterval($0) },
                approvedAt: approvedNow ? now : nil, awaitingApproval: approvedNow ? nil : true,
                statusOnApproval: configuration.initialStatus, pairingTokenIssuedAt: nil))
            // "User creation approval request has been sent": 200, no body.
            reply = .respond(status: 200, headers: Self.baseHeaders(requestID: requestID, now: now), body: [])
        }
        if let idempotencyKey {
            state.remember(SandboxState.IdempotentAnswer(
                key: idempotencyKey, apiKey: caller.apiKey, bodySHA256: bodyHash, status: status, body: answerBody,
                requestID: requestID, createdAt: now), limit: configuration.limits.idempotencyAnswers, now: now)
        }
        return reply
    }

    private struct Creation {
        let body: CreateAPIUser
        let publicKeySHA256: String
    }

    private enum Validation {
        case success(Creation)
        case failure(String)
    }

    private func validateCreation(_ body: [UInt8]) -> Validation {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            return .failure("Body must be a JSON object (CreateAPIUser)")
        }
        guard let roleText = object["role"] as? String, let role = APIUserRole(rawValue: roleText) else {
            return .failure("role must be one of \(APIUserRole.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let name = object["name"] as? String, !name.isEmpty else { return .failure("name is required") }
        guard let csrPem = object["csrPem"] as? String else { return .failure("csrPem is required") }
        if let type = object["coSignerSetupType"], !(type is String) { return .failure("coSignerSetupType must be a string") }
        if let first = object["coSignerSetupIsFirstUser"], !(first is Bool) { return .failure("coSignerSetupIsFirstUser must be a boolean") }
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: csrPem)
        } catch {
            return .failure("csrPem is not a PEM certificate request: \(error)")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            return .failure("csrPem's self-signature does not verify")
        }
        guard let spki = try? csr.publicKey.serializeAsPEM().derBytes else {
            return .failure("csrPem's public key cannot be read")
        }
        guard let creation = try? CreateAPIUser(role: role, name: name, csrPem: csrPem,
                                                coSignerSetupType: object["coSignerSetupType"] as? String,
                                                coSignerSetupIsFirstUser: object["coSignerSetupIsFirstUser"] as? Bool) else {
            return .failure("name or coSignerSetupType is malformed")
        }
        return .success(Creation(body: creation, publicKeySHA256: sha256Hex(spki)))
    }

    private func pairingToken(userID: String, request: SandboxRequest, caller: TrustedAPIUser, state: inout SandboxState,
                              requestID: String, now: Date) -> SandboxReply {
        guard caller.role.mayCreateAPIUsers else {
            return Self.errorResponse(403, "AUTHORIZATION", "Role \(caller.role.rawValue) may not manage API users", requestID: requestID, now: now)
        }
        // The same Idempotency-Key gets the first answer (the same token) again.
        let fingerprint = RequestClaims.bodyHash(Array("POST \(request.path)".utf8))
        let idempotencyKey = request.headers["idempotency-key"]
        if let idempotencyKey, let earlier = state.idempotency.first(where: { $0.key == idempotencyKey && $0.apiKey == caller.apiKey }) {
            guard earlier.bodySHA256 == fingerprint else {
                return Self.errorResponse(400, "VALIDATION", "Idempotency-Key \(idempotencyKey) was already used for another request",
                                          requestID: requestID, now: now)
            }
            return .respond(status: earlier.status, headers: Self.baseHeaders(requestID: earlier.requestID, now: now)
                                + [("Content-Type", "application/json"), ("Idempotent-Replay", "true")],
                            body: Array(earlier.body.utf8))
        }
        guard let index = state.users.firstIndex(where: { $0.id == userID && $0.isVisible }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No API user \(userID)", requestID: requestID, now: now)
        }
        guard state.users[index].status == "PENDING_ACTIVATION" else {
            return Self.errorResponse(409, "CONFLICT", "API user \(userID) is \(state.users[index].status), not PENDING_ACTIVATION",
                                      requestID: requestID, now: now)
        }
        state.users[index].status = "PENDING_DEVICE_PAIRING"
        state.users[index].pairingTokenIssuedAt = now
        let user = state.users[index]
        let document: [String: Any] = ["id": user.id, "name": user.name, "role": user.role, "enabled": user.enabled, "userType": "API",
                                       "status": user.status, "pairingToken": UUID().uuidString.lowercased() + UUID().uuidString.lowercased()]
        let body = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])).map { Array($0) } ?? []
        if let idempotencyKey {
            state.remember(SandboxState.IdempotentAnswer(
                key: idempotencyKey, apiKey: caller.apiKey, bodySHA256: fingerprint, status: 201,
                body: String(decoding: body, as: UTF8.self), requestID: requestID, createdAt: now),
                limit: configuration.limits.idempotencyAnswers, now: now)
        }
        return .respond(status: 201, headers: Self.baseHeaders(requestID: requestID, now: now) + [("Content-Type", "application/json")],
                        body: body)
    }

    private func whitelist(userID: String, state: SandboxState, requestID: String, now: Date) -> SandboxReply {
        if let trusted = configuration.trusted.first(where: { $0.apiKey == userID }) {
            return Self.json(200, ["userId": userID, "whitelistedIps": configuration.whitelist[trusted.name] ?? []], requestID: requestID, now: now)
        }
        guard let user = state.users.first(where: { $0.id == userID && $0.isVisible }) else {
            return Self.errorResponse(404, "NOT_FOUND", "No API user \(userID)", requestID: requestID, now: now)
        }
        return Self.json(200, ["userId": user.id, "whitelistedIps": configuration.whitelist[user.name] ?? []], requestID: requestID, now: now)
    }

    /// Changes the state under the service's lock and writes it.
    func mutate<R>(_ change: (inout SandboxState) -> R) -> R {
        state.withLock { state in
            let result = change(&state.persistent)
            persist(&state)
            return result
        }
    }

    private func persist(_ state: inout Mutable) {
        // A stand-in that cannot write its state keeps serving from memory; tests read snapshots.
        // Under the lock 'fireblocks-sandbox approve' and 'set-user' take.
        let lock = configuration.stateFile.flatMap { try? FileLock.acquire($0.path + ".lock", timeout: 5) }
        defer { lock?.release() }
        try? state.persistent.save(to: configuration.stateFile)
        state.stateFileStamp = Self.stamp(configuration.stateFile)
    }

    // MARK: Answers

    static func baseHeaders(requestID: String, now: Date) -> [(String, String)] {
        [("X-Request-ID", requestID), ("Date", HTTPDate.format(now))]
    }

    static func json(_ status: Int, _ object: [String: Any], requestID: String, now: Date) -> SandboxReply {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return .respond(status: status, headers: baseHeaders(requestID: requestID, now: now) + [("Content-Type", "application/json")],
                        body: Array(data))
    }

    /// `{"error": {"type", "message"}}`.
    static func errorBody(type: String, message: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: ["error": ["type": type, "message": message]], options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    static func errorResponse(_ status: Int, _ type: String, _ message: String, requestID: String, now: Date,
                              extraHeaders: [(String, String)] = []) -> SandboxReply {
        .respond(status: status, headers: baseHeaders(requestID: requestID, now: now) + [("Content-Type", "application/json")] + extraHeaders,
                 body: Array(errorBody(type: type, message: message).utf8))
    }

    /// `{"message", "code"}`: what 401s look like.
    static func errorSchema(_ status: Int, _ code: Int, _ message: String, requestID: String, now: Date) -> SandboxReply {
        json(status, ["message": message, "code": code], requestID: requestID, now: now)
    }
}
