import ProxySettings
import AuditTrail
import FireblocksAPI
import Foundation
import HTTPServing
import JOSE

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
    /// The policy read before the token signs (routes and transaction rules, with its limit
    /// store); when set, it decides instead of ``rules``.
    public var policy: PolicyGate?
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
    /// While the audit directory's filesystem has less free space than this, every request is
    /// refused (503, nothing recorded, signed or forwarded) and `/healthz` is failing
    /// (`audit-disk`): every request is recorded before it is forwarded, and a record cut short
    /// by a full disk would stop the proxy half-way. It serves again once there is room.
    public var minimumFreeAudit: AuditDiskThreshold = .standard
    /// How long a measurement of the audit disk's free space is reused (one `statvfs` per
    /// interval, however many requests; measured again at once after a record failed).
    public var auditDiskCheckInterval: Duration = .seconds(1)
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
        guard (1...(1 << 30)).contains(maximumBodySize) else { throw ProxyConfigurationError(.invalidSetting, "must be 1 byte to 1 GiB", setting: .maximumBodySize) }
        guard (1...1_000_000).contains(checkpointEvery) else { throw ProxyConfigurationError(.invalidSetting, "must be 1 to 1000000 records", setting: .checkpointEvery) }
        guard checkpointInterval >= .seconds(1), checkpointInterval <= .seconds(86_400) else {
            throw ProxyConfigurationError(.invalidSetting, "must be 1 s to 24 h", setting: .checkpointInterval)
        }
        guard (1...65_536).contains(maximumConnections) else { throw ProxyConfigurationError(.invalidSetting, "the connection cap must be 1 to 65536") }
        _ = try RequestTokenIssuer(apiKey: apiKey, signer: NoSigner(), lifetime: jwtLifetime)
    }
}

/// Only to validate an API key and lifetime without a signer: it never signs.
private struct NoSigner: RS256Signer {
    func signRS256(_ signingInput: [UInt8]) throws -> [UInt8] {
        throw ProxyConfigurationError("not a signer")
    }
}
