import ArgumentParser
import ProxySettings
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `serve`: declared here, so that `fireblocks-hsm` parses, validates (every setting, the
/// client-token file included), completes and explains it; run by the companion executable,
/// which carries the proxy's server stack (``NetworkCommand``, ``ProxyCommandRunner``).
package struct ServeCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the signing proxy: applications use the API user's key without holding it.",
        discussion: """
            Applications (an unmodified official SDK with any placeholder key, curl) send
            API requests to the proxy. It refuses what no --allow rule permits, records
            every request in the token's audit log (a request whose record cannot be
            written is refused), signs a fresh JWT on the token for exactly the path,
            query and body it forwards, and streams the answer back unchanged. Incoming
            X-API-Key and Authorization headers are dropped.

            --allow 'METHOD /path' (repeatable; deny by default): a '*' segment matches
            one segment, a final '**' any rest, METHOD '*' any method.
            --client-token-file: lines 'NAME TOKEN' (file 0600); clients send the token
            as 'Proxy-Authorization: Bearer TOKEN' or as the SDK's API key (X-API-Key).
            GET /healthz (a live test signature, cached 5 s; clock offset to Fireblocks)
            and GET /metrics (Prometheus) are answered by the proxy itself.
            While the audit directory's filesystem has less free than --audit-min-free
            (default 1GiB or 5%, whichever is smaller), every request is refused with 503
            and /healthz fails with audit-disk; it serves again once there is room.
            SIGTERM/SIGINT: stop accepting, finish requests in flight, sign the final
            audit checkpoint, exit 0. The PIN source must not be a prompt if the proxy is
            to log in again after the token logged it out.

            Examples:
              fireblocks-hsm serve --token fb --key trading-bot --api-key "$API_KEY" \\
                  --env sandbox --pin-source file:/run/secrets/hsm-pin \\
                  --listen unix:/run/fireblocks-hsm/trading-bot.sock \\
                  --allow 'GET /v1/vault/accounts_paged' --allow 'POST /v1/transactions'
              curl --unix-socket /run/fireblocks-hsm/trading-bot.sock \\
                  http://fb/v1/vault/accounts_paged
              # Python SDK: base_path="http://127.0.0.1:8787/v1", api_key="x",
              #             secret_key=<any RSA PEM: the proxy re-signs>
            """
    )

    @OptionGroup package var token: TokenOptions
    @OptionGroup package var key: KeyOptions
    @OptionGroup package var api: APIOptions
    @OptionGroup package var audit: AuditOptions

    @Option(help: ArgumentHelp("unix:/path/to.sock, or a loopback HOST:PORT (127.0.0.1:8787, [::1]:8787).", valueName: "address"))
    package var listen: String

    @Option(name: .customLong("allow"), help: ArgumentHelp("A permitted request: 'METHOD /path' ('*' segment wildcards). Repeatable.", valueName: "rule"))
    package var allow: [String] = []

    @Option(help: ArgumentHelp("A policy file (docs/policy.md): per client, the routes and the transactions it may make, read before the token signs. Instead of --allow.", valueName: "file"))
    package var policy: String?

    @Option(name: .customLong("policy-store"), help: ArgumentHelp("Where the policy's rolling totals are kept: sqlite:PATH (default: policy-limits.sqlite in the state directory) or postgres://USER@HOST[:PORT]/DATABASE[?sslrootcert=/path/ca.pem] shared by several proxies (off loopback over TLS, the server's certificate verified against that CA and the host, libpq's sslmode=verify-full; password from PGPASSWORD).", valueName: "store"))
    package var policyStore: String?

    @Option(name: .customLong("client-token-file"), help: ArgumentHelp("Require client tokens: a 0600 file of 'NAME TOKEN' lines.", valueName: "path"))
    package var clientTokenFile: String?

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest request body forwarded: bytes, or with KiB/MiB.", valueName: "size"))
    package var maxBody: String = "1MiB"

    @Option(help: ArgumentHelp("Rate limit for the whole proxy: N/s, N/m or N/h (over it: 429 with Retry-After).", valueName: "rate"))
    package var rate: String?

    @Option(name: .customLong("pool-size"), help: ArgumentHelp("Token sessions signing at once (default: one per core, capped by the token).", valueName: "n"))
    package var poolSize: Int?

    @Option(name: .customLong("checkpoint-every"), help: ArgumentHelp("Sign an audit checkpoint after this many records…", valueName: "n"))
    package var checkpointEvery: Int = 256

    @Option(name: .customLong("checkpoint-interval"), help: ArgumentHelp("…or this many seconds after an unsealed record (and at shutdown).", valueName: "seconds"))
    package var checkpointInterval: Int = 30

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    package var logLevel: String = "info"

    /// swift-log's level names (the companion maps them; swift-log is not linked here).
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    package func validate() throws {
        guard Self.logLevels.contains(logLevel) else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
        if let policy {
            guard allow.isEmpty else {
                throw ValidationError("give --policy or --allow, not both: --allow is shorthand for a one-rule policy; put its routes in the policy file")
            }
            guard FileManager.default.isReadableFile(atPath: policy) else {
                throw ValidationError("--policy \(policy): no readable file there")
            }
        } else {
            guard !allow.isEmpty else {
                throw ValidationError("give at least one --allow 'METHOD /path' rule or a --policy file: the proxy refuses everything else (e.g. --allow 'GET /v1/vault/accounts_paged')")
            }
            guard policyStore == nil else { throw ValidationError("--policy-store is where a --policy keeps its totals: give --policy too") }
        }
        if let policyStore {
            if policyStore.hasPrefix("postgres://") || policyStore.hasPrefix("postgresql://") {
                let authority = policyStore.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first ?? ""
                if let userInfo = authority.split(separator: "@", maxSplits: 1).first, authority.contains("@"), userInfo.contains(":") {
                    throw ValidationError("--policy-store: the address has a password; put it in PGPASSWORD instead, never on a command line")
                }
            } else if !policyStore.hasPrefix("sqlite:") || policyStore.count == "sqlite:".count {
                throw ValidationError("--policy-store is sqlite:PATH or postgres://USER@HOST[:PORT]/DATABASE")
            }
        }
        if let poolSize, !(1...1024).contains(poolSize) { throw ValidationError("--pool-size must be 1 to 1024") }
        guard (1...1_000_000).contains(checkpointEvery) else { throw ValidationError("--checkpoint-every must be 1 to 1000000 records") }
        guard (1...86_400).contains(checkpointInterval) else { throw ValidationError("--checkpoint-interval must be 1 to 86400 seconds") }
        // The client-token file holds secrets: read by the process that serves (the companion,
        // once), only checked by `fireblocks-hsm` before the hand-over.
        _ = try settings(readingClientTokens: NetworkAccess.isInstalled)
    }

    /// The default policy store: `policy-limits.sqlite` in the state directory.
    package func defaultPolicyStorePath() -> String {
        APITargetResolution.stateDirectoryURL(flag: api.stateDirectory, environment: ProcessInfo.processInfo.environment)
            .appendingPathComponent("policy-limits.sqlite").path
    }

    /// The flag that gives a setting, for the proxy's errors about it.
    package static func flag(for setting: ProxySettingError.Code) -> String {
        switch setting {
        case .listen: return "--listen"
        case .allowRule: return "--allow"
        case .rate: return "--rate"
        case .maximumBodySize: return "--max-body"
        case .clientTokens: return "--client-token-file:"
        case .checkpointEvery: return "--checkpoint-every"
        case .checkpointInterval: return "--checkpoint-interval"
        default: return "serve:"
        }
    }

    /// The proxy's settings from the flags: parsed by `fireblocks-hsm` in `validate()`, before
    /// the hand-over, and again by the companion that runs the proxy.
    ///
    /// - Parameter readingClientTokens: read the client-token file (once per process: the
    ///   companion's `validate()` reads it, and the proxy starts with what was read); false
    ///   only checks it as it would be read (``ClientTokens/check(file:)``), and `clients` is nil.
    package func settings(readingClientTokens: Bool = true) throws(ValidationError) -> ServeSettings {
        do {
            let clients: ClientTokens?
            if let clientTokenFile {
                if readingClientTokens {
                    clients = try Self.clientTokens(clientTokenFile)
                } else {
                    try ClientTokens.check(file: clientTokenFile)
                    clients = nil
                }
            } else {
                clients = nil
            }
            return ServeSettings(
                listen: try ListenAddress(parsing: listen),
                rules: try allow.map { rule throws(ProxySettingError) in try AllowRule(parsing: rule) },
                maximumBodySize: try ByteSize.parse(maxBody),
                rate: try rate.map { text throws(ProxySettingError) in try RateLimit(parsing: text) },
                clients: clients)
        } catch {
            throw ValidationError("\(Self.flag(for: error.code)) \(error.reason)")
        }
    }

    /// The client tokens this process read from `path`, read the first time they are asked for.
    private static let clientTokensRead = Mutex<[String: ClientTokens]>([:])

    static func clientTokens(_ path: String) throws(ProxySettingError) -> ClientTokens {
        if let read = clientTokensRead.withLock({ $0[path] }) { return read }
        let tokens = try ClientTokens(file: path)
        clientTokensRead.withLock { $0[path] = tokens }
        return tokens
    }

    package func run(network: Network) async throws {
        try await network.proxies.serve(self, transport: network.transport)
    }
}

