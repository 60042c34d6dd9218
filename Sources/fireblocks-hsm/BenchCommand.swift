import ArgumentParser
import FireblocksHSM
import SigningProxy
import Foundation
import TokenKeys

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the token: signatures through the signing pool the proxy uses.",
        subcommands: [BenchSignCommand.self, BenchProxyCommand.self]
    )
}

struct BenchSignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign for a while with N workers through the signing pool; report rate and latency.",
        discussion: """
            Each worker signs (CKM_SHA256_RSA_PKCS, as for a JWT) in a loop through a pool
            of --workers sessions, for --duration seconds after a short warm-up. Every
            signature is verified with the key's public half; a bad one fails the run.
            ci/bench runs this beside a C loop over the same token and key.

            Examples:
              fireblocks-hsm bench sign --token fb --key trading-bot \\
                  --duration 10 --workers 2
              fireblocks-hsm bench sign --token fb --key trading-bot --json
            """
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions

    @Option(help: ArgumentHelp("Seconds to measure (after a 1-second warm-up).", valueName: "seconds"))
    var duration: Double = 10

    @Option(help: ArgumentHelp("Concurrent signers (and pool sessions).", valueName: "n"))
    var workers: Int = 1

    @Option(name: .customLong("message-bytes"), help: ArgumentHelp("Bytes signed each time (a JWT's signing input is about 300).", valueName: "n"))
    var messageBytes: Int = 300

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    func validate() throws {
        guard duration.isFinite, (0.1...3600).contains(duration) else { throw ValidationError("--duration must be 0.1 to 3600 seconds") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1 to 256") }
        guard (1...65_536).contains(messageBytes) else { throw ValidationError("--message-bytes must be 1 to 65536") }
    }

    func run() async throws {
        let profile = try token.loadProfile()
        let target = try token.target(key: key.key ?? profile?.key, profile: profile)
        let result = try await SigningBenchmark.run(token: target, workers: workers, duration: .milliseconds(Int64(duration * 1000)),
                                                    messageBytes: messageBytes, observer: Console())
        let console = Console()
        if json {
            console.output(try JSONOutput.encode(result))
        } else {
            console.output("""
                \(result.signatures) signatures in \(String(format: "%.2f", result.durationSeconds)) s with \(result.workers) worker(s) (RSA-\(result.keyBits), pool of \(result.poolSize))
                \(String(format: "%.1f", result.signaturesPerSecond)) signatures/s; latency p50 \(String(format: "%.2f", result.p50Ms)) ms, p99 \(String(format: "%.2f", result.p99Ms)) ms

                """)
        }
    }
}

struct BenchProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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

    @OptionGroup var token: TokenOptions
    @OptionGroup var key: KeyOptions
    @OptionGroup var api: APIOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("The GET request to repeat.", valueName: "path"))
    var path: String = "/v1/workspace"

    @Option(help: ArgumentHelp("Seconds to measure each way.", valueName: "seconds"))
    var duration: Double = 5

    @Option(help: ArgumentHelp("Concurrent clients (and pool sessions).", valueName: "n"))
    var workers: Int = 1

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    func validate() throws {
        guard duration.isFinite, (0.5...600).contains(duration) else { throw ValidationError("--duration must be 0.5 to 600 seconds") }
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1 to 64") }
    }

    func run() async throws {
        let profile = try token.loadProfile()
        let target = try api.target(profile: profile, auditDirectory: nil)
        let result = try await ProxyBenchmark.run(upstream: target.baseURL, apiKey: target.apiKey, path: path,
                                                  token: try token.target(key: key.key ?? profile?.key, profile: profile),
                                                  auditDirectory: audit.directory(profile: profile), workers: workers,
                                                  duration: .milliseconds(Int64(duration * 1000)), observer: Console())
        let console = Console()
        if json {
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
