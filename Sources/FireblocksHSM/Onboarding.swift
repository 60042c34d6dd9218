import ErrorShape
import AuditTrail
import DurableFiles
import Crypto
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PKCS11
import TokenKeys
import TransparencyLog
import X509
import HexEncoding

/// What `onboard` is asked to do.
public struct OnboardRequest: Sendable {
    /// The key label.
    public var keyLabel: String
    /// The modulus size in bits.
    public var bits: UInt
    /// The subject.
    public var subject: CSRSubject
    /// The CSR path.
    public var csrPath: String
    /// Whether an existing CSR file that is not this key's CSR may be replaced.
    public var overwriteCSR: Bool
    /// The name.
    public var name: String
    /// The role.
    public var role: APIUserRole
    /// `coSignerSetupType`, e.g. `SGX_MACHINE` (nil: left out).
    public var coSignerSetupType: String?
    /// The co signer setup is first user.
    public var coSignerSetupIsFirstUser: Bool?
    /// How long to wait for another run working on the same key label.
    public var lockTimeout: TimeInterval = 300
    /// Where the evidence bundle goes (default: `<CSR's directory>/<key label>-evidence`).
    public var evidenceDirectory: String?
    /// Set to create the API user: the admin key on the same token, and the API it talks to.
    public var submission: Submission?
    /// The API user this one succeeds (rotation): recorded in the onboarding record, the audit
    /// log and the evidence bundle. There is no API to replace a user's key; the old user is
    /// retired in the Console.
    public var replaces: String?
    /// After the creation, wait until the new user has this status (or a later one).
    public var waitUntil: APIUserStatus?
    /// How that wait polls.
    public var waitPolicy = APIUserLifecycle.WaitPolicy(timeout: 1800, interval: 15)
    /// Once the new user is `PENDING_ACTIVATION`, issue its pairing token into this file (0600).
    public var pairingTokenOut: String?

    /// Submission.
    public struct Submission: Sendable {
        /// The admin key.
        public var adminKey: KeySelector
        /// The API.
        public var api: APITarget
        /// The idempotency key.
        public var idempotencyKey: String?

        /// Creates the value from its parts.
        public init(adminKey: KeySelector, api: APITarget, idempotencyKey: String?) {
            self.adminKey = adminKey
            self.api = api
            self.idempotencyKey = idempotencyKey
        }
    }

    /// Creates the value from its parts.
    public init(keyLabel: String, bits: UInt, subject: CSRSubject, csrPath: String, overwriteCSR: Bool, name: String,
                role: APIUserRole, coSignerSetupType: String?, coSignerSetupIsFirstUser: Bool?, submission: Submission?) {
        self.keyLabel = keyLabel
        self.bits = bits
        self.subject = subject
        self.csrPath = csrPath
        self.overwriteCSR = overwriteCSR
        self.name = name
        self.role = role
        self.coSignerSetupType = coSignerSetupType
        self.coSignerSetupIsFirstUser = coSignerSetupIsFirstUser
        self.submission = submission
    }
}

/// An onboarding that stopped after its key was made: the key (and the CSR, if written) are
/// kept, and re-running the same command resumes. Classified as its underlying error.
public struct OnboardingStopped: LibraryError {
    /// One code: the onboarding stopped after its key was made (``underlying`` says why).
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// Stopped; resumable by running it again.
        public static let stoppedResumable = Code("stoppedResumable")
    }
    public var code: Code { .stoppedResumable }
    /// Why it stopped, and what was kept.
    public var reason: String { description }
    /// The underlying error's facts, with the key and token.
    public var facts: ErrorFacts {
        var facts = (underlying as? any LibraryError)?.facts ?? ErrorFacts()
        facts.keyLabel = keyLabel
        facts.tokenLabel = tokenLabel
        return facts
    }
    public let location: ErrorLocation

    init(underlying: any Error, keyLabel: String, tokenLabel: String, csrPath: String?, file: String = #fileID, line: UInt = #line) {
        self.underlying = underlying
        self.keyLabel = keyLabel
        self.tokenLabel = tokenLabel
        self.csrPath = csrPath
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The underlying.
    public let underlying: any Error
    /// The key label.
    public let keyLabel: String
    /// The token label.
    public let tokenLabel: String
    /// The CSR path.
    public let csrPath: String?

    /// How it reads in messages.
    public var description: String { "\(underlying)\(note)" }

    /// What was kept and how to go on.
    public var note: String {
        " — kept: key '\(keyLabel)' on token '\(tokenLabel)'\(csrPath.map { " and the CSR \($0)" } ?? "") with its onboarding record; re-running the same command resumes"
    }
}

