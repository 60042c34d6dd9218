import ErrorShape
import _CryptoExtras
import FireblocksAPI
import Foundation

/// An API user the stand-in accepts requests from: its API key, role and registered public key.
public struct TrustedAPIUser: Sendable {
    /// The API key.
    public let apiKey: String
    /// The role.
    public let role: APIUserRole
    /// The name.
    public let name: String
    let publicKey: _RSA.Signing.PublicKey

    /// - Parameter publicKeyPEM: a `PUBLIC KEY` PEM (`fireblocks-hsm key export --format pem`).
    public init(apiKey: String, role: APIUserRole, publicKeyPEM: String, name: String? = nil) throws {
        guard !apiKey.isEmpty else { throw SandboxError("an API key must not be empty") }
        do {
            publicKey = try _RSA.Signing.PublicKey(pemRepresentation: publicKeyPEM)
        } catch {
            throw SandboxError("not an RSA public key PEM (2048 bits or more) for API key \(apiKey): \(error)")
        }
        self.apiKey = apiKey
        self.role = role
        self.name = name ?? "trusted-\(role.rawValue.lowercased())"
    }

    /// Parses `FILE=API_KEY:ROLE` (the stand-in's `--trust`).
    public init(trustArgument: String) throws {
        guard let equals = trustArgument.lastIndex(of: "=") else {
            throw SandboxError("a trusted key is PUBLIC_KEY_PEM_FILE=API_KEY:ROLE, e.g. admin.pub=3f1c…:ADMIN", setting: "trusted")
        }
        let file = String(trustArgument[..<equals])
        let rest = trustArgument[trustArgument.index(after: equals)...].split(separator: ":", maxSplits: 1).map(String.init)
        guard rest.count == 2 else {
            throw SandboxError("trusted key '\(trustArgument)': after '=' give API_KEY:ROLE", setting: "trusted")
        }
        guard let role = APIUserRole(rawValue: rest[1].uppercased()) else {
            throw SandboxError("trusted key '\(trustArgument)': '\(rest[1])' is not a Fireblocks role; one of: \(APIUserRole.allCases.map(\.rawValue).joined(separator: ", "))", setting: "trusted")
        }
        guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw SandboxError(.file, "cannot read the trusted public key file \(file)", setting: "trusted")
        }
        try self.init(apiKey: rest[0], role: role, publicKeyPEM: pem)
    }
}

/// How the stand-in behaves, faults included.
public struct SandboxConfiguration: Sendable {
    /// The trusted.
    public var trusted: [TrustedAPIUser]
    /// Where the state (created users, idempotency records) is kept; nil for memory only.
    public var stateFile: URL?
    /// Answer 503 to the first N authenticated requests.
    public var failFirst: Int
    /// Answer 429 (`Retry-After: 1`) to the first N authenticated requests.
    public var rateLimitFirst: Int
    /// Close the connection without an answer for the first N requests.
    public var dropFirst: Int
    /// Carry out the first N authenticated requests, then close the connection without
    /// answering (the server acted, the client never heard: what idempotency keys are for).
    public var loseResponseFirst: Int
    /// Wait this long before answering.
    public var delay: TimeInterval
    /// The stand-in's clock runs this many seconds ahead of the host's (negative: behind), in its
    /// checks and in its `Date` header.
    public var clockOffset: TimeInterval
    /// How far `iat` may be in the future before -12.
    public var iatLeeway: TimeInterval
    /// Largest accepted `exp - iat`.
    public var maximumTokenLifetime: Int
    /// Seconds after creation until the admin quorum approves a new API user (until then it is
    /// not listed); nil: only `fireblocks-sandbox approve` approves.
    public var autoApproveAfter: TimeInterval? = 0
    /// The status a user takes when approved.
    public var initialStatus = "PENDING_ACTIVATION"
    /// Seconds from a pairing token to the device being paired (and again to the set-up done,
    /// for co-signer users).
    public var pairAfter: TimeInterval = 1
    /// How long a transaction stays in each status before the next (SUBMITTED → … → COMPLETED).
    public var transactionStep: TimeInterval = 1
    /// Whitelisted IP addresses, by user name (empty: any IP).
    public var whitelist: [String: [String]] = [:]
    /// How much of what requests make grow the stand-in keeps.
    public var limits = SandboxLimits()
    /// Whether a registered approval key is active at once (false: it waits for an approval
    /// request, `ccrIdPendingRegistration`, that `fireblocks-sandbox approvals approve` or
    /// another API user approves).
    public var approvalKeysActiveAtOnce = true
    /// How long an approval request the stand-in makes (a key registration or deletion) lives.
    public var approvalRequestLifetime: TimeInterval = 86_400

