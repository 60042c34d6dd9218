import ErrorShape
import AuditTrail
import DurableFiles
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JOSE
import PKCS11
import TokenKeys
import HexEncoding

/// Formats `key export` writes.
public enum PublicKeyFormat: String, CaseIterable, Sendable {
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    case pem
    /// DER SubjectPublicKeyInfo.
    case der
    /// RFC 7517 JSON Web Key (`kty` RSA, `alg` RS256, `kid` = SHA-256 fingerprint).
    case jwk
}

/// `key generate`, `key show`, `key list`, `key export`.
public enum KeyOperations {
    /// Generates an RSA key pair on the token under the key policy and proves it.
    ///
    /// Holds the token-and-label lock (shared with `onboard`) from the "is the label free?"
    /// check to the end, so two runs for one label make one key; the label and id are checked
    /// before anything is announced or generated.
    public static func generate(target: TokenTarget, bits: UInt, id: [UInt8]?, stateDirectory: URL,
                                lockTimeout: TimeInterval, auditDirectory: URL, observer: any OperationObserver) throws -> KeyReport {
        let key = try target.requireKey()
        guard case .label(let label) = key else {
            throw OperationError(.invalidInput, "a new key takes a label, not a pkcs11: URI (the key does not exist yet)")
        }
        try KeyLabel.validateNew(label)
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: auditDirectory)
        return try opened.recordingFailure(of: "key generate", auditDirectory: auditDirectory) {
            let tokenLabel = opened.token.info.label
            let lock = try KeyLabelLock.acquire(stateDirectory: stateDirectory, tokenSerial: opened.token.info.serialNumber,
                                                keyLabel: label, timeout: lockTimeout, what: "key generate '\(label)'",
                                                waiting: observer.note)
            defer { lock.release() }
            try during("checking that label '\(label)' is free on token '\(tokenLabel)'", token: tokenLabel, key: label) {
                try KeyStore.requireUnused(label: label, id: id, in: opened.session)
            }
            try TokenCapabilities.requireKeyGeneration(on: opened.token.slot, bits: bits)
            let audit = try AuditService.prepare(opened: opened, directory: auditDirectory, observer: observer)
            let pair: TokenKeyPair
            do {
                pair = try during("generating an RSA-\(bits) key pair on token '\(tokenLabel)'", token: tokenLabel, key: label) {
                    try observer.slowStep("Generating RSA-\(bits) key pair '\(label)' on token '\(tokenLabel)'") {
                        try KeyGenerator.generate(KeyGenerationRequest(label: label, bits: bits, id: id), in: opened.session)
                    }
                }
            } catch let error as TokenKeysError where error.code == .policyViolation {
                try audit.recordDone([AuditEntry(event: "key.refused-by-policy", outcome: .failed(error.reason),
                                                 facts: ["label": .string(label), "bits": .integer(Int(bits))])],
                                     done: "the token did not honour the key policy and the pair was destroyed")
                throw error
            }
            try audit.recordDone([AuditEntry(event: "key.generated", facts: AuditService.facts(pair))],
                                 done: "key '\(label)' was generated on token '\(tokenLabel)'")
            return KeyReport(pair)
        }
    }

    /// The key's attributes and policy verdict (a failing key is shown, not refused).
    /// - Parameter auditDirectory: where a refused login is recorded.
    public static func show(target: TokenTarget, auditDirectory: URL? = nil, observer: any OperationObserver) throws -> KeyReport {
        let key = try target.requireKey()
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: auditDirectory)
        return KeyReport(try during("reading key '\(key)'", token: opened.token.info.label, key: "\(key)") { try KeyStore.find(key, in: opened.session) })
    }

    /// Every private key on the token, with its verdict.
    public static func list(target: TokenTarget, auditDirectory: URL? = nil, observer: any OperationObserver) throws -> [KeyReport] {
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: auditDirectory)
        return try during("listing the keys of token '\(opened.token.info.label)'", token: opened.token.info.label) {
            try KeyStore.list(in: opened.session).map(KeyReport.init)
        }
    }

    /// The public key in the requested format; refuses a key that fails the policy.
    public static func exportPublicKey(target: TokenTarget, format: PublicKeyFormat, auditDirectory: URL? = nil,
                                       observer: any OperationObserver) throws -> [UInt8] {
        let key = try target.requireKey()
        let opened = try OpenedToken.open(target, readWrite: false, logIn: true, observer: observer, auditDirectory: auditDirectory)
        // The audit key (EC P-256) is exported like any other: PEM or DER SubjectPublicKeyInfo.
        if case .label(let label) = key, let audit = try ECKeys.find(label: label, in: opened.session) {
            guard audit.provenance.verdict.meetsPolicy else {
                throw OperationError(.policyViolation, "EC key '\(label)' fails the audit key policy and is not exported")
            }
            switch format {
            case .pem: return Array((audit.publicKey.pemRepresentation + "\n").utf8)
            case .der: return audit.subjectPublicKeyInfoDER
            case .jwk: throw OperationError(.invalidInput, "the audit key is exported as pem or der")
            }
        }
        let pair = try during("reading key '\(key)'", token: opened.token.info.label, key: "\(key)") { try KeyStore.findUsable(key, in: opened.session) }
        guard let publicKey = pair.publicKey else {
            throw OperationError(.notAnRSAKey, "key '\(pair.label)' has no readable RSA public key", facts: ErrorFacts(keyLabel: pair.label))
        }
        switch format {
        case .pem:
            return Array((publicKey.pem + "\n").utf8)
        case .der:
            return publicKey.subjectPublicKeyInfoDER
        case .jwk:
            let jwk = RSAPublicJWK(modulus: publicKey.modulus, publicExponent: publicKey.publicExponent,
                                   keyID: publicKey.fingerprint)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return Array(try encoder.encode(jwk)) + [0x0A]
        }
    }
}

