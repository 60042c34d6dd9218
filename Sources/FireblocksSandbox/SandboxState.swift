import DurableFiles
import FireblocksAPI
import Foundation

/// What the stand-in remembers; written to the state file after every change so tests and
/// users can inspect what was created.
public struct SandboxState: Codable, Equatable, Sendable {
    public struct Workspace: Codable, Equatable, Sendable {
        public let id: String
        public let name: String
    }

    /// A user created through `POST /v1/management/api_users`.
    public struct CreatedUser: Codable, Equatable, Sendable {
        public let id: String
        public let name: String
        public let role: String
        public var status: String
        public let enabled: Bool
        public let csrPem: String
        /// SHA-256 of the CSR's DER SubjectPublicKeyInfo, lowercase hex.
        public let publicKeySHA256: String
        public let coSignerSetupType: String?
        public let coSignerSetupIsFirstUser: Bool?
        /// The API key that created it.
        public let createdBy: String
        public let createdAt: Date
        public let requestID: String
    }

    /// A remembered Idempotency-Key and the first answer to it.
    public struct IdempotentAnswer: Codable, Equatable, Sendable {
        public let key: String
        public let apiKey: String
        public let bodySHA256: String
        public let status: Int
        public let body: String
        public let requestID: String
        public let createdAt: Date
    }

    public var workspace: Workspace
    public var users: [CreatedUser]
    public var idempotency: [IdempotentAnswer]

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
