import ArgumentParser
import FireblocksAPI
import FireblocksHSM
import FireblocksHSMCommandLine
import Foundation
import Logging
import PKCS11
import ProxySettings
import SigningProxy

/// What `serve` and `bench proxy` do; `fireblocks-hsm` parses and validates them, this
/// executable runs them.
struct NetProxyRunner: ProxyCommandRunner {
    func watchStatus(listen: String, interval: TimeInterval) async throws -> any WatchStatusEndpoint {
        let address: ListenAddress
        do {
            address = try ListenAddress(parsing: listen)
        } catch {
            throw CommandLineError("--listen \(error.reason)")  // a usage error (exit 2)
        }
        do {
            return try await WatchStatusServer.start(listen: address, interval: interval, logger: Logger(label: "fireblocks-hsm.approvals-watch"))
        } catch let error as ProxyConfigurationError {
            throw Self.commandLineError(error)
        }
    }

    func serve(_ command: ServeCommand, transport: any HTTPTransport) async throws {
        do {
            try await start(command, transport: transport)
        } catch let error as ProxySettingError {
            throw CommandLineError("\(ServeCommand.flag(for: error.code)) \(error.reason)")  // a usage error (exit 2)
        } catch let error as ProxyConfigurationError {
            throw Self.commandLineError(error)
        }
    }

    /// The proxy's refusal in the command line's terms: a setting or an address is a usage
    /// error (exit 2, naming the flag); a token without an audit key is the trail's (exit 3).
    private static func commandLineError(_ error: ProxyConfigurationError) -> CommandLineError {
        switch error.code {
        case .invalidSetting:
            return CommandLineError(error.setting.map { "\(ServeCommand.flag(for: $0)) \(error.reason)" } ?? error.reason)
        case .auditUnavailable:
            return CommandLineError(error.reason, exitClass: .io)
        default:
            return CommandLineError(error.reason)
        }
    }

    private func start(_ command: ServeCommand, transport: any HTTPTransport) async throws {
        let level = Logger.Level(rawValue: command.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fireblocks-hsm.serve")
        let profile = try command.token.loadProfile()
        let target = try command.api.target(profile: profile, auditDirectory: nil, transport: transport)
        let settings = try command.settings()
        var configuration = ProxyConfiguration(listen: settings.listen, upstream: target.baseURL, apiKey: target.apiKey, rules: settings.rules)
        configuration.maximumBodySize = settings.maximumBodySize
        configuration.rate = settings.rate
        configuration.clients = settings.clients
        configuration.checkpointEvery = command.checkpointEvery
        configuration.checkpointInterval = .seconds(command.checkpointInterval)
        configuration.jwtLifetime = target.jwtLifetime
        configuration.compensateClockSkew = !command.api.noClockSkewCompensation
        configuration.upstreamTimeout = .milliseconds(Int64(max(1, min(command.api.timeout, 3600)) * 1000))
        configuration.minimumFreeAudit = try command.audit.minimumFree()
        if let path = command.policy {
            configuration.policy = try await NetPolicyRunner.gate(policy: path, store: command.policyStore ?? "sqlite:" + command.defaultPolicyStorePath(),
                                                                  logger: logger)
        }

        let tokenTarget = try command.token.target(key: command.key.key ?? profile?.key, profile: profile)
        let console = Console()
        if tokenTarget.pinSource == .prompt {
            console.diagnostic("warning: the PIN comes from a prompt: if the token logs this process out, the proxy cannot log in again and refuses to sign until restarted; a long-running proxy wants --pin-source file:PATH or env:NAME")
        }
        if let policy = configuration.policy?.file.policy, !policy.clients.isEmpty, configuration.clients == nil {
            console.diagnostic("warning: the policy names clients (\(policy.clients.keys.sorted().joined(separator: ", "))) but without --client-token-file every request is the policy's default")
        }
        if case .loopback = configuration.listen, configuration.clients == nil {
            console.diagnostic("warning: listening on a TCP port without --client-token-file: every local user and process can sign as this API user; prefer a unix socket, or require client tokens")
        }
        let proxy = try await SigningProxy.start(
            configuration: configuration, token: tokenTarget,
            auditDirectory: command.audit.directory(profile: profile), poolSize: command.poolSize, handlingSignals: true,
            observer: Console(), logger: logger)
        let governed = configuration.policy.map { "policy \($0.file.path) sha256 \($0.file.sha256); SIGHUP reloads it" }
            ?? "\(configuration.rules.count) allow rule(s)"
        console.diagnostic("serving on \(proxy.address) → \(configuration.upstream) (\(governed), pool of \(proxy.pool.size)); SIGTERM or Ctrl-C stops")
        let reloads = configuration.policy.map { NetPolicyRunner.reloadOnHangUp($0, logger: logger) }
        await proxy.waitUntilClosed()
        reloads?.cancel()
        await configuration.policy?.close()
    }

    func benchProxy(_ command: BenchProxyCommand, transport: any HTTPTransport) async throws {
        do {
            try await runBenchmark(command, transport: transport)
        } catch let error as ProxyConfigurationError {
            throw Self.commandLineError(error)
        }
    }

    private func runBenchmark(_ command: BenchProxyCommand, transport: any HTTPTransport) async throws {
        let profile = try command.token.loadProfile()
        let target = try command.api.target(profile: profile, auditDirectory: nil, transport: transport)
        let result = try await ProxyBenchmark.run(upstream: target.baseURL, apiKey: target.apiKey, path: command.path,
                                                  token: try command.token.target(key: command.key.key ?? profile?.key, profile: profile),
                                                  auditDirectory: command.audit.directory(profile: profile), workers: command.workers,
                                                  duration: .milliseconds(Int64(command.duration * 1000)), observer: Console())
        let console = Console()
        if command.json {
            console.output(try JSONOutput.encode(result))
        } else {
            console.output("\(result.request), \(result.workers) client(s)\n" + String(format: """
                direct:  %.1f requests/s, p50 %.2f ms, p99 %.2f ms
                proxied: %.1f requests/s, p50 %.2f ms, p99 %.2f ms
                added latency (p50): %.2f ms

                """, result.directRequestsPerSecond, result.directP50Ms, result.directP99Ms,
                result.proxiedRequestsPerSecond, result.proxiedP50Ms, result.proxiedP99Ms, result.addedLatencyP50Ms))
        }
    }
}

extension WatchStatusServer: WatchStatusEndpoint {
    package var listening: String { address.description }
}