/// A key deletion, planned: what will be destroyed, shown before anything is.
public final class KeyDeletion {
    /// One object to destroy.
    public struct Item: Codable, Sendable, Equatable {
        /// `private` or `public`.
        public let kind: String
        /// The label.
        public let label: String
        /// The id.
        public let id: String
        /// SHA-256 of the DER SubjectPublicKeyInfo, when readable.
        public let fingerprintSHA256: String?
    }

    /// What the deletion covers.
    public struct Plan: Codable, Sendable, Equatable {
        /// The token (label).
        public let token: String
        /// The token serial.
        public let tokenSerial: String
        /// The items.
        public let items: [Item]
        /// API users this machine recorded the key as backing (creations sent or accepted).
        public let backs: [String]
        /// The same users, each with what is known of its retirement.
        public internal(set) var backedUsers: [BackedUser]

        /// The backed users not known to be retired: while there is one, deleting the key is
        /// refused unless forced (that user could never sign again).
        public var blocking: [BackedUser] { backedUsers.filter { $0.retired == nil } }
    }

    /// An API user a key is recorded as backing.
    public struct BackedUser: Codable, Sendable, Equatable {
        /// Its name.
        public let name: String
        /// Its id, when it was seen listed.
        public let apiUserID: String?
        /// The API base URL it was created at, when recorded.
        public let baseURL: String?
        /// How it is described (name, role, id, base URL).
        public let description: String
        /// Why it is known to be retired: a successor recorded at onboarding, or the API's user
        /// list (absent, or disabled). Nil: it may still sign with this key.
        public internal(set) var retired: String?
        /// What the API's user list said of it, when it was asked.
        public internal(set) var upstream: String?
        /// Whether ``retired`` rests on an earlier check's `api-user.retired` record in the audit
        /// trail (not asked again unless the API is).
        public internal(set) var retiredByRecord = false
    }

    /// The plan.
    public private(set) var plan: Plan
    private let opened: OpenedToken
    private let handles: [ObjectHandle]
    private let records: OnboardingRecords
    private let labels: [(label: String, fingerprint: String?)]
    private let audit: AuditService
    /// The backed users retired by an earlier check's record rather than by what is known now:
    /// asked again when the API is asked (a user disabled then may have been enabled since).
    private let retiredByRecord: Set<Int>
    private let observer: any OperationObserver

    private init(plan: Plan, opened: OpenedToken, handles: [ObjectHandle], records: OnboardingRecords,
                 labels: [(label: String, fingerprint: String?)], audit: AuditService, observer: any OperationObserver) {
        self.observer = observer
        self.plan = plan
        self.opened = opened
        self.handles = handles
        self.records = records
        self.labels = labels
        self.audit = audit
        self.retiredByRecord = Set(plan.backedUsers.indices.filter { plan.backedUsers[$0].retiredByRecord })
    }

    /// Finds the key pair (or the lone public half an interrupted generation left) the selector
    /// names, and what it is recorded as backing. Destroys nothing.
    public static func plan(target: TokenTarget, stateDirectory: URL, auditDirectory: URL,
                            observer: any OperationObserver) throws -> KeyDeletion {
        let selector = try target.requireKey()
        let opened = try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: auditDirectory)
        let session = opened.session
        let info = opened.token.info
        var items: [Item] = []
        var handles: [ObjectHandle] = []
        var fingerprint: String?
        var labels: [(String, String?)] = []

