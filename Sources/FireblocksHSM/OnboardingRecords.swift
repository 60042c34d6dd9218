import ErrorShape
import DurableFiles
import FireblocksAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// What one onboarding is, as recorded before anything is made, and how far it got.
///
/// Binds the intent (token, key label, user name, role, co-signer fields, CSR subject) to what
/// was made for it (key id and fingerprint, CSR digest, Idempotency-Key, user id), so that a
/// re-run either resumes exactly this onboarding or is refused, naming what differs.
public struct OnboardingRecord: Codable, Equatable, Sendable {
    /// How far it got.
    public enum Stage: String, Codable, Sendable, Comparable {
        /// Recorded; the key is being generated (a key with the label found later is this run's).
        case generating
        /// The key pair is on the token and identified below.
        case keyStored = "key-stored"
        /// The CSR is written.
        case csrWritten = "csr-written"
        /// The creation request is about to be, or was, sent with ``idempotencyKey``.
        case submitting
        /// The API accepted it.
        case submitted

        private var order: Int {
            switch self {
            case .generating: return 0
            case .keyStored: return 1
            case .csrWritten: return 2
            case .submitting: return 3
            case .submitted: return 4
            }
        }

        /// Orders by progress.
        public static func < (lhs: Self, rhs: Self) -> Bool { lhs.order < rhs.order }
    }

    /// The token serial.
    public let tokenSerial: String
    /// The token label.
    public let tokenLabel: String
    /// The key label.
    public let keyLabel: String
    /// The stage.
    public var stage: Stage
    /// The name.
    public let name: String
    /// The role.
    public let role: String
    /// `coSignerSetupType`, e.g. `SGX_MACHINE` (nil: left out).
    public let coSignerSetupType: String?
    /// The co signer setup is first user.
    public let coSignerSetupIsFirstUser: Bool?
    /// RFC 4514 form of the requested CSR subject.
    public let subject: String
    /// The key id.
    public var keyID: String?
    /// SHA-256 of the key's DER SubjectPublicKeyInfo.
    public var fingerprint: String?
    /// SHA-256 of the CSR PEM bytes.
    public var csrSHA256: String?
    /// The idempotency key.
    public var idempotencyKey: String?
    /// The API it was submitted to.
    public var baseURL: String?
    /// The API user id.
    public var apiUserID: String?
    /// When it was made.
    public let createdAt: Date
    /// When it last changed.
    public var updatedAt: Date
    /// The API user this one succeeds (`--replaces`), if any.
    public var replaces: String? = nil
    /// That user's id, when it was listed at the creation.
    public var replacesUserID: String? = nil
    /// The newest evidence bundle of this onboarding (where lifecycle milestones are added).
    public var evidence: String? = nil

    /// The intent fields that must match on a re-run, with their recorded and asked values.
    func differences(from other: OnboardingRecord) -> [(field: String, recorded: String, asked: String)] {
        var result: [(String, String, String)] = []
        func compare(_ field: String, _ recorded: String?, _ asked: String?) {
            if recorded != asked { result.append((field, recorded ?? "(none)", asked ?? "(none)")) }
        }
        compare("name", name, other.name)
        compare("role", role, other.role)
        compare("coSignerSetupType", coSignerSetupType, other.coSignerSetupType)
        compare("coSignerSetupIsFirstUser", coSignerSetupIsFirstUser.map(String.init), other.coSignerSetupIsFirstUser.map(String.init))
        compare("subject", subject, other.subject)
        compare("replaces", replaces, other.replaces)
        return result
    }
}

/// A re-run whose intent differs from the recorded onboarding of the same key.
public struct OnboardingConflict: LibraryError {
    /// One code: the recorded onboarding and this run differ (``field`` says where).
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }
        /// One key backs one API user: a different intent under the same key is refused.
        public static let intentDiffers = Code("intentDiffers")
    }
    public var code: Code { .intentDiffers }
    public var reason: String { description }
    public var facts: ErrorFacts { ErrorFacts(tokenLabel: tokenLabel, keyLabel: keyLabel) }
    public let location: ErrorLocation

    init(keyLabel: String, tokenLabel: String, field: String, recorded: String, asked: String, file: String = #fileID, line: UInt = #line) {
        self.keyLabel = keyLabel
        self.tokenLabel = tokenLabel
        self.field = field
        self.recorded = recorded
        self.asked = asked
        self.location = ErrorLocation(file: file, line: line)
    }

    /// The key label.
    public let keyLabel: String
    /// The token label.
    public let tokenLabel: String
    /// The field that differs.
    public let field: String
    /// The value the record holds.
    public let recorded: String
    /// The value this run asked for.
    public let asked: String

    /// How it reads in messages.
    public var description: String {
        "the onboarding of key '\(keyLabel)' on token '\(tokenLabel)' was started with \(field) '\(recorded)', and this run asks for '\(asked)': one key backs one API user"
    }
}