/// What `onboard` did.
public struct OnboardReport: Codable, Sendable, Equatable {
    /// The token (label).
    public let token: String
    /// The key label.
    public let keyLabel: String
    /// The key id.
    public let keyID: String
    /// The key fingerprint SHA-256.
    public let keyFingerprintSHA256: String
    /// `generated`, or `resumed` when an earlier run of the same onboarding made it.
    public let key: String
    /// The CSR path.
    public let csrPath: String
    /// The CSR SHA-256.
    public let csrSHA256: String
    /// `written`, or `reused` when the file already held this key's CSR with this subject.
    public let csr: String
    /// The submission.
    public let submission: APIUserCreationReport?
    /// The user as the API lists it, when submitted and identified (see `submission.userIdentification`).
    public let apiUser: APIUser?
    /// The evidence bundle's folder.
    public let evidence: String
    /// The next steps, in the API's and the Console's terms.
    public let nextSteps: [String]
    /// The API user's name.
    public var name: String?
    /// The API user this one succeeds, if any.
    public var replaces: String?
    /// The id of the user it succeeds, when it was listed.
    public var replacesUserID: String?
    /// Where the pairing token was written, if one was issued.
    public var pairingTokenFile: String?
}

/// `onboard`: the seed flow in one command. Keygen (under the key policy), CSR signed on the
/// token, and optionally the API user's creation signed by an admin key. Re-running after a
/// failure resumes: the key and CSR an earlier run made are reused, and the creation request is
/// re-sent with the same Idempotency-Key, so there is never a second key or a second user.
///
/// One onboarding per token and key label at a time, across processes: a file lock is held from
/// the "is the label free?" check until the record of what was made is stored. The record binds
/// the intent (name, role, co-signer fields, subject); a re-run that asks for something else is
/// refused, naming the field, instead of creating a second user for the key.
public enum Onboarding {
    /// Runs (or resumes) the onboarding: see the type's description.
    public static func run(token target: TokenTarget, request: OnboardRequest, stateDirectory: URL, auditDirectory: URL,
                           observer: any OperationObserver) async throws -> OnboardReport {
        try KeyLabel.validateNew(request.keyLabel)
        if let key = request.submission?.idempotencyKey { try IdempotencyStore.validate(key: key) }
        // Idempotency records others could have written are refused before any key is made.
        try request.submission?.api.idempotencyStore.requireTrusted()
        // Fail on a doomed CSR path before touching the token (an existing file is judged later:
        // it may be this key's CSR from an earlier run).
        try AtomicFile.checkWritable(request.csrPath, overwrite: true)

        // The login, the key label's lock (up to --lock-timeout) and the audit trail's checks
        // block: off the cooperative pool.
        let opened = try await BlockingBridge.run {
            try OpenedToken.open(target, readWrite: true, logIn: true, observer: observer, auditDirectory: auditDirectory)
        }
        return try await opened.recordingFailure(of: "onboard", auditDirectory: auditDirectory) {
            let info = opened.token.info
            let records = OnboardingRecords(stateDirectory: stateDirectory)
            let (lock, audit) = try await BlockingBridge.run(moving: opened) { opened in
                let lock = try KeyLabelLock.acquire(stateDirectory: stateDirectory, tokenSerial: info.serialNumber,
                                                    keyLabel: request.keyLabel, timeout: request.lockTimeout,
                                                    what: "onboard key '\(request.keyLabel)'", waiting: observer.note)
                do {
                    return (lock, try AuditService.prepare(opened: opened, directory: auditDirectory, observer: observer))
                } catch {
                    lock.release()
                    throw error
                }
            }
            defer { lock.release() }

            let asked = OnboardingRecord(
                tokenSerial: info.serialNumber, tokenLabel: info.label, keyLabel: request.keyLabel, stage: .generating,
                name: request.name, role: request.role.rawValue, coSignerSetupType: request.coSignerSetupType,
                coSignerSetupIsFirstUser: request.coSignerSetupIsFirstUser, subject: try request.subject.distinguishedName().description,
                keyID: nil, fingerprint: nil, csrSHA256: nil, idempotencyKey: nil, baseURL: nil, apiUserID: nil,
                createdAt: Date(), updatedAt: Date(), replaces: request.replaces)
            var record = try records.record(tokenSerial: info.serialNumber, keyLabel: request.keyLabel)
            if let recorded = record {
                if let difference = recorded.differences(from: asked).first {
                    throw OnboardingConflict(keyLabel: request.keyLabel, tokenLabel: info.label, field: difference.field,
                                             recorded: difference.recorded, asked: difference.asked)
                }
                if let explicit = request.submission?.idempotencyKey, let used = recorded.idempotencyKey, explicit != used {
                    throw OnboardingConflict(keyLabel: request.keyLabel, tokenLabel: info.label, field: "idempotencyKey",
                                             recorded: used, asked: explicit)
                }
            }

            // 1. The key: generate, or resume the one an earlier onboarding of this label made.
            let (pair, keyState) = try await obtainKey(request: request, opened: opened, records: records, record: &record,
                                                       asked: asked, observer: observer)
            if keyState == "generated" {
                try audit.recordDone([AuditEntry(event: "key.generated", facts: AuditService.facts(pair).merging(
                    ["onboarding": .string(request.name)]) { $1 })], done: "key '\(pair.label)' was generated on token '\(info.label)'")
            }
            guard let publicKey = pair.publicKey, let current = record else {
                throw OperationError(.notAnRSAKey, "key '\(pair.label)' has no readable RSA public key", facts: ErrorFacts(keyLabel: pair.label))
            }
            do {
                return try await finish(request: request, opened: opened, records: records, record: current, pair: pair,
                                        publicKey: publicKey, keyState: keyState, audit: audit, observer: observer)
            } catch {
                throw OnboardingStopped(underlying: error, keyLabel: pair.label, tokenLabel: info.label,
                                        csrPath: FileManager.default.fileExists(atPath: request.csrPath) ? request.csrPath : nil)
            }
        }
    }

