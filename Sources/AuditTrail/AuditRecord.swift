#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// A JSON value in an audit record's facts.
public indirect enum AuditValue: Codable, Sendable, Equatable {
    case string(String)
    case integer(Int)
    case bool(Bool)
    case array([AuditValue])
    case object([String: AuditValue])

    /// Decodes any of the cases.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int.self) { self = .integer(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([AuditValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: AuditValue].self)) }
    }

    /// Encodes the value as plain JSON.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// One line of the audit log: who did what to which token, when, with what outcome, and the
/// event's facts. Never a PIN, a JWT, a pairing token or any other secret.
public struct AuditRecord: Codable, Sendable, Equatable {
    /// Who ran the tool.
    public struct Actor: Codable, Sendable, Equatable {
        /// The OS user name.
        public let user: String
        /// The numeric user id.
        public let uid: UInt32
        /// The host name.
        public let host: String

        /// The actor of this process.
        public static var current: Actor {
            let uid = getuid()
            let user = getpwuid(uid).flatMap { $0.pointee.pw_name.map { String(cString: $0) } } ?? String(uid)
            return Actor(user: user, uid: uid, host: ProcessInfo.processInfo.hostName)
        }
    }

    /// The tool that wrote it.
    public struct Tool: Codable, Sendable, Equatable {
        /// Its name.
        public let name: String
        /// Its version.
        public let version: String

        /// A tool's identity.
        public init(name: String, version: String) {
            self.name = name
            self.version = version
        }
    }

    /// `ok`, or `failed` with the reason.
    public struct Outcome: Codable, Sendable, Equatable {
        /// `ok` or `failed`.
        public let result: String
        /// Why it failed.
        public let reason: String?

        /// Success.
        public static let ok = Outcome(result: "ok", reason: nil)
        /// A failure and its reason (no secret).
        public static func failed(_ reason: String) -> Outcome { Outcome(result: "failed", reason: reason) }
    }

    /// The token the log is about.
    public struct Token: Codable, Sendable, Equatable {
        /// Its serial number (the log's name).
        public let serial: String
        /// Its label.
        public let label: String

        /// A token's identity.
        public init(serial: String, label: String) {
            self.serial = serial
            self.label = label
        }
    }

    /// Its line index, from 0.
    public let seq: Int
    /// RFC 3339 UTC.
    public let time: String
    /// Who ran the tool.
    public let actor: Actor
    /// The tool.
    public let tool: Tool
    /// What happened, e.g. `key.generated`.
    public let event: String
    /// How it ended.
    public let outcome: Outcome
    /// The token.
    public let token: Token
    /// The event's facts.
    public let facts: [String: AuditValue]

    /// The one line the record is, without its newline: sorted keys, no escaped slashes.
    public func line() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let line = Array(try encoder.encode(self))
        // Every reader takes a longer line for damage (LogScan): such a record is never written,
        // whatever put so much into its facts; the operation fails as on a full disk.
        guard line.count <= LogScan.maximumLineLength else {
            throw AuditError(.unwritable, "a '\(event.prefix(64))' record of \(line.count) bytes is longer than a record may be (\(LogScan.maximumLineLength >> 20) MiB); nothing was written")
        }
        return line
    }
}

/// What is appended: a record without its sequence number and time, which the log assigns.
public struct AuditEntry: Sendable {
    /// What happened.
    public let event: String
    /// How it ended.
    public let outcome: AuditRecord.Outcome
    /// The event's facts.
    public let facts: [String: AuditValue]

    /// An entry to append.
    public init(event: String, outcome: AuditRecord.Outcome = .ok, facts: [String: AuditValue] = [:]) {
        self.event = event
        self.outcome = outcome
        self.facts = facts
    }
}

extension AuditRecord {
    /// RFC 3339 UTC, whole seconds (`2026-11-25T09:00:00Z`), as `time` carries it. Formatted
    /// without ICU (FoundationEssentials), so writing a record loads no locale or time-zone data.
    public static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }
}
