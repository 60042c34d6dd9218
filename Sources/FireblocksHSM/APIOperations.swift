import ErrorShape
import AuditTrail
import FireblocksAPI
import JOSE
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys
import X509

/// A token key ready to sign API requests, and the client that uses it.
public struct APISession {
    /// The token (label).
    public let token: OpenedToken
    /// The signer.
    public let signer: TokenSigner
    /// The client.
    public let client: FireblocksClient
    /// Every attempt the client made, for the audit trail.
    let exchanges: ExchangeCollector
    /// The token's audit trail, when the target keeps one.
    let audit: AuditService?

    /// Opens the token, logs in, finds the key (refusing one that fails the policy) and builds
    /// a client that signs every request with it.
    @available(*, noasync, message: "it logs in and may wait for the audit log's lock: use the async form, which does so off the cooperative pool")
    public static func open(token target: TokenTarget, api: APITarget, observer: any OperationObserver) throws -> APISession {
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: api.auditDirectory)
        return try opened.recordingFailure(of: "api", auditDirectory: api.auditDirectory) {
            let audit = try api.auditDirectory.map { try AuditService.prepare(opened: opened, directory: $0, observer: observer) }
            return try make(opened: opened, key: try target.requireKey(), api: api, observer: observer, audit: audit)
        }
    }

    /// The same, from async code: the login and the audit trail's checks run off the
    /// cooperative pool (``BlockingBridge``).
    public static func open(token target: TokenTarget, api: APITarget, observer: any OperationObserver) async throws -> APISession {
        try await BlockingBridge.run { try openBlocking(token: target, api: api, observer: observer) }
    }

    private static func openBlocking(token target: TokenTarget, api: APITarget, observer: any OperationObserver) throws -> APISession {
        try open(token: target, api: api, observer: observer)
    }

    /// Records the attempts made so far in the audit trail (if there is one).
    func recordExchanges() throws {
        guard let audit else { return }
        let entries = exchanges.drain().map(\.auditEntry)
        if !entries.isEmpty { try audit.recordDone(entries, done: "\(entries.count) API request(s) were sent") }
    }

    /// Runs `call`, recording its attempts whether it succeeds or fails.
    func recording<R>(_ call: () async throws -> R) async throws -> R {
        do {
            let result = try await call()
            try recordExchanges()
            return result
        } catch {
            try? recordExchanges()
            token.appendFailure(command: "api", error: error, auditDirectory: audit?.log.directory)
            throw error
        }
    }

    /// The same, on a token this command has already opened and logged in to.
    public static func make(opened: OpenedToken, key: KeySelector, api: APITarget, observer: any OperationObserver) throws -> APISession {
        try make(opened: opened, key: key, api: api, observer: observer, audit: nil)
    }

    static func make(opened: OpenedToken, key: KeySelector, api: APITarget, observer: any OperationObserver,
                     audit: AuditService?) throws -> APISession {
        let pair = try during("reading key '\(key)'", token: opened.token.info.label, key: "\(key)") { try KeyStore.findUsable(key, in: opened.session) }
        let signer = try during("opening a signing session on token '\(opened.token.info.label)'", token: opened.token.info.label, key: "\(key)") {
            try TokenSigner(keyPair: pair, slot: opened.token.slot)
        }
        let issuer = try RequestTokenIssuer(apiKey: api.apiKey, signer: TokenJWTSigner(signer), lifetime: api.jwtLifetime)
        let exchanges = ExchangeCollector()
        var options = api.options
        options.onExchange = { exchanges.append($0) }
        let client = FireblocksClient(baseURL: api.baseURL, issuer: issuer, options: options, transport: api.transport,
                                      diagnostics: { observer.note($0) })
        return APISession(token: opened, signer: signer, client: client, exchanges: exchanges, audit: audit)
    }
}

