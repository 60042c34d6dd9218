import Crypto
import DurableFiles
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One intent to change something through the API, as recorded before the first send.
public struct IdempotencyRecord: Codable, Equatable, Sendable {
    /// State.
    public enum State: String, Codable, Sendable {
        /// Recorded, maybe sent; the outcome is unknown. A re-run sends the same key and bytes.
        case pending
        /// The API accepted it (2xx). Never sent again.
        case completed
        /// The API refused it for good (4xx). A re-run of the same intent starts afresh.
        case rejected
    }

    /// The idempotency key.
    public let idempotencyKey: String
    /// SHA-256 of method, base URL, path, API key and body: what makes two runs "the same intent".
    public let intent: String
    /// The method.
    public let method: String
    /// The URL.
    public let url: String
    /// The API key.
    public let apiKey: String
    /// The body SHA-256.
    public let bodySHA256: String
    /// The exact body bytes (UTF-8 JSON), re-sent as they are.
    public let body: String
    /// When it was made.
    public let createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// The state.
    public var state: State
    /// The HTTP status.
    public var httpStatus: Int?
    /// The request I ds.
    public var requestIDs: [String]
    /// For an API user's creation: the ids the user list held before the first send (nil when
    /// it could not be listed), so that the new user can be told apart from namesakes later.
    public var userIDsBefore: [String]?
    /// For an API user's creation: the new user's id, once identified.
    public var createdUserID: String?

    /// The body bytes.
    public var bodyBytes: [UInt8] { Array(body.utf8) }
}

/// Records idempotency keys and request bodies in a local JSON file *before* they are sent,
/// so that an automatic retry or a re-run after a crash reuses the same key and bytes, and the
/// same key is never used for a different body. Result: at most one effect per intent.
///
/// The file is rewritten atomically under an exclusive lock (concurrent runs are safe) with
/// mode 0600. It holds API keys and request bodies (CSRs, names), no secrets. What it holds is
/// sent again as it is, so every read first holds the file, its lock and their directory to the
/// trust rule of private state (`TrustedFile.verifyPrivateState`): this user's or root's,
/// writable by nobody else, no symbolic link; missing ones are made private. Otherwise
/// ``APIClientError/Code/untrustedState``, and nothing is sent.
public final class IdempotencyStore: Sendable {
    /// How long the API remembers an Idempotency-Key.
    public static let serverRetention: TimeInterval = 24 * 3600

    /// The file URL.
    public let fileURL: URL

    /// Creates the value from its parts.
    public init(fileURL: URL) {
        self.fileURL = fileURL
    }

    /// What to do about an intent.
    public enum Decision: Sendable {
        /// Send (or send again) with this record's key and body.
        case send(IdempotencyRecord)
        /// Already done in an earlier run: do not send.
        case alreadyCompleted(IdempotencyRecord)
    }

    /// The longest Idempotency-Key the API accepts.
    public static let maximumKeyLength = 40