        let privateKeys = try during("looking for key '\(selector)'", token: info.label, key: "\(selector)") {
            try session.findObjects([.class(.privateKey)] + selector.searchTemplate)
        }
        if privateKeys.count > 1 {
            throw OperationError(.ambiguousKey, "\(privateKeys.count) private keys match '\(selector)' on token '\(info.label)'", facts: ErrorFacts(tokenLabel: info.label, keyLabel: "\(selector)"))
        }
        if privateKeys.count == 1 {
            let pair = try during("reading key '\(selector)'", token: info.label, key: "\(selector)") { try KeyStore.find(selector, in: session) }
            fingerprint = pair.publicKey?.fingerprint
            items.append(Item(kind: "private", label: pair.label, id: hex(pair.id), fingerprintSHA256: fingerprint))
            handles.append(pair.privateKey)
            if let publicObject = pair.publicKeyObject {
                items.append(Item(kind: "public", label: pair.label, id: hex(pair.id), fingerprintSHA256: fingerprint))
                handles.append(publicObject)
            }
            labels.append((pair.label, fingerprint))
        } else {
            // No private key: the public halves alone (what an interrupted generation leaves).
            let publicKeys = try during("looking for key '\(selector)'", token: info.label, key: "\(selector)") {
                try session.findObjects([.class(.publicKey)] + selector.searchTemplate)
            }
            guard !publicKeys.isEmpty else {
                throw OperationError(.keyNotFound, "no key '\(selector)' on token '\(info.label)'", facts: ErrorFacts(tokenLabel: info.label, keyLabel: "\(selector)"))
            }
            for object in publicKeys {
                let attributes = try during("reading public key '\(selector)'", token: info.label, key: "\(selector)") {
                    try session.attributes([.label, .id, .modulus, .publicExponent], of: object)
                }
                let label = attributes[.label]?.attribute.flatMap { if case .label(let value) = $0 { return value } else { return nil } } ?? ""
                let id = attributes[.id]?.attribute?.bytesValue ?? []
                var publicFingerprint: String?
                if let modulus = attributes[.modulus]?.attribute?.bytesValue,
                   let exponent = attributes[.publicExponent]?.attribute?.bytesValue {
                    publicFingerprint = (try? TokenRSAPublicKey(modulus: modulus, publicExponent: exponent))?.fingerprint
                }
                items.append(Item(kind: "public", label: label, id: hex(id), fingerprintSHA256: publicFingerprint))
                handles.append(object)
                labels.append((label, publicFingerprint))
            }
        }

