import DurableFiles
import Crypto
import Foundation
import Synchronization

/// A configuration value the proxy refuses; says which setting and why (never a secret's value).
public struct ProxyConfigurationError: Error, Sendable, CustomStringConvertible {
    /// Why.
    public let reason: String
    /// An error with its reason.
    public init(_ reason: String) { self.reason = reason }
    /// The reason.
    public var description: String { reason }
}

/// One `--allow 'METHOD /path'` rule: a method (or `*`) and a path of segments, where a `*`
/// segment matches any one segment and a final `**` any rest. Deny by default: a request no
/// rule matches is refused.
public struct AllowRule: Sendable, Equatable, CustomStringConvertible {
    /// `GET`, `POST` … or `*`.
    public let method: String
    /// The path's segments, after the leading `/`.
    public let segments: [String]

    /// Parses `METHOD /path/with/*/segments`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw ProxyConfigurationError("--allow '\(text)' is not 'METHOD /path', e.g. --allow 'GET /v1/vault/accounts_paged' or --allow 'POST /v1/transactions'")
        }
        let method = parts[0].uppercased()
        guard method == "*" || ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
            throw ProxyConfigurationError("--allow '\(text)': the method must be GET, POST, PUT, PATCH, DELETE or *")
        }
        let path = String(parts[1])
        guard path.hasPrefix("/"), !path.contains("?"), !path.contains("%") else {
            throw ProxyConfigurationError("--allow '\(text)': the path starts with '/' and has no query or percent-encoding; use '*' for a segment")
        }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for (index, segment) in segments.enumerated() {
            guard !segment.isEmpty, segment != ".", segment != ".." else {
                throw ProxyConfigurationError("--allow '\(text)': empty, '.' and '..' segments are not allowed")
            }
            guard segment == "*" || segment == "**" || !segment.contains("*") else {
                throw ProxyConfigurationError("--allow '\(text)': '*' stands for a whole segment, not part of one")
            }
            guard segment != "**" || index == segments.count - 1 else {
                throw ProxyConfigurationError("--allow '\(text)': '**' may only end a path")
            }
        }
        self.method = method
        self.segments = segments
    }

    /// True when the rule allows `method` on `segments` (a path already checked by
    /// ``RequestPath``).
    public func allows(method: String, segments requested: [Substring]) -> Bool {
        guard self.method == "*" || self.method == method else { return false }
        for (index, pattern) in segments.enumerated() {
            if pattern == "**" { return requested.count > index }
            guard index < requested.count else { return false }
            guard pattern == "*" || pattern == requested[index] else { return false }
        }
        return requested.count == segments.count
    }

    /// `METHOD /path`.
    public var description: String { "\(method) /\(segments.joined(separator: "/"))" }
}

/// A request target as the proxy judges it: the path and query exactly as received (they are
/// forwarded and signed byte for byte), refused when the path could mean something else to the
/// server than to the allowlist — dot segments, empty segments, encoded slashes, dots or
/// backslashes, anything outside RFC 3986's path characters.
public struct RequestPath: Sendable, Equatable {
    /// What is forwarded and signed: path and `?query`.
    public let target: String
    /// The path's segments (for the allowlist).
    public let segments: [Substring]

    /// Checks `target` (a request's path and query).
    public init(_ target: String) throws {
        guard target.hasPrefix("/"), target.utf8.count <= 8192 else {
            throw ProxyConfigurationError("the request target must be an absolute path under 8 KiB")
        }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let lowered = path.lowercased()
        for encoded in ["%2f", "%2e", "%5c", "%00", "%25"] where lowered.contains(encoded) {
            throw ProxyConfigurationError("the path has an encoded '/', '.', '\\', NUL or '%' (\(encoded)): refused, so that the allowlist and the server read it alike")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/%".unicodeScalars)
        guard path.unicodeScalars.allSatisfy(allowed.contains) else {
            throw ProxyConfigurationError("the path has characters that must be percent-encoded")
        }
        let query = target.dropFirst(path.count)
        guard query.unicodeScalars.allSatisfy({ allowed.contains($0) || $0 == "?" }) else {
            throw ProxyConfigurationError("the query has characters that must be percent-encoded")
        }
        // What the path and query mean once decoded must be text: bytes that are not UTF-8
        // (`%c0%ae`, `%ff`) are read differently by every party (HTTP clients drop or rewrite
        // such a path), so the target signed and recorded would not be the one forwarded.
        for (part, name) in [(Substring(path), "path"), (query.dropFirst(), "query")] {
            guard let decoded = Self.percentDecoded(part) else {
                throw ProxyConfigurationError("the \(name) has a '%' that is not followed by two hex digits")
            }
            guard let text = String(validating: decoded, as: UTF8.self) else {
                throw ProxyConfigurationError("the \(name) percent-decodes to bytes that are not UTF-8: refused, so that what is signed is what the server reads")
            }
            guard !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw ProxyConfigurationError("the \(name) percent-decodes to a control character (NUL, a line end …): refused")
            }
        }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for segment in segments {
            // What some servers make of a segment: its `;parameters` dropped (Tomcat, Jetty),
            // percent-decoded, compatibility-normalised (fullwidth dots), trailing blanks trimmed.
            let bare = segment.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let decoded = Self.percentDecoded(bare).flatMap { String(validating: $0, as: UTF8.self) } ?? String(bare)
            let normalized = decoded.precomposedStringWithCompatibilityMapping.trimmingCharacters(in: .whitespaces)
            guard !segment.isEmpty, !bare.isEmpty, !normalized.isEmpty, !normalized.allSatisfy({ $0 == "." }) else {
                throw ProxyConfigurationError("the path has an empty segment or one of dots only (also as '..;', '%20'-padded or fullwidth): refused, so that no server reads it as another path")
            }
            if normalized.unicodeScalars.contains(where: { $0 == "/" || $0 == "\\" || $0 == "?" || $0 == "#" }) {
                throw ProxyConfigurationError("a path segment decodes to '/', '\\', '?' or '#': refused, so that no server reads it as another path")
            }
        }
        self.target = target
        self.segments = segments
    }

