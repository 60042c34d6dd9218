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
        public let enabled: Bool
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

    /// A new workspace with no users.
    public static func empty() -> SandboxState {
        SandboxState(workspace: Workspace(id: UUID().uuidString.lowercased(), name: "fireblocks-hsm sandbox"),
                     users: [], idempotency: [])
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

    func save(to url: URL?) throws {
        guard let url else { return }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try encoder.encode(self)), to: url.path, overwrite: true, mode: 0o600)
    }
}
