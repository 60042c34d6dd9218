#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

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
        // Constants known to be valid; the fallback keeps this total without a force-try.
        return (try? APIBaseURL(validating: text)) ?? APIBaseURL(scheme: "https", host: "invalid.invalid", port: nil, basePath: "/v1")
    }
}

/// A validated API base URL: `https`, or `http` to a loopback address only (the offline
/// stand-in). Validation looks at the text only; nothing is resolved or connected to.
public struct APIBaseURL: Sendable, Equatable, CustomStringConvertible {
    /// The scheme.
    public let scheme: String
    /// The host.
    public let host: String
    /// The port.
    public let port: Int?
    /// The path prefix every request path is under, e.g. `/v1` (no trailing slash).
    public let basePath: String

    fileprivate init(scheme: String, host: String, port: Int?, basePath: String) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
    }

    /// Creates the value from its parts.
    public init(validating text: String) throws(APIClientError) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' is not a URL; give e.g. https://api.fireblocks.io/v1")
        }
        guard scheme == "https" || scheme == "http" else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' must be https:// (or http:// to a loopback address)")
        }
        // Foundation on Linux keeps the brackets of an IPv6 literal in `host`; Darwin drops them.
        guard let rawHost = components.host, case let host = Self.unbracketed(rawHost), !host.isEmpty else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' has no host")
        }
        guard components.user == nil, components.password == nil, components.query == nil, components.fragment == nil else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' must not carry credentials, a query or a fragment")
        }
        if scheme == "http", !Self.isLoopback(host) {
            throw APIClientError(.insecureBaseURL, "refusing plain http to '\(host)': API credentials travel only over https (http is allowed to a loopback address, for the offline stand-in)")
        }
        guard host.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 0x20 && $0.value < 0x7f }) else {
            throw APIClientError(.badBaseURL, "base URL '\(text)' has a host with characters outside ASCII; write it as an ASCII name or address")
        }
        if let port = components.port, !(1...65535).contains(port) {
            throw APIClientError(.badBaseURL, "base URL '\(text)' has port \(port); ports are 1 to 65535")
        }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        self.scheme = scheme
        self.host = host
        self.port = components.port
        self.basePath = path
    }

    /// True for `localhost`, 127.0.0.0/8 and `::1`, judged from the text alone. Only ASCII
    /// digits count as digits (`½` and `٣` are numbers to Unicode, not to an address parser).
    public static func isLoopback(_ host: String) -> Bool {
        let host = unbracketed(host).lowercased()
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return false }
        for octet in octets {
            guard (1...3).contains(octet.utf8.count), octet.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                  let value = Int(octet), value <= 255 else { return false }
        }
        return octets[0] == "127"
    }

    static func unbracketed(_ host: String) -> String {
        host.hasPrefix("[") && host.hasSuffix("]") && host.count >= 2 ? String(host.dropFirst().dropLast()) : host
    }

    /// `scheme://host[:port]`.
    public var origin: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(hostPart)" + (port.map { ":\($0)" } ?? "")
    }

    /// How it reads in messages.
    public var description: String { origin + basePath }

    /// The URL to send to and the `uri` claim to sign for a request path.
    ///
    /// `path` is what the user names: `/v1/workspace` or `/workspace` (the base path is added
    /// when missing), with an optional `?query`, already percent-encoded. It is refused unless
    /// it would go on the wire byte for byte as signed (java-sdk once signed before encoding
    /// and got 401s).
    public func resolve(path: String) throws(APIClientError) -> (url: URL, uri: String) {
        try Self.validate(path: path)
        let pathOnly = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let uri = basePath.isEmpty || pathOnly == basePath || pathOnly.hasPrefix(basePath + "/") ? path : basePath + path
        guard let url = URL(string: origin + uri) else {
            throw APIClientError(.badPath, "request path '\(path)' does not make a URL")
        }
        return (url, uri)
    }

    /// The `uri` claim for a whole path (`/v1/…`), when no base URL is known: the claim names no
    /// host, so signing needs none. A path without the `/v1` prefix is refused (which base path
    /// to add is the base URL's to say).
    public static func uri(forWholePath path: String) throws(APIClientError) -> String {
        try validate(path: path)
        guard path.hasPrefix("/v1/") || path == "/v1" || path.hasPrefix("/v1?") else {
            throw APIClientError(.badPath, "request path '\(path)' must be the whole path, starting with /v1/, when no base URL says which base path to add")
        }
        return path
    }

    /// Refuses a path that would not go on the wire byte for byte as signed.
    static func validate(path: String) throws(APIClientError) {
        guard path.hasPrefix("/") else {
            throw APIClientError(.badPath, "request path '\(path)' must start with '/', e.g. /v1/workspace")
        }
        guard !path.contains("#") else {
            throw APIClientError(.badPath, "request path '\(path)' must not contain a fragment ('#')")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?%".utf8)
        guard path.utf8.allSatisfy(allowed.contains) else {
            throw APIClientError(.badPath, "request path '\(path)' has characters that must be percent-encoded (encode them yourself so the signed uri equals what is sent)")
        }
        let bytes = Array(path.utf8)
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
            guard index + 2 < bytes.count, bytes[index + 1].isHexDigit, bytes[index + 2].isHexDigit else {
                throw APIClientError(.badPath, "request path '\(path)' has a '%' not followed by two hex digits")
            }
        }
    }
}

private extension UInt8 {
    var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}
