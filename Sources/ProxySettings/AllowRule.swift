import ErrorShape

/// One allowlist rule, `METHOD /path`: a method (or `*`) and a path of segments, where a `*`
/// segment matches any one segment and a final `**` any rest. Deny by default: a request no
/// rule matches is refused.
public struct AllowRule: Sendable, Equatable, CustomStringConvertible {
    /// `GET`, `POST` … or `*`.
    public let method: String
    /// The path's segments, after the leading `/`.
    public let segments: [String]

    /// Parses `METHOD /path/with/*/segments`.
    public init(parsing text: String) throws(ProxySettingError) {
        let parts = text.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw ProxySettingError(.allowRule, "'\(text)' is not 'METHOD /path', e.g. 'GET /v1/vault/accounts_paged' or 'POST /v1/transactions'")
        }
        let method = parts[0].uppercased()
        guard method == "*" || ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method) else {
            throw ProxySettingError(.allowRule, "'\(text)': the method must be GET, POST, PUT, PATCH, DELETE or *")
        }
        let path = String(parts[1])
        guard path.hasPrefix("/"), !path.contains("?"), !path.contains("%") else {
            throw ProxySettingError(.allowRule, "'\(text)': the path starts with '/' and has no query or percent-encoding; use '*' for a segment")
        }
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for (index, segment) in segments.enumerated() {
            guard !segment.isEmpty, segment != ".", segment != ".." else {
                throw ProxySettingError(.allowRule, "'\(text)': empty, '.' and '..' segments are not allowed")
            }
            guard segment == "*" || segment == "**" || !segment.contains("*") else {
                throw ProxySettingError(.allowRule, "'\(text)': '*' stands for a whole segment, not part of one")
            }
            guard segment != "**" || index == segments.count - 1 else {
                throw ProxySettingError(.allowRule, "'\(text)': '**' may only end a path")
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

