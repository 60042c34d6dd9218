import DurableFiles
import FireblocksAPI
import Foundation

/// What the stand-in remembers; written to the state file after every change so tests and
/// users can inspect what was created.
public struct SandboxState: Codable, Equatable, Sendable {
    /// Workspace.
    public struct Workspace: Codable, Equatable, Sendable {
        /// The id.
        public let id: String
        /// The name.
        public let name: String
    }

    /// A user created through `POST /v1/management/api_users`.
    public struct CreatedUser: Codable, Equatable, Sendable {
        /// The id.
        public let id: String
        /// The name.
        public let name: String
        /// The role.
        public let role: String
        /// The status.
        public var status: String
        /// Whether the API user is enabled.
        public var enabled: Bool
        /// The CSR, PEM.
        public let csrPem: String
        /// SHA-256 of the CSR's DER SubjectPublicKeyInfo, lowercase hex.
        public let publicKeySHA256: String
        /// `coSignerSetupType`, e.g. `SGX_MACHINE` (nil: left out).
        public let coSignerSetupType: String?
        /// The co signer setup is first user.
        public let coSignerSetupIsFirstUser: Bool?
        /// The API key that created it.
        public let createdBy: String
        /// When it was made.
        public let createdAt: Date
        /// The request id.
        public let requestID: String
        /// When the admin quorum approves the creation (nil: only `fireblocks-sandbox approve`).
        public var approvalDue: Date?
        /// When it was approved; until then the user is not listed (nil in a state file from
        /// before approvals were simulated: approved).
        public var approvedAt: Date?
        /// Set while the creation awaits approval (absent in older state files: approved).
        public var awaitingApproval: Bool?
        /// The status it takes when approved (the stand-in's `--initial-status`).
        public var statusOnApproval: String?
        /// When a pairing token was first issued.
        public var pairingTokenIssuedAt: Date?

        /// Approved and so visible in the API.
        public var isVisible: Bool { awaitingApproval != true }
    }

    /// A remembered Idempotency-Key and the first answer to it.
    public struct IdempotentAnswer: Codable, Equatable, Sendable {
        /// The key.
        public let key: String
        /// The API key.
        public let apiKey: String
        /// The body SHA-256.
        public let bodySHA256: String
        /// The status.
        public let status: Int
        /// The body.
        public let body: String
        /// The request id.
        public let requestID: String
        /// When it was made.
        public let createdAt: Date
    }

    /// The workspace.
    public var workspace: Workspace
    /// The users.
    public var users: [CreatedUser]
    /// Idempotency-Keys seen, with their first answers.
    public var idempotency: [IdempotentAnswer]
    /// The vault accounts (nil: ``defaultVaultAccounts``; a state file may list its own).
    public var vaultAccounts: [VaultAccount]?
    /// Transactions created (nil in a state file from before transactions were simulated).
    public var transactions: [Transaction]?
    /// Approval keys registered (nil in a state file from before they were simulated).
    public var approvalKeys: [ApprovalKeyRecord]?
    /// Approval requests (nil in a state file from before they were simulated).
    public var approvals: [ApprovalRecord]?

    /// A new workspace with no users.
    public static func empty() -> SandboxState {
        SandboxState(workspace: Workspace(id: UUID().uuidString.lowercased(), name: "fireblocks-hsm sandbox"),
                     users: [], idempotency: [], vaultAccounts: nil, transactions: nil, approvalKeys: nil, approvals: nil)
    }

    /// Moves every user along the simulated lifecycle to where it is at `now`: an approval that
    /// is due makes the user visible with its status on approval; `pairAfter` seconds after its pairing
    /// token the device is paired (`PENDING_DEVICE_PAIRING` → `READY`, or through
    /// `PENDING_DEVICE_SETUP` for co-signer users, another `pairAfter` later). Returns whether
    /// anything changed.
    @discardableResult
    public mutating func advance(now: Date, pairAfter: TimeInterval) -> Bool {
        var changed = false
        for index in users.indices {
            if users[index].awaitingApproval == true, let due = users[index].approvalDue, due <= now {
                users[index].awaitingApproval = nil
                users[index].approvedAt = due
                users[index].status = users[index].statusOnApproval ?? "PENDING_ACTIVATION"
                changed = true
            }
            guard let issued = users[index].pairingTokenIssuedAt else { continue }
            let coSigner = users[index].coSignerSetupType != nil
            if users[index].status == "PENDING_DEVICE_PAIRING", now >= issued.addingTimeInterval(pairAfter) {
                users[index].status = coSigner ? "PENDING_DEVICE_SETUP" : "READY"
                changed = true
            }
            if users[index].status == "PENDING_DEVICE_SETUP", now >= issued.addingTimeInterval(2 * pairAfter) {
                users[index].status = "READY"
                changed = true
            }
        }
        return changed
    }

    /// Approves a user awaiting approval, by name or id (what the admin quorum does in the
    /// Console). Returns the user, or nil when there is none of that name or id.
    public mutating func approve(_ nameOrID: String, now: Date) -> CreatedUser? {
        guard let index = users.firstIndex(where: { $0.id == nameOrID || $0.name == nameOrID }) else { return nil }
        if users[index].awaitingApproval == true {
            users[index].awaitingApproval = nil
            users[index].approvedAt = now
            users[index].status = users[index].statusOnApproval ?? "PENDING_ACTIVATION"
        }
        return users[index]
    }

    /// Remembers `answer` under its Idempotency-Key: answers older than 24 hours are forgotten
    /// first (the API's retention), then the oldest while `limit` are kept.
    public mutating func remember(_ answer: IdempotentAnswer, limit: Int, now: Date) {
        idempotency.removeAll { now.timeIntervalSince($0.createdAt) > IdempotencyStore.serverRetention }
        if idempotency.count >= limit { idempotency.removeFirst(idempotency.count - max(0, limit - 1)) }
        idempotency.append(answer)
    }

    /// Loads the state file, or starts empty when there is none.
    public static func load(from url: URL?) throws -> SandboxState {
        guard let url, let data = FileManager.default.contents(atPath: url.path), !data.isEmpty else { return .empty() }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(SandboxState.self, from: data)
        } catch {
            throw SandboxError("state file \(url.path) is unreadable: \(error)")
        }
    }

    /// Writes the state file (atomically, 0600).
    public func save(to url: URL?) throws {
        guard let url else { return }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try encoder.encode(self)), to: url.path, overwrite: true, mode: 0o600)
    }
}
