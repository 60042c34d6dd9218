import Foundation

/// What `createAPIUser` did.
public enum APIUserCreationOutcome: Sendable {
    /// The API accepted the request ("approval request has been sent"; 200 has no body).
    case submitted(requestID: String?, idempotencyKey: String, attempts: Int)
    /// An earlier run already got it accepted; nothing was sent.
    case alreadySubmitted(IdempotencyRecord)

    public var idempotencyKey: String {
        switch self {
        case .submitted(_, let key, _): return key
        case .alreadySubmitted(let record): return record.idempotencyKey
        }
    }

    public var requestID: String? {
        switch self {
        case .submitted(let requestID, _, _): return requestID
        case .alreadySubmitted(let record): return record.requestIDs.last
        }
    }
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
}