/// `jwt`, `request`, `api-user create`, `api-user list`.
public enum APIOperations {
    /// A bearer token for one request, signed on the token.
    ///
    /// Without a base URL the path must be the whole path (`/v1/…`): it is the `uri` claim as is.
    public static func jwt(token: TokenTarget, apiKey: String, baseURL: APIBaseURL?, jwtLifetime: Int, method: String,
                           path: String, body: [UInt8]?, auditDirectory: URL? = nil, observer: any OperationObserver) throws -> String {
        let uri = try baseURL.map { try $0.resolve(path: path).uri } ?? APIBaseURL.uri(forWholePath: path)
        // Read-only: this session only finds the key. The audit trail writes on a read-write
        // session of its own, so the command still holds one read-write session at a time (the
        // limit some smart cards have).
        let opened = try OpenedToken.open(token, readWrite: false, logIn: true, observer: observer,
                                          auditDirectory: auditDirectory)
        return try opened.recordingFailure(of: "jwt", auditDirectory: auditDirectory) {
            let key = try token.requireKey()
            let claims = try RequestTokenIssuer.claims(apiKey: apiKey, lifetime: jwtLifetime, uri: uri, body: body,
                                                       issuedAt: Int(Date().timeIntervalSince1970),
                                                       nonce: UUID().uuidString.lowercased())
            let payload = try claims.serialized()
            // Two threads, two sessions. This one finds the key and signs; the other opens the
            // audit trail on a session of its own and, once the key is known, makes the record
            // durable and anchors its checkpoint while the token signs.
            // The JWT leaves this function only once both are done: no JWT exists without its
            // durable record. A signature that fails after its record was written is followed
            // by `command.failed`.
            // A trail without the free space it keeps refuses before the token signs anything
            // (the trail's thread would find out only while the JWT is being signed).
            if let auditDirectory {
                try AuditService(opened: opened, directory: auditDirectory, observer: observer).requireFreeSpace()
            }
            let found = Handoff<TokenKeyPair>()
            let recording = auditDirectory.map { directory in
                let (module, located) = (opened.module, opened.token)
                return BackgroundWork { () throws -> Void in
                    let trail = try OpenedToken.sharing(module: module, token: located, readWrite: true)
                    let audit = try AuditService.prepare(opened: trail, directory: directory, observer: observer, checkingAnchor: false)
                    let pair = try found.wait()
                    // The claims are recorded, never the token: it is a bearer credential.
                    let entry = AuditEntry(event: "jwt.signed", facts: [
                        "method": .string(method.uppercased()), "uri": .string(claims.uri), "nonce": .string(claims.nonce),
                        "bodyHash": .string(claims.bodyHash), "iat": .integer(claims.iat), "exp": .integer(claims.exp),
                        "sub": .string(claims.sub), "key": .string(pair.label)])
                    do {
                        try audit.record([entry])
                    } catch {
                        // An untrusted trail keeps its own class (exit 11, 3 or 7); anything else
                        // is a record that could not be written.
                        throw OperationError(OperationError.auditCode(for: error),
                                             "the JWT was not output: its audit record could not be written (\(error))")
                    }
                }
            }
            let jwt: String
            do {
                let pair: TokenKeyPair
                do {
                    pair = try during("reading key '\(key)'", token: opened.token.info.label, key: "\(key)") { try KeyStore.findUsable(key, in: opened.session) }
                    found.put(.success(pair))
                } catch {
                    found.put(.failure(error))
                    throw error
                }
                let signer = try during("opening a signing session on token '\(opened.token.info.label)'", token: opened.token.info.label, key: "\(key)") {
                    try TokenSigner(keyPair: pair, slot: opened.token.slot)
                }
                jwt = try during("signing the JWT", token: opened.token.info.label, key: "\(key)") { try CompactJWS.sign(payload: payload, with: TokenJWTSigner(signer)).compact }
            } catch {
                // Never leave with the trail's thread at work on the token.
                _ = try? recording?.wait()
                throw error
            }
            try recording?.wait()
            return jwt
        }
    }

    /// Any request, curl-like. Retried only when safe (GET, or with an idempotency key).
    public static func request(token: TokenTarget, api: APITarget, method: String, path: String, body: [UInt8]?,
                               idempotencyKey: String?, observer: any OperationObserver) async throws -> APIResponse {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        return try await session.recording {
            try await session.client.send(APIRequest(method: method, path: path, body: body, idempotencyKey: idempotencyKey))
        }
    }