    /// Steps 2 and 3, on the key of this onboarding.
    private static func finish(request: OnboardRequest, opened: OpenedToken, records: OnboardingRecords,
                               record: OnboardingRecord, pair: TokenKeyPair, publicKey: TokenRSAPublicKey,
                               keyState: String, audit: AuditService, observer: any OperationObserver) async throws -> OnboardReport {
        let info = opened.token.info
        var current = record

        // 2. The CSR: reuse a file that already is this key's CSR with this subject.
        let signer = try during("opening a signing session on token '\(info.label)'", token: info.label, key: request.keyLabel) {
            try TokenSigner(keyPair: pair, slot: opened.token.slot)
        }
        let csrPEM: String
        let csrState: String
        if !request.overwriteCSR, let reusable = try reusableCSR(at: request.csrPath, publicKey: publicKey, subject: request.subject) {
            csrPEM = reusable
            csrState = "reused"
        } else {
            if FileManager.default.fileExists(atPath: request.csrPath), !request.overwriteCSR {
                throw OperationError(.fileExists, "\(request.csrPath) exists and is not this key's CSR with this subject", facts: ErrorFacts(path: request.csrPath))
            }
            let csr = try during("signing the CSR on token '\(info.label)'", token: info.label, key: request.keyLabel) {
                try CSRBuilder.makeCSR(subject: request.subject, signingKey: TokenPrivateKey(signer: signer))
            }
            csrPEM = try csr.serializeAsPEM().pemString + "\n"
            try AtomicFile.write(Array(csrPEM.utf8), to: request.csrPath, overwrite: request.overwriteCSR, mode: 0o644)
            csrState = "written"
            try audit.recordDone([AuditEntry(event: "csr.created", facts: [
                "key": .string(pair.label), "spkiSHA256": .string(publicKey.fingerprint),
                "subject": .string(csr.subject.description),
                "derSHA256": .string(hex(SHA256.hash(data: try csr.serializeAsPEM().derBytes))),
                "path": .string(request.csrPath)])], done: "the CSR was signed and written")
        }
        let csrDigest = hex(SHA256.hash(data: Array(csrPEM.utf8)))
        if let submittedDigest = current.csrSHA256, current.stage >= .submitting, submittedDigest != csrDigest {
            throw OnboardingConflict(keyLabel: request.keyLabel, tokenLabel: info.label, field: "csrSHA256",
                                     recorded: submittedDigest, asked: csrDigest)
        }
        if current.stage < .csrWritten || current.csrSHA256 != csrDigest {
            current.csrSHA256 = csrDigest
            current.stage = max(current.stage, .csrWritten)
            try records.save(current)
        }

        // 3. The API user, when asked.
        var submission: APIUserCreationReport?
        var apiUser: APIUser?
        var replacesUserID: String?
        var pairingTokenFile: String?
        // Lifecycle milestones reached in this run: added to the bundle once it is written.
        var milestones: [(entry: AuditEntry, note: SignedNote, user: APIUser)] = []
        if let submit = request.submission {
            if let recordedURL = current.baseURL, recordedURL != submit.api.baseURL.description {
                throw OnboardingConflict(keyLabel: request.keyLabel, tokenLabel: info.label, field: "api",
                                         recorded: recordedURL, asked: submit.api.baseURL.description)
            }
            // The key the request goes out with is chosen and recorded before the first send.
            let idempotencyKey = current.idempotencyKey ?? submit.idempotencyKey ?? UUID().uuidString.lowercased()
            if current.idempotencyKey == nil || current.stage < .submitting {
                current.idempotencyKey = idempotencyKey
                current.baseURL = submit.api.baseURL.description
                current.stage = max(current.stage, .submitting)
                try records.save(current)
            }
            let session = try APISession.make(opened: opened, key: submit.adminKey, api: submit.api, observer: observer)
            if let replaces = request.replaces {
                // The predecessor, as listed now (it may already have been retired).
                let listed = try await session.client.listAPIUsers().users.filter { $0.name == replaces }
                if listed.count == 1 { replacesUserID = listed.first?.id }
                if listed.isEmpty { observer.note("warning: the predecessor '\(replaces)': no API user of that name is listed; recorded by name only") }
                if listed.count > 1 { observer.note("warning: the predecessor '\(replaces)': \(listed.count) API users have that name; recorded by name only") }
            }
            let body = try CreateAPIUser(role: request.role, name: request.name, csrPem: csrPEM,
                                         coSignerSetupType: request.coSignerSetupType,
                                         coSignerSetupIsFirstUser: request.coSignerSetupIsFirstUser)
            let result: APIUserCreationResult
            do {
                result = try await session.client.createAPIUserIdentifying(body, store: submit.api.idempotencyStore,
                                                                        idempotencyKey: idempotencyKey, allowKeyReuse: false)
            } catch {
                _ = try? audit.recordDone(session.exchanges.drain().map(\.auditEntry), done: "API requests were sent")
                throw error
            }
            result.warnings.forEach(observer.note)
            submission = APIUserCreationReport(name: request.name, role: request.role.rawValue, result: result,
                                               baseURL: submit.api.baseURL.description)
            apiUser = result.identification.user
            let csrKey = try CSRKeyFacts.of(csrPEM: csrPEM, session: opened.session)
            try audit.recordDone(session.exchanges.drain().map(\.auditEntry) + [csrKey.entry(
                name: request.name, role: request.role.rawValue, userID: apiUser?.id, extra: [
                    "result": .string(submission?.result ?? ""), "xRequestID": .string(submission?.requestID ?? ""),
                    "idempotencyKey": .string(submission?.idempotencyKey ?? ""), "baseURL": .string(submit.api.baseURL.description),
                    "replaces": .string(request.replaces ?? ""), "replacesUserID": .string(replacesUserID ?? ""),
                    "via": .string("onboard")])],
                done: "the API user's creation was sent")
            current.stage = .submitted
            current.apiUserID = apiUser?.id ?? current.apiUserID
            current.replacesUserID = replacesUserID ?? current.replacesUserID
            try records.save(current)

            // The lifecycle: a pairing token once the user waits for activation, then the wait.
            if request.waitUntil != nil || request.pairingTokenOut != nil {
                let lookup: APIUserLookup = (apiUser?.id ?? current.apiUserID).map(APIUserLookup.id) ?? .name(request.name)
                let events: @Sendable (APIUserWaitEvent) -> Void = { event in
                    if case .status(let user, let at) = event {
                        observer.note("\(AuditRecord.timestamp(at)) API user '\(user.name)' (\(user.id)): \(user.status ?? "?")")
                    } else if case .backingOff(let seconds, let reason) = event {
                        observer.note("\(reason): slowing down, next check in \(Int(seconds.rounded())) s")
                    }
                }
                do {
                    if let out = request.pairingTokenOut {
                        let pending = try await APIUserLifecycle.wait(client: session.client, lookup: lookup, until: .PENDING_ACTIVATION,
                                                                      policy: request.waitPolicy, onEvent: events)
                        if pending.status == APIUserStatus.PENDING_ACTIVATION.rawValue {
                            // Derived from the creation's key: a re-run asks for the same token.
                            let issue = try await APIUserLifecycle.issuePairingToken(
                                client: session.client, lookup: .id(pending.id), idempotencyKey: "pair-" + String(idempotencyKey.prefix(35)))
                            try AtomicFile.write(Array((issue.pairingToken + "\n").utf8), to: out, overwrite: true, mode: 0o600)
                            pairingTokenFile = out
                            observer.note("pairing token for '\(pending.name)' written to \(out) (0600; valid one hour)")
                            let entry = AuditEntry(event: "api-user.pairing-token-issued", facts: [
                                "userID": .string(pending.id), "name": .string(pending.name), "status": .string(issue.status ?? ""),
                                "idempotencyKey": .string(issue.idempotencyKey), "requestID": .string(issue.requestID ?? ""),
                            ])
                            let note = try audit.recordDone(session.exchanges.drain().map(\.auditEntry) + [entry],
                                                            done: "a pairing token was issued for API user '\(pending.name)'")
                            milestones.append((entry, note, pending))
                        } else {
                            observer.note("API user '\(pending.name)' is already \(pending.status ?? "?"): no pairing token needed")
                        }
                        apiUser = pending
                    }
                    if let target = request.waitUntil {
                        apiUser = try await APIUserLifecycle.wait(client: session.client, lookup: apiUser.map { .id($0.id) } ?? lookup,
                                                                  until: target, policy: request.waitPolicy, onEvent: events)
                    }
                } catch {
                    _ = try? audit.recordDone(session.exchanges.drain().map(\.auditEntry), done: "API requests were sent")
                    throw error
                }
                var polls = session.exchanges.drain().map(\.auditEntry)
                if let user = apiUser, user.status == APIUserStatus.READY.rawValue, request.waitUntil != nil {
                    let entry = APIUserLifecycle.readyEntry(user)
                    polls.append(entry)
                    milestones.append((entry, try audit.recordDone(polls, done: "API requests were sent"), user))
                } else if !polls.isEmpty {
                    try audit.recordDone(polls, done: "API requests were sent")
                }
                current.apiUserID = apiUser?.id ?? current.apiUserID
                try records.save(current)
            }
        }

        let requestedEvidence = request.evidenceDirectory
            ?? URL(fileURLWithPath: request.csrPath).deletingLastPathComponent().appendingPathComponent("\(request.keyLabel)-evidence").path
        let evidence = try audit.writeEvidence(to: requestedEvidence, csrPEM: csrPEM, pair: pair, publicKey: publicKey, submission: submission,
                                userID: apiUser?.id ?? current.apiUserID, replaces: request.replaces,
                                replacesUserID: replacesUserID ?? current.replacesUserID)
        current.evidence = URL(fileURLWithPath: evidence).standardizedFileURL.path
        try records.save(current)
        for milestone in milestones {
            audit.addMilestone(milestone.entry, sealedBy: milestone.note, apiUserID: milestone.user.id, apiUserName: milestone.user.name,
                               stateDirectory: nil, bundle: evidence)
        }
        var report = OnboardReport(
            token: info.label, keyLabel: pair.label, keyID: hex(pair.id), keyFingerprintSHA256: publicKey.fingerprint,
            key: keyState, csrPath: request.csrPath, csrSHA256: csrDigest, csr: csrState, submission: submission,
            apiUser: apiUser, evidence: evidence, nextSteps: nextSteps(request: request, submission: submission, user: apiUser, fingerprint: publicKey.fingerprint))
        report.replaces = request.replaces
        report.name = request.name
        report.replacesUserID = replacesUserID ?? current.replacesUserID
        report.pairingTokenFile = pairingTokenFile
        return report
    }

