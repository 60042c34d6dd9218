import ArgumentParser
import FireblocksAPI
import FireblocksHSM
import FireblocksHSMCommandLine
import PKCS11
import Foundation
import Logging
import SigningProxy

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("unix:/path/to.sock, or a loopback HOST:PORT (127.0.0.1:8787, [::1]:8787).", valueName: "address"))
    var listen: String

    @Option(name: .customLong("allow"), help: ArgumentHelp("A permitted request: 'METHOD /path' ('*' segment wildcards). Repeatable.", valueName: "rule"))
    var allow: [String] = []

    @Option(name: .customLong("client-token-file"), help: ArgumentHelp("Require client tokens: a 0600 file of 'NAME TOKEN' lines.", valueName: "path"))
    var clientTokenFile: String?

    @Option(name: .customLong("max-body"), help: ArgumentHelp("Largest request body forwarded: bytes, or with KiB/MiB.", valueName: "size"))
    var maxBody: String = "1MiB"

    @Option(help: ArgumentHelp("Rate limit for the whole proxy: N/s, N/m or N/h (over it: 429 with Retry-After).", valueName: "rate"))
    var rate: String?

    @Option(name: .customLong("pool-size"), help: ArgumentHelp("Token sessions signing at once (default: one per core, capped by the token).", valueName: "n"))
    var poolSize: Int?

    @Option(name: .customLong("checkpoint-every"), help: ArgumentHelp("Sign an audit checkpoint after this many records…", valueName: "n"))
    var checkpointEvery: Int = 256

    @Option(name: .customLong("checkpoint-interval"), help: ArgumentHelp("…or this many seconds after an unsealed record (and at shutdown).", valueName: "seconds"))
    var checkpointInterval: Int = 30

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be trace, debug, info, notice, warning, error or critical")
        }
        guard !allow.isEmpty else {
            throw ValidationError("give at least one --allow 'METHOD /path' rule: the proxy refuses everything else (e.g. --allow 'GET /v1/vault/accounts_paged')")
        }
        if let poolSize, !(1...1024).contains(poolSize) { throw ValidationError("--pool-size must be 1 to 1024") }
    }

    func run() async throws {
        do {
            try await serve()
        } catch let error as ProxyConfigurationError {
            throw InvalidArgumentError(error.description)  // a usage error (exit 2), in the same words
        }
    }

    private func serve() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fireblocks-hsm.serve")
        let profile = try token.loadProfile()
        let target = try api.target(profile: profile, auditDirectory: nil, transport: try NetworkAccess.transport())
        var configuration = ProxyConfiguration(listen: try ListenAddress(parsing: listen), upstream: target.baseURL,
                                               apiKey: target.apiKey, rules: try allow.map(AllowRule.init(parsing:)))
        configuration.maximumBodySize = try ByteSize.parse(maxBody, flag: "--max-body")
        configuration.rate = try rate.map(RateLimit.init(parsing:))
        configuration.clients = try clientTokenFile.map { try ClientTokens(file: $0) }
        configuration.checkpointEvery = checkpointEvery
        configuration.checkpointInterval = .seconds(checkpointInterval)
        configuration.jwtLifetime = target.jwtLifetime
        configuration.compensateClockSkew = !api.noClockSkewCompensation
        configuration.upstreamTimeout = .milliseconds(Int64(max(1, min(api.timeout, 3600)) * 1000))

        let tokenTarget = try token.target(key: key.key ?? profile?.key, profile: profile)
        let console = Console()
        if tokenTarget.pinSource == .prompt {
            console.diagnostic("warning: the PIN comes from a prompt: if the token logs this process out, the proxy cannot log in again and refuses to sign until restarted; a long-running proxy wants --pin-source file:PATH or env:NAME")
        }
        if case .loopback = configuration.listen, configuration.clients == nil {
            console.diagnostic("warning: listening on a TCP port without --client-token-file: every local user and process can sign as this API user; prefer a unix socket, or require client tokens")
        }
        let proxy = try await SigningProxy.start(
            configuration: configuration, token: tokenTarget,
            auditDirectory: audit.directory(profile: profile), poolSize: poolSize, handlingSignals: true,
            observer: Console(), logger: logger)
        console.diagnostic("serving on \(proxy.address) → \(configuration.upstream) (\(configuration.rules.count) allow rule(s), pool of \(proxy.pool.size)); SIGTERM or Ctrl-C stops")
        await proxy.waitUntilClosed()
    }
}

/// `1048576`, `512KiB`, `1MiB` (also `K`/`M`, `KB`/`MB` as binary multiples).
enum ByteSize {
    static func parse(_ text: String, flag: String) throws -> Int {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20),
                                      ("K", 1 << 10), ("M", 1 << 20), ("B", 1)]
        var number = Substring(text)
        var multiplier = 1
        for (suffix, value) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            multiplier = value
            break
        }
        guard let count = Int(number), count > 0 else {
            throw ValidationError("\(flag) '\(text)' is not a size (e.g. 1048576, 512KiB, 1MiB)")
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
        guard !overflow, bytes <= 1 << 30 else { throw ValidationError("\(flag) must be at most 1GiB") }
        return bytes
    }
}
