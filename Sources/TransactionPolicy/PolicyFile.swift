import Crypto
import DurableFiles
import HexEncoding
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A policy read from a file, with the SHA-256 of the bytes it was read from: what the proxy
/// records at start and at every reload, so that the log shows which policy governed each
/// request.
public struct PolicyFile: Sendable {
    /// The file's path as given.
    public let path: String
    /// The policy.
    public let policy: Policy
    /// SHA-256 of the file's bytes, lowercase hex.
    public let sha256: String

    /// Reads and parses `path`; errors carry the path and the line.
    ///
    /// - Parameter trusted: the file must pass TrustedFile's rule for configuration (it and its
    ///   directory yours or root's, writable by nobody else): what the proxy enforces, since
    ///   whoever can write the policy decides what the token signs. Checking a draft needs not.
    public init(path: String, trusted: Bool = true) throws(PolicyError) {
        let bytes: [UInt8]
        if trusted {
            do {
                bytes = try TrustedFile.read(path, for: .configures, limit: Policy.maximumTextSize + 1)
            } catch {
                let remedy = TrustedFile.remedy(for: error).map { " (\($0))" } ?? ""
                throw PolicyError(error.code == .unreadable ? .unreadable : .untrusted,
                                  "the policy file cannot be trusted or read: \(error.description)\(remedy)", path: path)
            }
        } else {
            do {
                bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe).prefix(Policy.maximumTextSize + 1))
            } catch {
                throw PolicyError(.unreadable, "cannot read the policy file: \(error.localizedDescription)", path: path)
            }
        }
        try self.init(path: path, bytes: bytes)
    }

    /// Parses the bytes read from `path`.
    public init(path: String, bytes: [UInt8]) throws(PolicyError) {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PolicyError(.syntax, "the policy is not UTF-8 text", path: path)
        }
        do {
            self.policy = try Policy(yaml: text)
        } catch {
            throw error.reading(path)
        }
        self.path = path
        self.sha256 = hex(SHA256.hash(data: bytes))
    }
}

/// Something the policy allows that is probably not meant.
public struct PolicyWarning: Sendable, Hashable, CustomStringConvertible {
    /// The line it is about.
    public let line: Int?
    public let message: String

    public var description: String { line.map { "line \($0): \(message)" } ?? message }
}

extension Policy {
    /// What is allowed but probably not meant: a client that may create transactions but has no
    /// transaction rules (the route alone then decides, as allow rules do).
    public var warnings: [PolicyWarning] {
        var clients = self.clients.values.sorted { ($0.line ?? 0) < ($1.line ?? 0) }
        if let defaultClient { clients.append(defaultClient) }
        let create: [Substring] = ["v1", "transactions"]
        return clients.compactMap { client in
            guard client.transactions == nil, client.routes.contains(where: { $0.allows(method: "POST", segments: create) }) else { return nil }
            return PolicyWarning(line: client.line, message: "client '\(client.name)' may POST /v1/transactions but has no transaction rules: "
                                 + "any amount of any asset to any destination")
        }
    }

    /// How many transaction rules the policy has, all clients together.
    public var transactionRuleCount: Int {
        clients.values.reduce(defaultClient?.transactions?.count ?? 0) { $0 + ($1.transactions?.count ?? 0) }
    }
}