    /// The key of this onboarding: generated now (recorded first, so that a run killed at any
    /// point leaves something the next run recognises as its own), or the one an earlier run of
    /// the same onboarding made.
    private static func obtainKey(request: OnboardRequest, opened: OpenedToken, records: OnboardingRecords,
                                  record: inout OnboardingRecord?, asked: OnboardingRecord,
                                  observer: any OperationObserver) async throws -> (TokenKeyPair, String) {
        let info = opened.token.info
        let session = opened.session
        let privateKeys = try session.findObjects([.class(.privateKey), .label(request.keyLabel)])
        if privateKeys.isEmpty, let recorded = record, let fingerprint = recorded.fingerprint {
            // The record names a key this onboarding made, and it is gone: making another would
            // bind a new key to an onboarding that may already have created its API user.
            throw OperationError(.keyNotFound, "the key this onboarding made ('\(request.keyLabel)', SHA-256 \(fingerprint)) is no longer on token '\(info.label)'; its API user (if created) cannot sign. Start a new onboarding under a new key label", facts: ErrorFacts(tokenLabel: info.label, keyLabel: request.keyLabel))
        }
        if privateKeys.isEmpty {
            let orphans = try session.findObjects([.class(.publicKey), .label(request.keyLabel)])
            if !orphans.isEmpty {
                guard let recorded = record, recorded.stage == .generating else {
                    throw OperationError(.orphanedPublicKey, "token '\(info.label)' has a public key labelled '\(request.keyLabel)' without a private key, and no onboarding of this machine was generating it", facts: ErrorFacts(tokenLabel: info.label, keyLabel: request.keyLabel))
                }
                // Our own interrupted generation (recorded, under the same lock): its public half
                // alone is worth nothing; clear it and generate again.
                for orphan in orphans {
                    try during("removing the public key left by the interrupted generation of '\(request.keyLabel)'", token: info.label, key: request.keyLabel) {
                        try session.destroyObject(orphan)
                    }
                }
                observer.note("resuming: removed the lone public key '\(request.keyLabel)' an interrupted onboard left (recorded on \(recorded.createdAt.formatted(.iso8601)))")
            }
            if record == nil {
                record = asked
                try records.save(asked)
            }
            try KeyStore.requireUnused(label: request.keyLabel, id: nil, in: session)
            // Seconds of C_GenerateKeyPair: off the cooperative pool.
            let pair = try await BlockingBridge.run(moving: session) { session in
                try during("generating an RSA-\(request.bits) key pair on token '\(info.label)'", token: info.label, key: request.keyLabel) {
                    try observer.slowStep("Generating RSA-\(request.bits) key pair '\(request.keyLabel)' on token '\(info.label)'") {
                        try KeyGenerator.generate(KeyGenerationRequest(label: request.keyLabel, bits: request.bits), in: session)
                    }
                }
            }
            try FaultInjection.point("onboard-after-key-stored")
            guard var stored = record, let publicKey = pair.publicKey else {
                throw OperationError(.notAnRSAKey, "key '\(pair.label)' has no readable RSA public key", facts: ErrorFacts(keyLabel: pair.label))
            }
            stored.keyID = hex(pair.id)
            stored.fingerprint = publicKey.fingerprint
            stored.stage = .keyStored
            try records.save(stored)
            record = stored
            return (pair, "generated")
        }

        let pair = try during("reading key '\(request.keyLabel)'", token: info.label, key: request.keyLabel) {
            try KeyStore.findUsable(.label(request.keyLabel), in: session)
        }
        guard var recorded = record else {
            throw OperationError(.keyExists, "token '\(info.label)' already has a key '\(request.keyLabel)' that no onboard of this machine made (an existing key is onboarded by making its CSR and creating the API user, not by onboarding it again)", facts: ErrorFacts(tokenLabel: info.label, keyLabel: request.keyLabel))
        }
        guard let fingerprint = pair.publicKey?.fingerprint else {
            throw OperationError(.notAnRSAKey, "key '\(pair.label)' has no readable RSA public key", facts: ErrorFacts(keyLabel: pair.label))
        }
        if let expected = recorded.fingerprint {
            guard expected == fingerprint else {
                throw OperationError(.keyExists, "token '\(info.label)' has a key '\(request.keyLabel)' (SHA-256 \(fingerprint)) that is not the one this onboarding made (\(expected)); the key was replaced", facts: ErrorFacts(tokenLabel: info.label, keyLabel: request.keyLabel))
            }
            observer.note("resuming: key '\(request.keyLabel)' was generated by an earlier onboard on \(recorded.createdAt.formatted(.iso8601))")
        } else {
            // Killed after the key was stored and before its record: the label was free under
            // the lock when the record was written, and the key meets the policy (generated on
            // the token, never extractable), so it is this onboarding's.
            recorded.keyID = hex(pair.id)
            recorded.fingerprint = fingerprint
            recorded.stage = .keyStored
            try records.save(recorded)
            record = recorded
            observer.note("resuming: adopting key '\(request.keyLabel)' (SHA-256 \(fingerprint)), which an interrupted onboard generated")
        }
        return (pair, "resumed")
    }