/// `bench proxy`: declared here, run by the companion executable like ``ServeCommand``.
package struct BenchProxyCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Measure what the signing proxy adds over signing and sending a request yourself.",
        discussion: """
            Starts a proxy on a loopback port for GET --path, then has --workers clients
            send that request for --duration seconds twice: directly (a JWT signed through
            the proxy's own session pool, then the request) and through the proxy. Prints
            both rates and latencies and addedLatencyP50Ms = proxied p50 - direct p50. The
            proxy records every request in the token's audit log, as in production. Use
            the offline stand-in (--base-url http://127.0.0.1:PORT/v1): never a real API.

            Example:
              fireblocks-hsm bench proxy --token fb --key admin --api-key "$KEY" \\
                  --base-url http://127.0.0.1:8088/v1 --path /v1/workspace --json
            """
    )

    @OptionGroup package var token: TokenOptions
    @OptionGroup package var key: KeyOptions
    @OptionGroup package var api: APIOptions
    @OptionGroup package var audit: AuditOptions

    @Option(help: ArgumentHelp("The GET request to repeat.", valueName: "path"))
    package var path: String = "/v1/workspace"

    @Option(help: ArgumentHelp("Seconds to measure each way.", valueName: "seconds"))
    package var duration: Double = 5

    @Option(help: ArgumentHelp("Concurrent clients (and pool sessions).", valueName: "n"))
    package var workers: Int = 1

    @Flag(help: "Print one JSON document on stdout.")
    package var json = false

    package func validate() throws {
        guard duration.isFinite, (0.5...600).contains(duration) else { throw ValidationError("--duration must be 0.5 to 600 seconds") }
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1 to 64") }
    }

    package func run(network: Network) async throws {
        try await network.proxies.benchProxy(self, transport: network.transport)
    }
}

/// `serve`'s settings, parsed from its flags.
package struct ServeSettings: Sendable {
    package let listen: ListenAddress
    package let rules: [AllowRule]
    package let maximumBodySize: Int
    package let rate: RateLimit?
    package let clients: ClientTokens?
}

extension BenchProxyCommand: JSONReporting { package var wantsJSON: Bool { json } }