    /// The bytes `%HH` sequences stand for (other characters as themselves); nil for a `%`
    /// not followed by two hex digits.
    static func percentDecoded(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// `--rate 20/s`: a token bucket (burst = one second's worth, at least 1).
public final class RateLimit: Sendable {
    /// Requests per second.
    public let perSecond: Double
    private let bucket: Mutex<(tokens: Double, at: ContinuousClock.Instant)>

    /// Parses `N/s`, `N/m` or `N/h`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let count = Double(parts[0]), count.isFinite, count > 0, count <= 1_000_000 else {
            throw ProxyConfigurationError("--rate '\(text)' is not N/s, N/m or N/h with N from 1 to 1000000 (e.g. 20/s)")
        }
        let seconds: Double
        switch parts[1] {
        case "s": seconds = 1
        case "m": seconds = 60
        case "h": seconds = 3600
        default: throw ProxyConfigurationError("--rate '\(text)': the unit is s, m or h")
        }
        perSecond = count / seconds
        bucket = Mutex((max(1, perSecond), ContinuousClock.now))
    }

    /// Takes a token; otherwise the seconds until one is there.
    public func take() -> Double? {
        bucket.withLock { bucket in
            let now = ContinuousClock.now
            let elapsed = Double(bucket.at.duration(to: now).components.seconds) + Double(bucket.at.duration(to: now).components.attoseconds) / 1e18
            bucket.tokens = min(max(1, perSecond), bucket.tokens + elapsed * perSecond)
            bucket.at = now
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            return (1 - bucket.tokens) / perSecond
        }
    }
}

/// Client bearer tokens (`--client-token-file`): one `NAME TOKEN` per line (`#` comments).
/// Only their SHA-256 is kept; a presented token is compared with every one in constant time,
/// and the name it matched is what the audit records. A client token never reaches Fireblocks.
public struct ClientTokens: Sendable {
    private let entries: [(name: String, digest: [UInt8])]

    /// Reads the file: it must be a regular file, not a symlink, owned by this user and not
    /// readable by group or others (it holds secrets).
    public init(file path: String) throws {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            // The value is not shown: a token pasted where its file belongs must not be echoed.
            throw ProxyConfigurationError("--client-token-file cannot be read (\(String(cString: strerror(errno))); the value is not shown, in case it is a token): give the path of a 0600 file of 'NAME TOKEN' lines")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw ProxyConfigurationError("--client-token-file \(path) is not a regular file (a symlink is refused)")
        }
        guard status.st_uid == geteuid(), status.st_mode & 0o077 == 0 else {
            throw ProxyConfigurationError("--client-token-file \(path) must be owned by this user and not readable by others (chmod 600)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ProxyConfigurationError("--client-token-file \(path) cannot be read")
        }
        try self.init(bytes: Array(data), origin: "--client-token-file \(path)")
    }

    /// Parses the file's text.
    public init(text: String, origin: String) throws {
        try self.init(bytes: Array(text.utf8), origin: origin)
    }

    /// Parses the file's bytes, as people write them (a BOM, `\r\n` line ends and trailing
    /// blanks are fine; anything else that is not text is refused with its line number).
    public init(bytes: [UInt8], origin: String) throws {
        var entries: [(String, [UInt8])] = []
        let lines: [TextLines.Line]
        do {
            lines = try TextLines.parse(bytes)
        } catch {
            throw ProxyConfigurationError("\(origin), \(error) (the line is not shown: it may hold a token)")
        }
        for entry in lines {
            let number = entry.number - 1
            let line = entry.text.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            // The token is never quoted back, not even in part.
            guard fields.count == 2 else {
                throw ProxyConfigurationError("\(origin), line \(number + 1): expected 'NAME TOKEN' (the line is not shown: it may hold a token)")
            }
            let name = String(fields[0])
            guard name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) }),
                  name.count <= 64 else {
                throw ProxyConfigurationError("\(origin), line \(number + 1): a client name is letters, digits, '-', '_' or '.', at most 64")
            }
            guard fields[1].unicodeScalars.allSatisfy({ (0x21...0x7E).contains($0.value) }) else {
                throw ProxyConfigurationError("\(origin), line \(number + 1): client '\(name)' has a token that is not printable ASCII (what clients send in a header)")
            }
            guard fields[1].utf8.count >= 16 else {
                throw ProxyConfigurationError("\(origin), line \(number + 1): client '\(name)' has a token under 16 characters; use e.g. openssl rand -hex 32")
            }
            guard !entries.contains(where: { $0.0 == name }) else {
                throw ProxyConfigurationError("\(origin), line \(number + 1): client '\(name)' appears twice")
            }
            entries.append((name, Array(SHA256.hash(data: Array(fields[1].utf8)))))
        }
        guard !entries.isEmpty else { throw ProxyConfigurationError("\(origin) names no client") }
        self.entries = entries
    }

    /// The client whose token this is, comparing against every entry in constant time.
    public func client(presenting token: String) -> String? {
        let digest = Array(SHA256.hash(data: Array(token.utf8)))
        var found: String?
        for entry in entries {
            var difference: UInt8 = 0
            for index in 0..<digest.count { difference |= digest[index] ^ entry.digest[index] }
            if difference == 0, found == nil { found = entry.name }
        }
        return found
    }

    /// The number of clients.
    public var count: Int { entries.count }
}