    /// The PEM at `path` when it is a CSR for `publicKey` with `subject`; nil otherwise.
    private static func reusableCSR(at path: String, publicKey: TokenRSAPublicKey, subject: CSRSubject) throws -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let pem = String(decoding: data, as: UTF8.self)
        guard let csr = try? CertificateSigningRequest(pemEncoded: pem),
              csr.publicKey == publicKey.certificatePublicKey,
              CSRBuilder.hasValidSelfSignature(csr),
              csr.subject == (try subject.distinguishedName()) else { return nil }
        return pem
    }

    private static func nextSteps(request: OnboardRequest, submission: APIUserCreationReport?, user: APIUser?, fingerprint: String) -> [String] {
        var steps: [String] = []
        if let submission {
            if user == nil {
                steps.append("An admin quorum approves the new API user '\(request.name)' in the Fireblocks Console (the request is pending until then).")
            }
            if let user {
                steps.append("Its API key is its id: \(user.id) (status \(user.status ?? "unknown")). Sign its requests with key '\(request.keyLabel)' and API key \(user.id).")
            } else if !submission.candidates.isEmpty {
                steps.append("Which listed user is the new one is ambiguous (candidates: \(submission.candidates.joined(separator: ", "))); check in the Console before using an id.")
            } else {
                steps.append("Find its id (its API key) in the API user list once it is approved.")
            }
            if user?.status == APIUserStatus.READY.rawValue {
                steps.append("It is READY: its requests can be signed now.")
            } else {
                steps.append("Then activate it: issue its pairing token for its co-signer or device, and wait until it is READY.")
            }
        } else {
            steps.append("Upload \(request.csrPath) when creating the API user in the Fireblocks Console, or run again with a submission (an admin key and the API) to create it through the API.")
        }
        if let replaces = request.replaces {
            steps.append("This user succeeds '\(replaces)': once the new one works, retire '\(replaces)' in the Fireblocks Console (API users → disable, then remove) and delete its key from the token. There is no API to replace a user's key.")
        }
        steps.append("Keep the key fingerprint \(fingerprint) with the onboarding record: it identifies the key the API user is bound to.")
        return steps
    }
}