    /// Refuses a key the API would not take: 1 to 40 printable ASCII characters, no spaces.
    /// Callers check a user's key before doing anything else, so nothing is made for nothing.
    public static func validate(key: String) throws(APIClientError) {
        guard !key.isEmpty, key.utf8.count <= maximumKeyLength,
              key.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
            throw APIClientError(.badInput, "an Idempotency-Key is 1 to \(maximumKeyLength) printable ASCII characters without spaces (the API's limit)")
        }
    }

    /// Finds or creates the record for an intent and writes it before returning.
    /// - Parameter explicitKey: a key the user chose (`--idempotency-key`), at most 40
    ///   printable ASCII characters (the API's limit; refused here rather than by the server).
    public func begin(method: String, url: String, apiKey: String, body: [UInt8], explicitKey: String?,
                      now: Date = Date()) throws -> Decision {
        if let explicitKey { try Self.validate(key: explicitKey) }
        let bodyHash = sha256Hex(body)
        let intent = sha256Hex(Data("\(method)\n\(url)\n\(apiKey)\n\(bodyHash)".utf8))
        return try withLockedRecords { records in
            if let explicitKey {
                if let index = records.firstIndex(where: { $0.idempotencyKey == explicitKey }) {
                    let existing = records[index]
                    guard existing.bodySHA256 == bodyHash, existing.url == url, existing.method == method else {
                        throw APIClientError(.idempotencyConflict, "Idempotency-Key '\(explicitKey)' was used on \(Self.format(existing.createdAt)) for a different request; the same key with a different body is refused (choose a new key)")
                    }
                    return try decide(&records[index], now: now)
                }
                let record = newRecord(key: explicitKey, intent: intent, method: method, url: url, apiKey: apiKey,
                                       bodyHash: bodyHash, body: body, now: now)
                records.append(record)
                return .send(record)
            }
            if let index = records.lastIndex(where: { $0.intent == intent && $0.state != .rejected }) {
                return try decide(&records[index], now: now)
            }
            let record = newRecord(key: UUID().uuidString.lowercased(), intent: intent, method: method, url: url,
                                   apiKey: apiKey, bodyHash: bodyHash, body: body, now: now)
            records.append(record)
            return .send(record)
        }
    }

    /// Records the outcome of a send.
    public func finish(key: String, state: IdempotencyRecord.State, httpStatus: Int?, requestID: String?, now: Date = Date()) throws {
        try withLockedRecords { records in
            guard let index = records.firstIndex(where: { $0.idempotencyKey == key }) else { return }
            records[index].state = state
            records[index].httpStatus = httpStatus
            records[index].updatedAt = now
            if let requestID { records[index].requestIDs.append(requestID) }
        }
    }

    /// Sets what is known about an API user's creation (baseline, identified id) on a record.
    public func annotate(key: String, userIDsBefore: [String]?? = nil, createdUserID: String? = nil) throws {
        try withLockedRecords { records in
            guard let index = records.firstIndex(where: { $0.idempotencyKey == key }) else { return }
            if let userIDsBefore, records[index].userIDsBefore == nil { records[index].userIDsBefore = userIDsBefore }
            if let createdUserID { records[index].createdUserID = createdUserID }
        }
    }

    /// API user creations (sent or accepted, not refused) whose CSR carries the public key with
    /// this SHA-256 (of its DER SubjectPublicKeyInfo).
    public func creations(backedBy publicKeySHA256: String) throws -> [(name: String, url: String)] {
        try records().compactMap { record in
            guard record.method == "POST", record.url.hasSuffix("/management/api_users"), record.state != .rejected,
                  FireblocksClient.publicKeyDigest(creationBody: record.body) == publicKeySHA256 else { return nil }
            return (FireblocksClient.creationName(record.body) ?? "?", record.url)
        }
    }

    /// Every record (for inspection and tests).
    public func records() throws -> [IdempotencyRecord] {
        try withLockedRecords { $0 }
    }

    private func decide(_ record: inout IdempotencyRecord, now: Date) throws -> Decision {
        switch record.state {
        case .completed:
            return .alreadyCompleted(record)
        case .pending, .rejected:
            if now.timeIntervalSince(record.createdAt) > Self.serverRetention - 600 {
                throw APIClientError(.idempotencyConflict, "the request recorded on \(Self.format(record.createdAt)) never got an answer and its Idempotency-Key has expired at the API: check whether it took effect (list the API users) before sending again with a new Idempotency-Key")
            }
            record.state = .pending
            record.updatedAt = now
            return .send(record)
        }
    }

    private func newRecord(key: String, intent: String, method: String, url: String, apiKey: String,
                           bodyHash: String, body: [UInt8], now: Date) -> IdempotencyRecord {
        IdempotencyRecord(idempotencyKey: key, intent: intent, method: method, url: url, apiKey: apiKey,
                          bodySHA256: bodyHash, body: String(decoding: body, as: UTF8.self), createdAt: now,
                          updatedAt: now, state: .pending, httpStatus: nil, requestIDs: [], userIDsBefore: nil,
                          createdUserID: nil)
    }

    private static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    /// Refuses records others could have written (see the type's description), without
    /// reading them: for a caller that must not start what it could not finish.
    public func requireTrusted() throws(APIClientError) {
        do {
            try file.requireTrusted()
        } catch {
            throw Self.untrusted(error)
        }
    }

    private var file: LockedJSONFile<StoreFile> {
        LockedJSONFile<StoreFile>(path: fileURL.path) { StoreFile(version: 1, records: []) }
    }

    private static func untrusted(_ error: TrustedFileError) -> APIClientError {
        let remedy = TrustedFile.remedy(for: error).map { "; once you know nobody else changed it, fix it with: \($0)" } ?? ""
        return APIClientError(.untrustedState, "\(error): the idempotency records (what is sent again, and with which Idempotency-Key) cannot be trusted when others could have written them, so nothing was read or sent\(remedy)")
    }

    /// Reads, lets `body` change, and writes back atomically, all under `flock`.
    private func withLockedRecords<R>(_ body: (inout [IdempotencyRecord]) throws -> R) throws -> R {
        do {
            return try file.update { stored in try body(&stored.records) }
        } catch let error as TrustedFileError {
            throw Self.untrusted(error)
        }
    }

    private struct StoreFile: Codable, Equatable {
        var version: Int
        var records: [IdempotencyRecord]
    }
}