/// The onboarding records of this machine, in the state directory (`onboarding.json`, 0600),
/// changed only under a file lock. They decide which key backs which API user (what `key
/// delete` keeps or retires) and what a re-run resumes, so every read first holds the state
/// directory, the file and its lock to the trust rule of private state
/// (``OperationError/Code/untrustedState`` otherwise).
public struct OnboardingRecords: Sendable {
    /// The file.
    public let file: LockedJSONFile<Contents>

    /// Contents.
    public struct Contents: Codable, Equatable, Sendable {
        /// The version.
        public var version: Int
        /// The records.
        public var records: [OnboardingRecord]
    }

    /// Creates the value from its parts.
    public init(stateDirectory: URL) {
        file = LockedJSONFile(path: stateDirectory.appendingPathComponent("onboarding.json").path) {
            Contents(version: 2, records: [])
        }
    }

    /// The record of a key label on a token.
    public func record(tokenSerial: String, keyLabel: String) throws -> OnboardingRecord? {
        try update { contents in
            contents.records.last { $0.tokenSerial == tokenSerial && $0.keyLabel == keyLabel }
        }
    }

    /// The onboarding that made API user `apiUserID` on this token, if any.
    public func record(tokenSerial: String, apiUserID: String) throws -> OnboardingRecord? {
        try update { contents in
            contents.records.last { $0.tokenSerial == tokenSerial && $0.apiUserID == apiUserID }
        }
    }

    /// The onboardings on this token that replace the API user named `name`.
    public func successors(tokenSerial: String, of name: String) throws -> [OnboardingRecord] {
        try update { contents in contents.records.filter { $0.tokenSerial == tokenSerial && $0.replaces == name } }
    }

    /// Every record whose key has this fingerprint.
    public func records(fingerprint: String) throws -> [OnboardingRecord] {
        try update { contents in contents.records.filter { $0.fingerprint == fingerprint } }
    }

    /// `file.update`, with a refusal of untrusted state in this layer's terms.
    private func update<R>(_ body: (inout Contents) throws -> R) throws -> R {
        do {
            return try file.update(body)
        } catch let error as TrustedFileError {
            throw OperationError.untrustedState(error, holding: "the onboarding records")
        }
    }

    /// Inserts or replaces the record of its token and key label.
    public func save(_ record: OnboardingRecord) throws {
        var record = record
        record.updatedAt = Date()
        try update { contents in
            if let index = contents.records.lastIndex(where: { $0.tokenSerial == record.tokenSerial && $0.keyLabel == record.keyLabel }) {
                contents.records[index] = record
            } else {
                contents.records.append(record)
            }
        }
    }

    /// Forgets the record of a key that was deleted.
    public func remove(tokenSerial: String, keyLabel: String, fingerprint: String?) throws {
        try update { contents in
            contents.records.removeAll {
                $0.tokenSerial == tokenSerial && $0.keyLabel == keyLabel && (fingerprint == nil || $0.fingerprint == fingerprint || $0.fingerprint == nil)
            }
        }
    }
}

/// The lock that makes "is this label free? generate, record" one step across processes:
/// one per token serial and key label, in the state directory.
enum KeyLabelLock {
    static func acquire(stateDirectory: URL, tokenSerial: String, keyLabel: String, timeout: TimeInterval,
                        what: String, waiting: (String) -> Void) throws -> FileLock {
        let name = sha256Hex(Data("\(tokenSerial)\n\(keyLabel)".utf8)).prefix(32)
        let path = stateDirectory.appendingPathComponent("locks").appendingPathComponent("key-\(name).lock").path
        // The locks are state of this tool's as well: whoever could write them could hold or
        // free another run's lock.
        do {
            try TrustedFile.verifyPrivateState(stateDirectory.path, kind: .directory)
            try TrustedFile.verifyPrivateState(stateDirectory.appendingPathComponent("locks").path, kind: .directory)
            try TrustedFile.verifyPrivateState(path, kind: .file)
        } catch {
            throw OperationError.untrustedState(error, holding: "the state directory's locks")
        }
        return try FileLock.acquire(path, timeout: timeout, note: "pid \(getpid()): \(what)") { holder in
            waiting("waiting: another process is working on key '\(keyLabel)' of this token\(holder.isEmpty ? "" : " (\(holder))")")
        }
    }
}