    /// Refuses values the stand-in cannot honour (negative counts, infinite or huge delays and
    /// offsets) before anything starts.
    public func validate() throws {
        for (setting, count) in [("failFirst", failFirst), ("rateLimitFirst", rateLimitFirst), ("dropFirst", dropFirst),
                                 ("loseResponseFirst", loseResponseFirst)] where count < 0 {
            throw SandboxError("a fault count must not be negative", setting: setting)
        }
        guard delay.isFinite, (0...600).contains(delay) else {
            throw SandboxError("the delay must be 0 to 600 seconds", setting: "delay")
        }
        guard clockOffset.isFinite, abs(clockOffset) <= 10 * 365 * 86400 else {
            throw SandboxError("the clock offset must be a finite number of seconds within ten years", setting: "clockOffset")
        }
        guard iatLeeway.isFinite, iatLeeway >= 0, maximumTokenLifetime > 0 else {
            throw SandboxError("the token leeway and lifetime must be positive")
        }
        if let autoApproveAfter, !(autoApproveAfter.isFinite && (0...86_400 * 30).contains(autoApproveAfter)) {
            throw SandboxError("the automatic approval delay must be 0 to 30 days (or 'never')", setting: "autoApproveAfter")
        }
        guard pairAfter.isFinite, (0...86_400).contains(pairAfter) else {
            throw SandboxError("the pairing delay must be 0 to 86400 seconds", setting: "pairAfter")
        }
        guard transactionStep.isFinite, (0...86_400).contains(transactionStep) else {
            throw SandboxError("the transaction step must be 0 to 86400 seconds", setting: "transactionStep")
        }
        for (setting, limit) in [("limits.users", limits.users), ("limits.transactions", limits.transactions),
                                 ("limits.idempotencyAnswers", limits.idempotencyAnswers), ("limits.nonces", limits.nonces),
                                 ("limits.approvals", limits.approvals)] where limit < 1 {
            throw SandboxError("a limit must be at least 1", setting: setting)
        }
        guard APIUserStatus(rawValue: initialStatus) != nil else {
            throw SandboxError("the initial status must be one of \(APIUserStatus.allCases.map(\.rawValue).joined(separator: ", "))", setting: "initialStatus")
        }
    }

    /// Creates the value from its parts.
    public init(trusted: [TrustedAPIUser], stateFile: URL? = nil, failFirst: Int = 0, rateLimitFirst: Int = 0,
                dropFirst: Int = 0, loseResponseFirst: Int = 0, delay: TimeInterval = 0, clockOffset: TimeInterval = 0,
                iatLeeway: TimeInterval = 5, maximumTokenLifetime: Int = 60) {
        self.trusted = trusted
        self.stateFile = stateFile
        self.failFirst = failFirst
        self.rateLimitFirst = rateLimitFirst
        self.dropFirst = dropFirst
        self.loseResponseFirst = loseResponseFirst
        self.delay = delay
        self.clockOffset = clockOffset
        self.iatLeeway = iatLeeway
        self.maximumTokenLifetime = maximumTokenLifetime
    }
}

/// A bound on each collection of the stand-in that requests make grow, so that a stand-in left
/// running (or a test that loops) keeps its memory and its state file bounded. What happens at
/// each bound is chosen by what the collection is for:
public struct SandboxLimits: Sendable, Equatable {
    /// Created API users. At the bound a creation is refused (409 `CONFLICT`), never made room
    /// for: a user forgotten would silently stop authenticating the key that backs it. The
    /// refusal is not remembered under its Idempotency-Key (a retry once there is room works).
    public var users = 1_000
    /// Transactions. At the bound the oldest `COMPLETED` one is forgotten (a finished transfer
    /// only answers reads; its id then answers 404, and its `externalTxId` may be used again);
    /// while none has completed, a creation is refused with 429 `RATE_LIMIT` and a
    /// `Retry-After` of one status step, by when one has moved on.
    public var transactions = 5_000
    /// Idempotency-Keys and their first answers. Forgotten after 24 hours, as the API forgets
    /// them; at the bound the oldest is forgotten: a retry comes within seconds or minutes of
    /// its request, far sooner than the oldest of thousands.
    public var idempotencyAnswers = 5_000
    /// Nonces of JWTs still alive (each is kept until its `exp`, and two minutes more, so a
    /// replay is refused). At the bound a request is refused with 429 `RATE_LIMIT` and a
    /// `Retry-After` until the oldest is forgotten: forgetting a live nonce would let a replay
    /// through.
    public var nonces = 100_000
    /// Approval requests. At the bound the oldest one no longer open (approved, rejected or
    /// expired: it only answers reads) is forgotten; while every one is open, a new one is
    /// refused (429 `RATE_LIMIT` for a key registration or deletion; an error for
    /// `fireblocks-sandbox approvals add`): forgetting an open request would drop a decision.
    public var approvals = 1_000

    /// The default bounds.
    public init() {}
}

/// A stand-in configuration or start-up problem. Matchable by ``code``.
public struct SandboxError: LibraryError, Hashable {
    /// What went wrong, for matching.
    public struct Code: ErrorCode {
        public let name: String
        private init(_ name: String) { self.name = name }

        /// A flag value is malformed or out of range.
        public static let badConfiguration = Code("badConfiguration")
        /// A file named by a flag cannot be read.
        public static let file = Code("file")
        /// The address cannot be listened on (in use, not permitted).
        public static let listen = Code("listen")
    }

    /// The code.
    public let code: Code
    /// The description.
    public let description: String
    public var reason: String { description }
    /// The configuration's property the error is about (`delay`, `trusted`, `host`), when one
    /// is: the stand-in's command line names its flag.
    public let setting: String?
    public let location: ErrorLocation

    /// Creates the value from its parts.
    public init(_ code: Code = .badConfiguration, _ description: String, setting: String? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.description = description
        self.setting = setting
        self.location = ErrorLocation(file: file, line: line)
    }

    /// Creates the value from its parts.
    public init(_ description: String, setting: String? = nil, file: String = #fileID, line: UInt = #line) {
        self.init(.badConfiguration, description, setting: setting, file: file, line: line)
    }

    /// Equal when the codes are equal (the reason is for people).
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    /// Hashes the code, as equality compares it.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