    /// Reads and checks a CSR file: PEM, a certificate request whose self-signature verifies.
    public static func readCSR(path: String) throws -> (pem: String, csr: CertificateSigningRequest) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw OperationError(.invalidInput, "cannot read the CSR file \(path)")
        }
        let pem = String(decoding: data, as: UTF8.self)
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw OperationError(.invalidInput, "\(path) is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)")
        }
        guard CSRBuilder.hasValidSelfSignature(csr) else {
            throw OperationError(.invalidInput, "the self-signature of the CSR in \(path) does not verify; it would be refused")
        }
        return (String(pem.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()) + "\n", csr)
    }

    /// Creates an API user, idempotently, refusing a key that already backs another user and
    /// identifying the new user (see ``FireblocksClient/createAPIUserIdentifying(_:store:idempotencyKey:allowKeyReuse:)``).
    /// The CSR's key must be on the token (``TokenKeysError/Code/keyNotOnToken`` before anything
    /// is sent) unless `allowKeyOffToken`; the creation is recorded as `api-user.created` with the
    /// CSR's and key's digests and where the key lives.
    public static func createAPIUser(token: TokenTarget, api: APITarget, user: CreateAPIUser, idempotencyKey: String?,
                                     allowKeyReuse: Bool, allowKeyOffToken: Bool = false,
                                     observer: any OperationObserver) async throws -> APIUserCreationReport {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let key = try session.token.recordingFailure(of: "api-user create", auditDirectory: api.auditDirectory) {
            let key = try CSRKeyFacts.of(csrPEM: user.csrPem, session: session.token.session)
            if key.onToken == nil, !allowKeyOffToken {
                throw OperationError(.keyNotOnToken, "the CSR's key (SPKI SHA-256 \(key.spkiSHA256)) is not on token '\(session.token.token.info.label)': its private key lives somewhere else, such as a file, which is what this tool exists to avoid; nothing was sent")
            }
            if key.onToken == nil { observer.note("warning: the CSR's key is not on token '\(session.token.token.info.label)'; registering it anyway, as asked (recorded)") }
            return key
        }
        let result = try await session.recording {
            try await session.client.createAPIUserIdentifying(user, store: api.idempotencyStore,
                                                              idempotencyKey: idempotencyKey, allowKeyReuse: allowKeyReuse)
        }
        result.warnings.forEach(observer.note)
        let report = APIUserCreationReport(name: user.name, role: user.role, result: result, baseURL: api.baseURL.description)
        try session.audit?.recordDone([key.entry(name: user.name, role: user.role, userID: result.identification.user?.id, extra: [
            "result": .string(report.result), "xRequestID": .string(report.requestID ?? ""),
            "idempotencyKey": .string(report.idempotencyKey), "baseURL": .string(api.baseURL.description),
            "allowKeyOffToken": .bool(allowKeyOffToken), "via": .string("api-user create"),
        ])], done: "API user '\(user.name)' was created")
        return report
    }

    /// Lists the workspace's API users.
    public static func listAPIUsers(token: TokenTarget, api: APITarget, observer: any OperationObserver) async throws -> (users: [APIUser], requestID: String?) {
        let session = try await APISession.open(token: token, api: api, observer: observer)
        let (users, response) = try await session.recording { try await session.client.listAPIUsers() }
        return (users, response.requestID)
    }
}

/// What `api-user create` reports.
public struct APIUserCreationReport: Codable, Sendable, Equatable {
    /// The name.
    public let name: String
    /// The role.
    public let role: String
    /// `submitted`, or `already-submitted` when an earlier run got it accepted (nothing sent now).
    public let result: String
    /// The request id.
    public let requestID: String?
    /// The idempotency key.
    public let idempotencyKey: String
    /// How many sends it took.
    public let attempts: Int?
    /// The base URL.
    public let baseURL: String
    /// `identified` (``userID`` is the new user), `not-listed-yet` (awaiting approval), `ambiguous`
    /// (see ``candidates``) or `unknown` (the list could not be read).
    public let userIdentification: String
    /// The new user's id (its API key), only when exactly one new listed user matches.
    public let userID: String?
    /// The ids that could be the new user, when it is ambiguous.
    public let candidates: [String]

    init(name: String, role: String, result: APIUserCreationResult, baseURL: String) {
        self.name = name
        self.role = role
        self.baseURL = baseURL
        let outcome = result.outcome
        idempotencyKey = outcome.idempotencyKey
        requestID = outcome.requestID
        switch outcome {
        case .submitted(_, _, let attempts):
            self.result = "submitted"
            self.attempts = attempts
        case .alreadySubmitted:
            self.result = "already-submitted"
            attempts = nil
        }
        switch result.identification {
        case .identified(let user):
            userIdentification = "identified"
            userID = user.id
            candidates = []
        case .notListedYet:
            userIdentification = "not-listed-yet"
            userID = nil
            candidates = []
        case .ambiguous(let users):
            userIdentification = "ambiguous"
            userID = nil
            candidates = users.map(\.id)
        case .unknown:
            userIdentification = "unknown"
            userID = nil
            candidates = []
        }
    }
}

/// Collects the attempts of a client (its `onExchange` runs on any thread).
final class ExchangeCollector: Sendable {
    private let exchanges = Mutex<[APIExchange]>([])
    func append(_ exchange: APIExchange) { exchanges.withLock { $0.append(exchange) } }
    func drain() -> [APIExchange] { exchanges.withLock { list in defer { list = [] }; return list } }
}

extension APIExchange {
    /// The `api.call` record of the attempt: what was sent and answered, and the JWT's claims
    /// (never the token).
    var auditEntry: AuditEntry {
        var facts: [String: AuditValue] = [
            "method": .string(method), "uri": .string(uri), "attempt": .integer(attempt),
            "jwt": .object(["uri": .string(claims.uri), "nonce": .string(claims.nonce), "iat": .integer(claims.iat),
                            "exp": .integer(claims.exp), "sub": .string(claims.sub), "bodyHash": .string(claims.bodyHash)]),
        ]
        if let status { facts["httpStatus"] = .integer(status) }
        if let requestID { facts["xRequestID"] = .string(requestID) }
        if let idempotencyKey { facts["idempotencyKey"] = .string(idempotencyKey) }
        let ok = status.map { (200...299).contains($0) } ?? false
        return AuditEntry(event: "api.call", outcome: ok ? .ok : .failed(failure ?? "HTTP \(status ?? 0)"), facts: facts)
    }
}