        let records = OnboardingRecords(stateDirectory: stateDirectory)
        var backed: [BackedUser] = []
        if let fingerprint {
            for record in try records.records(fingerprint: fingerprint) where record.stage >= .submitting {
                backed.append(BackedUser(
                    name: record.name, apiUserID: record.apiUserID, baseURL: record.baseURL,
                    description: "'\(record.name)' (\(record.role)\(record.apiUserID.map { ", id \($0)" } ?? ""), at \(record.baseURL ?? "?"))",
                    retired: nil, upstream: nil))
            }
            let store = IdempotencyStore(fileURL: stateDirectory.appendingPathComponent("idempotency.json"))
            for creation in try store.creations(backedBy: fingerprint) where !backed.contains(where: { $0.name == creation.name }) {
                // The creation's own API: checked against that one only, never whatever API is set now.
                let base = creation.url.hasSuffix("/management/api_users") ? String(creation.url.dropLast("/management/api_users".count)) : creation.url
                backed.append(BackedUser(name: creation.name, apiUserID: nil, baseURL: base, description: "'\(creation.name)' (\(creation.url))",
                                         retired: nil, upstream: nil))
            }
            // A successor onboarded to replace the user retires it by record, when it was created
            // and identified at the very API the user was (a rehearsal against the stand-in never
            // retires a production user). The records were read only because they could not have
            // been written by someone else (OnboardingRecords holds them to the trust rule of
            // private state): a forged successor never stands in for --force.
            for index in backed.indices {
                let recorded = backed[index].baseURL.map(Self.normalized)
                let successors = try records.successors(tokenSerial: info.serialNumber, of: backed[index].name).filter {
                    $0.stage == .submitted && $0.apiUserID != nil && recorded != nil && $0.baseURL.map(Self.normalized) == recorded
                }
                if let successor = successors.first {
                    backed[index].retired = "succeeded by API user '\(successor.name)'\(successor.apiUserID.map { " (id \($0))" } ?? ""), as recorded when it was onboarded"
                }
            }
        }
        let backs = backed.map(\.description)
        // Prepared (the log found to extend the checkpoint anchored on the token) before its
        // records are taken as evidence below.
        let audit = try AuditService.prepare(opened: opened, directory: auditDirectory, observer: observer)
        try Self.applyRecordedRetirements(to: &backed, in: audit)
        let plan = Plan(token: info.label, tokenSerial: info.serialNumber, items: items, backs: backs, backedUsers: backed)
        return KeyDeletion(plan: plan, opened: opened, handles: handles, records: records, labels: labels, audit: audit, observer: observer)
    }

    /// The event recorded when the API's user list shows a user retired (disabled, or its
    /// recorded id no longer listed): what a later deletion takes as evidence instead of asking
    /// again.
    public static let retiredEvent = "api-user.retired"

    /// Users an earlier check recorded as retired in this token's audit trail (an
    /// ``retiredEvent`` record for the user's recorded id, at the API it was created at) are
    /// retired: the trail was found to extend its anchored checkpoint, and its records after it
    /// each in place. A user without a recorded id is never retired by a record (a name is not
    /// an identity).
    private static func applyRecordedRetirements(to backed: inout [BackedUser], in audit: AuditService) throws {
        let waiting = backed.indices.filter { backed[$0].retired == nil && backed[$0].apiUserID != nil && backed[$0].baseURL != nil }
        guard !waiting.isEmpty else { return }
        let decoder = JSONDecoder()
        var found: [String: (record: AuditRecord, how: String)] = [:]
        // A record in an archived segment is not found: the user then stays unretired here
        // (which refuses more, never less).
        for line in try audit.log.lines(skippingArchived: true) {
            // Cheap before decoding: most records are of other events.
            guard line.count > retiredEvent.utf8.count, String(decoding: line, as: UTF8.self).contains("\"\(retiredEvent)\""),
                  let record = try? decoder.decode(AuditRecord.self, from: Data(line)),
                  record.event == retiredEvent, record.outcome.result == "ok",
                  case .string(let id)? = record.facts["id"], case .string(let base)? = record.facts["baseURL"] else { continue }
            let how: String
            if case .string(let text)? = record.facts["how"] { how = text } else { how = "retired" }
            found["\(normalized(base))\n\(id)"] = (record, how)
        }
        for index in waiting {
            guard let id = backed[index].apiUserID, let base = backed[index].baseURL,
                  let evidence = found["\(normalized(base))\n\(id)"] else { continue }
            backed[index].retired = "\(evidence.how) at \(normalized(base)), as the API's user list showed on \(evidence.record.time) (audit record \(evidence.record.seq))"
            backed[index].retiredByRecord = true
        }
    }

    /// Asks the API, with the admin key `adminKey` on the same token, whether the API users
    /// the key backs still exist: a user listed with its recorded id (or, without one, its
    /// name) and enabled still blocks the deletion; one disabled, or absent although its id was
    /// recorded (so it had been listed), is retired. A user without a recorded id that is not
    /// listed may still await approval (such users are not listed), so it keeps blocking. Users
    /// recorded at another base URL are left as they are. The request is recorded in the
    /// audit trail, and so is each retirement it shows (``retiredEvent``: the user's name, id,
    /// the API, `how`: removed or disabled, and the key), before anything is deleted.
    public func checkUpstream(adminKey: KeySelector, api: APITarget) async throws {
        guard !plan.blocking.isEmpty || !retiredByRecord.isEmpty else { return }
        let session = try APISession.make(opened: opened, key: adminKey, api: api, observer: observer, audit: audit)
        let (users, _) = try await session.recording { try await session.client.listAPIUsers() }
        let base = Self.normalized(api.baseURL.description)
        var learned: [AuditEntry] = []
        func retired(_ user: BackedUser, _ id: String, how: String) {
            learned.append(AuditEntry(event: Self.retiredEvent, facts: [
                "name": .string(user.name), "id": .string(id), "baseURL": .string(base), "how": .string(how),
                "key": .string(plan.items.compactMap(\.fingerprintSHA256).first ?? ""), "via": .string("key delete")]))
        }
        for index in plan.backedUsers.indices where plan.backedUsers[index].retired == nil || retiredByRecord.contains(index) {
            // The API's answer now wins over an earlier record of it.
            plan.backedUsers[index].retired = nil
            plan.backedUsers[index].retiredByRecord = false
            let user = plan.backedUsers[index]
            guard let recorded = user.baseURL, Self.normalized(recorded) == base else {
                plan.backedUsers[index].upstream = "not checked: recorded at \(user.baseURL ?? "an unknown API"), not \(base)"
                continue
            }
            let listed = user.apiUserID.map { id in users.filter { $0.id == id } } ?? users.filter { $0.name == user.name }
            switch (listed.count, user.apiUserID) {
            case (0, let id?):
                plan.backedUsers[index].retired = "absent from the API users listed at \(base) (id \(id)): removed"
                plan.backedUsers[index].upstream = "absent"
                retired(user, id, how: "removed")
            case (0, nil):
                plan.backedUsers[index].upstream = "not listed at \(base); it may still await approval"
            case (1, let id?) where listed.first?.enabled == false:
                plan.backedUsers[index].retired = "disabled, as listed at \(base)"
                plan.backedUsers[index].upstream = "disabled"
                retired(user, id, how: "disabled")
            case (1, nil) where listed.first?.enabled == false:
                // A name alone does not say it is this key's user: another user of that name
                // may be the one disabled while this key's still awaits approval.
                plan.backedUsers[index].upstream = "a user named '\(user.name)' is listed disabled at \(base), but no id was recorded for this key's user: not known to be retired"
            case (1, _):
                plan.backedUsers[index].upstream = "listed at \(base), enabled, \(listed.first?.status ?? "status unknown")"
            default:
                plan.backedUsers[index].upstream = "\(listed.count) API users named '\(user.name)' are listed at \(base)"
            }
        }
        // What was learned is recorded, whether or not the key goes now: a later deletion takes
        // the record as evidence without asking the API again.
        if !learned.isEmpty {
            do {
                try audit.record(learned)
            } catch {
                throw OperationError(OperationError.auditCode(for: error), "the API's user list shows \(learned.count) API user(s) retired, but that could not be recorded in the audit trail (\(error)); nothing was deleted")
            }
        }
    }

    private static func normalized(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }

    /// The refusal `perform(force:)` would give, checked before anything is asked or destroyed:
    /// a key that backs an API user not known to be retired is kept unless `force`. The refusal
    /// is recorded in the audit trail.
    public func checkMayDelete(force: Bool) throws {
        let blocking = plan.blocking
        guard !blocking.isEmpty, !force else { return }
        let refusal = OperationError(.keyInUse, "the key is recorded as backing API user \(blocking.map(\.description).joined(separator: ", ")), not known to be retired; deleting it leaves that user unable to authenticate")
        opened.appendFailure(command: "key delete", error: refusal, auditDirectory: audit.log.directory)
        throw refusal
    }

    /// Destroys the planned objects; refuses a key recorded as backing an API user that is not
    /// known to be retired unless `force`.
    public func perform(force: Bool) throws {
        try checkMayDelete(force: force)
        for handle in handles {
            try during("destroying an object of token '\(plan.token)'", token: plan.token) { try opened.session.destroyObject(handle) }
        }
        // The API users these keys backed: an onboarding that replaces one of them gets a
        // "predecessor retired" milestone in its evidence.
        var retired: [String] = []
        for fingerprint in Set(labels.compactMap(\.fingerprint)) {
            retired += try records.records(fingerprint: fingerprint).filter { $0.tokenSerial == plan.tokenSerial }.map(\.name)
        }
        for entry in labels {
            try records.remove(tokenSerial: plan.tokenSerial, keyLabel: entry.label, fingerprint: entry.fingerprint)
        }
        let items: [AuditValue] = plan.items.map {
            .object(["kind": .string($0.kind), "label": .string($0.label), "id": .string($0.id),
                     "spkiSHA256": .string($0.fingerprintSHA256 ?? "")])
        }
        let entry = AuditEntry(event: "key.deleted", facts: [
            "objects": .array(items), "forced": .bool(force && !plan.blocking.isEmpty),
            "backedAPIUsers": .array(plan.backs.map { .string($0) }),
            "retiredAPIUsers": .array(plan.backedUsers.compactMap { user in user.retired.map { .string("'\(user.name)': \($0)") } })])
        let note = try audit.recordDone([entry], done: "\(plan.items.count) object(s) were deleted from token '\(plan.token)'")
        for name in Set(retired) {
            for successor in try records.successors(tokenSerial: plan.tokenSerial, of: name) where successor.evidence != nil {
                audit.addMilestone(entry, sealedBy: note, apiUserID: successor.apiUserID ?? "", apiUserName: successor.name,
                                   stateDirectory: nil, bundle: successor.evidence, event: "api-user.predecessor-retired")
            }
        }
    }
}
