import ArgumentParser
import FireblocksAPI
import Foundation
import FireblocksHSMCommandLine
import SigningProxy

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
        let target = try api.target(profile: profile, auditDirectory: nil, transport: try NetworkAccess.transport())
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

extension BenchProxyCommand: JSONReporting { var wantsJSON: Bool { json } }
