import FireblocksAPI
import Foundation
import HTTPServing
import JOSE

/// Where the proxy listens: a unix socket, or a loopback address — never anything else (the
/// proxy signs for whoever reaches it; client tokens narrow that, they do not replace it).
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// A unix socket (created 0600 in a 0700 directory owned by this user).
    case unix(path: String)
    /// A loopback address and port (0: any free port).
    case loopback(host: String, port: Int)

    /// Parses `unix:/path/to.sock`, `127.0.0.1:8787`, `[::1]:8787` or `localhost:8787`.
    public init(parsing text: String) throws {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), path.utf8.count < 100, !path.hasSuffix("/") else {
                throw ProxyConfigurationError("--listen unix:PATH needs an absolute socket path under 100 bytes, e.g. unix:/run/fireblocks-hsm/bot.sock")
            }
            self = .unix(path: path)
            return
        }
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ProxyConfigurationError("--listen '\(text)' is not [IPV6]:PORT")
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ProxyConfigurationError("--listen '\(text)' is not unix:PATH or HOST:PORT (e.g. 127.0.0.1:8787)")
            }
            host = String(text[..<colon])
            portText = text[text.index(after: colon)...]
        }
        guard let bind = LoopbackAddress.bindHost(host) else {
            throw ProxyConfigurationError("--listen '\(text)': the proxy listens on loopback literals only (127.0.0.1 or another 127.x.y.z, ::1, or the word localhost) or a unix socket; it signs for whoever reaches it, so no resolver decides where it listens")
        }
        guard portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let port = Int(portText), (0...65535).contains(port) else {
            throw ProxyConfigurationError("--listen '\(text)': the port is 0 to 65535")
        }
        self = .loopback(host: bind, port: port)
    }

    /// As given.
    public var description: String {
        switch self {
        case .unix(let path): return "unix:\(path)"
        case .loopback(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// Everything `serve` is told.
public struct ProxyConfiguration: Sendable {
    /// Where to listen.
    public var listen: ListenAddress
    /// Where requests go (the Fireblocks API, or the offline stand-in).
    public var upstream: APIBaseURL
    /// The API user's key (not a secret: it names the user; the token key authenticates).
    public var apiKey: String
    /// The method and path allowlist; empty refuses everything.
    public var rules: [AllowRule]
    /// The largest request body forwarded.
    public var maximumBodySize = 1 << 20
    /// Requests per second, if limited.
    public var rate: RateLimit?
    /// Client tokens, if required.
    public var clients: ClientTokens?
    /// A checkpoint is signed after this many records…
    public var checkpointEvery = 256
    /// …or this long after the first record it does not cover, and at shutdown.
    public var checkpointInterval: Duration = .seconds(30)
    /// `exp - iat` of the JWTs.
    public var jwtLifetime = RequestTokenIssuer.maximumLifetime
    /// Shift `iat`/`exp` by the clock offset measured from Fireblocks' `Date` headers, when it
    /// is beyond a few seconds.
    public var compensateClockSkew = true
    /// How long an upstream exchange may take (connect, send, the answer's head).
    public var upstreamTimeout: Duration = .seconds(60)
    /// How long a health check's test signature is trusted.
    public var healthCacheDuration: Duration = .seconds(5)
    /// How long `/healthz` trusts its last authenticated call upstream (whether Fireblocks still
    /// accepts the proxy's API key); a forwarded answer updates it too.
    public var upstreamCheckInterval: Duration = .seconds(30)
    /// The authenticated call `/healthz` makes upstream: only whether it is refused as
    /// unauthenticated (HTTP 401) matters, so any path every API user may call will do.
    public var upstreamCheckPath = "/v1/vault/accounts_paged?limit=1"
    /// `/healthz` is failing while the audit directory's filesystem has less free space than
    /// this (every request is recorded before it is forwarded: a full disk stops the proxy).
    public var minimumFreeAuditBytes: Int64 = 256 << 20
    /// Connections served at once.
    public var maximumConnections = 256
    /// Time a client has to send a whole request.
    public var requestTimeout: Duration = .seconds(30)

    /// The settings that have no default.
    public init(listen: ListenAddress, upstream: APIBaseURL, apiKey: String, rules: [AllowRule]) {
        self.listen = listen
        self.upstream = upstream
        self.apiKey = apiKey
        self.rules = rules
    }

    /// Refuses settings that cannot work.
    public func validate() throws {
        guard (1...(1 << 30)).contains(maximumBodySize) else { throw ProxyConfigurationError("--max-body must be 1 byte to 1 GiB") }
        guard (1...1_000_000).contains(checkpointEvery) else { throw ProxyConfigurationError("--checkpoint-every must be 1 to 1000000 records") }
        guard checkpointInterval >= .seconds(1), checkpointInterval <= .seconds(86_400) else {
            throw ProxyConfigurationError("--checkpoint-interval must be 1 s to 24 h")
        }
        guard (1...65_536).contains(maximumConnections) else { throw ProxyConfigurationError("the connection cap must be 1 to 65536") }
        _ = try RequestTokenIssuer(apiKey: apiKey, signer: NoSigner(), lifetime: jwtLifetime)
    }
}

/// Only to validate an API key and lifetime without a signer: it never signs.
private struct NoSigner: RS256Signer {
    func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        throw ProxyConfigurationError("not a signer")
    }
}
