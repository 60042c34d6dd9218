import Foundation

/// Fireblocks API environments and their documented base URLs.
public enum FireblocksEnvironment: String, CaseIterable, Sendable {
    case sandbox, us, eu, eu2

    /// The documented base URL (FIREBLOCKS-API.md, "Base URLs").
    public var baseURL: APIBaseURL {
        let text: String
        switch self {
        case .sandbox: text = "https://sandbox-api.fireblocks.io/v1"
        case .us: text = "https://api.fireblocks.io/v1"
        case .eu: text = "https://eu-api.fireblocks.io/v1"
        case .eu2: text = "https://eu2-api.fireblocks.io/v1"
        }
        // Constants known to be valid.
        return try! APIBaseURL(validating: text)
    }
}

/// A validated API base URL: `https`, or `http` to a loopback address only (the offline
/// stand-in). Validation looks at the text only; nothing is resolved or connected to.
public struct APIBaseURL: Sendable, Equatable, CustomStringConvertible {
    public let scheme: String
    public let host: String
    public let port: Int?
    /// The path prefix every request path is under, e.g. `/v1` (no trailing slash).
    public let basePath: String

    public init(validating text: String) throws(APIClientError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' is not a URL; give e.g. https://api.fireblocks.io/v1")
        }
        guard scheme == "https" || scheme == "http" else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' must be https:// (or http:// to a loopback address)")
        }
        guard let host = components.host, !host.isEmpty else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' has no host")
        }
        guard components.user == nil, components.password == nil, components.query == nil, components.fragment == nil else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' must not carry credentials, a query or a fragment")
        }
        if scheme == "http", !Self.isLoopback(host) {
            throw APIClientError(.insecureBaseURL, "refusing plain http to '\(host)': API credentials travel only over https (http is allowed to a loopback address, for the offline stand-in)")
        }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        self.scheme = scheme
        self.host = host
        self.port = components.port
        self.basePath = path
    }

    /// True for `localhost`, 127.0.0.0/8 and `::1`, judged from the text alone.
    static func isLoopback(_ host: String) -> Bool {
        let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) && Int($0)! <= 255 }) else {
            return false
        }
        return octets[0] == "127"
    }

    /// `scheme://host[:port]`.
    public var origin: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(hostPart)" + (port.map { ":\($0)" } ?? "")
    }

    public var description: String { origin + basePath }

    /// The URL to send to and the `uri` claim to sign for a request path.
    ///
    /// `path` is what the user names: `/v1/workspace` or `/workspace` (the base path is added
    /// when missing), with an optional `?query`, already percent-encoded. It is refused unless
    /// it would go on the wire byte for byte as signed (java-sdk once signed before encoding
    /// and got 401s).
    public func resolve(path: String) throws(APIClientError) -> (url: URL, uri: String) {
        guard path.hasPrefix("/") else {
            throw APIClientError(.badPath, "request path '\(path)' must start with '/', e.g. /v1/workspace")
        }
        guard !path.contains("#") else {
            throw APIClientError(.badPath, "request path '\(path)' must not contain a fragment ('#')")
        }
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%")
        guard path.unicodeScalars.allSatisfy(allowed.contains) else {
            throw APIClientError(.badPath, "request path '\(path)' has characters that must be percent-encoded (encode them yourself so the signed uri equals what is sent)")
        }
        let bytes = Array(path.utf8)
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
            guard index + 2 < bytes.count, bytes[index + 1].isHexDigit, bytes[index + 2].isHexDigit else {
                throw APIClientError(.badPath, "request path '\(path)' has a '%' not followed by two hex digits")
            }
        }
        let pathOnly = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let uri = basePath.isEmpty || pathOnly == basePath || pathOnly.hasPrefix(basePath + "/") ? path : basePath + path
        guard let url = URL(string: origin + uri) else {
            throw APIClientError(.badPath, "request path '\(path)' does not make a URL")
        }
        return (url, uri)
    }
}

private extension UInt8 {
    var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
