#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import X509

/// What `createAPIUser` did.
public enum APIUserCreationOutcome: Sendable {
    /// The API accepted the request ("approval request has been sent"; 200 has no body).
    case submitted(requestID: String?, idempotencyKey: String, attempts: Int)
    /// An earlier run already got it accepted; nothing was sent.
    case alreadySubmitted(IdempotencyRecord)

    /// The idempotency key.
    public var idempotencyKey: String {
        switch self {
        case .submitted(_, let key, _): return key
        case .alreadySubmitted(let record): return record.idempotencyKey
        }
    }

    /// The request id.
    public var requestID: String? {
        switch self {
        case .submitted(let requestID, _, _): return requestID
        case .alreadySubmitted(let record): return record.requestIDs.last
        }
    }
}

/// Which listed user a creation made. The create answer carries no id, and names are not
/// unique, so the id is reported only when exactly one listed user has the name and role and
/// was not listed before the first send.
public enum CreatedUserIdentification: Sendable, Equatable {
    /// Exactly one candidate.
    case identified(APIUser)
    /// No candidate yet: a user awaiting the admin quorum's approval may not be listed.
    case notListedYet
    /// Several candidates (or a namesake whose age cannot be told): the id is not guessed.
    case ambiguous([APIUser])
    /// The list could not be read afterwards (the reason).
    case unknown(String)

    /// The user, when identified.
    public var user: APIUser? {
        if case .identified(let user) = self { return user }
        return nil
    }
}

/// The result of ``FireblocksClient/createAPIUserIdentifying(_:store:idempotencyKey:allowKeyReuse:)``.
public struct APIUserCreationResult: Sendable {
    /// The outcome.
    public let outcome: APIUserCreationOutcome
    /// The identification.
    public let identification: CreatedUserIdentification
    /// Things the caller should show (a namesake exists, a key is reused by permission, the list
    /// could not be read first).
    public let warnings: [String]
}

extension FireblocksClient {
    /// `POST /v1/management/api_users`, safely: the body is serialised once; an Idempotency-Key
    /// (given, or generated) is recorded with the body in `store` before the first send; every
    /// automatic retry and every re-run of the same intent sends the same key and bytes; a
    /// request already accepted is not sent again.
    public func createAPIUser(_ user: CreateAPIUser, store: IdempotencyStore, idempotencyKey: String?) async throws -> APIUserCreationOutcome {
        let path = "/management/api_users"
        let (url, _) = try baseURL.resolve(path: path)
        let decision = try store.begin(method: "POST", url: url.absoluteString, apiKey: issuer.apiKey,
                                       body: try user.serialized(), explicitKey: idempotencyKey)
        let record: IdempotencyRecord
        switch decision {
        case .alreadyCompleted(let done):
            return .alreadySubmitted(done)
        case .send(let pending):
            record = pending
        }
        do {
            let response = try await send(APIRequest(method: "POST", path: path, body: record.bodyBytes,
                                                     idempotencyKey: record.idempotencyKey))
            try store.finish(key: record.idempotencyKey, state: .completed, httpStatus: response.status, requestID: response.requestID)
            return .submitted(requestID: response.requestID, idempotencyKey: record.idempotencyKey, attempts: response.attempts)
        } catch let error as FireblocksAPIError where (400...499).contains(error.status) && error.status != 429 {
            // Refused for good: nothing was created, and a corrected re-run starts afresh.
            try store.finish(key: record.idempotencyKey, state: .rejected, httpStatus: error.status, requestID: error.requestID)
            throw error
        }
        // Anything else (no answer, 5xx/429 after retries) leaves the record pending: the outcome is
        // unknown, and a re-run re-sends the same key and bytes.
    }

    /// ``createAPIUser(_:store:idempotencyKey:)`` with the checks around it that keep one key
    /// behind one user and say which user was made:
    /// - a CSR whose public key already backs another creation recorded in `store` is refused
    ///   (`keyReuse`) unless `allowKeyReuse`, which turns it into a warning;
    /// - before the first send the user list is read: a namesake is warned about, and the ids
    ///   are recorded with the request so that later runs can tell the new user apart;
    /// - afterwards the list is read again and the new user identified (see
    ///   ``CreatedUserIdentification``); an identified id is recorded too.
    public func createAPIUserIdentifying(_ user: CreateAPIUser, store: IdempotencyStore, idempotencyKey: String?,
                                         allowKeyReuse: Bool) async throws -> APIUserCreationResult {
        var warnings: [String] = []
        let body = try user.serialized()
        let (url, _) = try baseURL.resolve(path: "/management/api_users")
        let bodyHash = sha256Hex(body)

        // One key, one user.
        if let key = Self.publicKeyDigest(csrPEM: user.csrPem) {
            let others = try store.records().filter { record in
                record.method == "POST" && record.url.hasSuffix("/management/api_users") && record.state != .rejected
                    && record.bodySHA256 != bodyHash && Self.publicKeyDigest(creationBody: record.body) == key
            }
            if let other = others.last {
                let who = Self.creationName(other.body).map { "'\($0)'" } ?? "another user"
                let fact = "the CSR's public key already backs API user \(who), created from this machine at \(other.url) on \(other.createdAt.formatted(.iso8601))"
                guard allowKeyReuse else {
                    throw APIClientError(.keyReuse, fact + "; one key must not back two API users (make a new key, or allow the reuse explicitly)")
                }
                warnings.append("warning: \(fact); creating another user with it as explicitly allowed")
            }
        }

        // Who is there before: recorded once, with the intent, before its first send.
        let existing = try store.records().last { $0.bodySHA256 == bodyHash && $0.url == url.absoluteString && $0.state != .rejected }
        var before: [String]? = existing?.userIDsBefore
        if existing?.state != .completed, before == nil {
            do {
                let (users, _) = try await listAPIUsers()
                before = users.map(\.id)
                let namesakes = users.filter { $0.name == user.name }
                if !namesakes.isEmpty {
                    warnings.append("warning: the workspace already has \(namesakes.count == 1 ? "an API user" : "\(namesakes.count) API users") named '\(user.name)' (\(namesakes.map(\.id).joined(separator: ", "))); names are not unique, so the new user is told apart by id")
                }
            } catch {
                warnings.append("warning: the API users could not be listed before creating (\(error)); the new user's id is reported only if it is unambiguous")
            }
        }

        let outcome = try await createAPIUser(user, store: store, idempotencyKey: idempotencyKey)
        if before != nil {
            try store.annotate(key: outcome.idempotencyKey, userIDsBefore: .some(before))
        }
        let record = try store.records().first { $0.idempotencyKey == outcome.idempotencyKey }
        let baseline = record?.userIDsBefore ?? before
        let identification = await identify(name: user.name, role: user.role, baseline: baseline,
                                            known: record?.createdUserID)
        if case .identified(let created) = identification, record?.createdUserID == nil {
            try store.annotate(key: outcome.idempotencyKey, createdUserID: created.id)
        }
        return APIUserCreationResult(outcome: outcome, identification: identification, warnings: warnings)
    }

    /// The created user among the listed ones.
    func identify(name: String, role: String, baseline: [String]?, known: String?) async -> CreatedUserIdentification {
        let users: [APIUser]
        do {
            users = try await listAPIUsers().users
        } catch {
            return .unknown("\(error)")
        }
        if let known {
            return users.first { $0.id == known }.map { .identified($0) } ?? .notListedYet
        }
        let matching = users.filter { $0.name == name && ($0.role ?? role) == role }
        guard let baseline else {
            // Without the earlier list a namesake cannot be told from the new user.
            return matching.count == 1 ? .ambiguous(matching) : (matching.isEmpty ? .notListedYet : .ambiguous(matching))
        }
        let new = matching.filter { !baseline.contains($0.id) }
        switch new.count {
        case 0: return .notListedYet
        case 1: return .identified(new[0])
        default: return .ambiguous(new)
        }
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo of a PEM CSR.
    static func publicKeyDigest(csrPEM: String) -> String? {
        guard let csr = try? CertificateSigningRequest(pemEncoded: csrPEM),
              let spki = try? csr.publicKey.serializeAsPEM().derBytes else { return nil }
        return sha256Hex(spki)
    }

    /// The two fields of a recorded creation body this check reads.
    private struct RecordedCreation: Decodable {
        let csrPem: String?
        let name: String?
    }

    private static func recordedCreation(_ body: String) -> RecordedCreation? {
        try? JSONDecoder().decode(RecordedCreation.self, from: Data(body.utf8))
    }

    static func publicKeyDigest(creationBody: String) -> String? {
        recordedCreation(creationBody)?.csrPem.flatMap { publicKeyDigest(csrPEM: $0) }
    }

    static func creationName(_ body: String) -> String? {
        recordedCreation(body)?.name
    }
}
