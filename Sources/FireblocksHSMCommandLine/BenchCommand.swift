import ArgumentParser
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import TokenKeys

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the token: signatures through the signing pool the proxy uses.",
        subcommands: [BenchSignCommand.self, BenchProxyCommand.self, BenchPolicyCommand.self, BenchAuditFillCommand.self]
    )
}

/// Grows a throwaway token's audit log, for ci/bench's measurements of a long log.
struct BenchAuditFillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-fill",
        abstract: "Append N filler records to a benchmark token's audit log (never on a token in use).",
        usage: "fireblocks-hsm bench audit-fill [--module <path|name>]\n[--token <label|uri>] [--pin-source <source>] [--profile <name>]\n[--audit-dir <path>] [--audit-min-free <size|N%>] --records <n> [--json]",
        discussion: """
            The records go through the appender the signing proxy uses and are sealed by one
            signed checkpoint; they stay in the log for ever. ci/bench uses it to measure a
            one-shot jwt against a log of a million records.

            Examples:
              fireblocks-hsm bench audit-fill --token bench --records 1000000
            """,
        shouldDisplay: false
    )

    @OptionGroup var token: TokenOptions
    @OptionGroup var audit: AuditOptions

    @Option(help: ArgumentHelp("Records to append.", valueName: "n"))
    var records: Int

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...100_000_000).contains(records) else { throw ValidationError("--records must be 1 to 100000000") }
    }

    func run() throws {
        let profile = try token.loadProfile()
        let report = try AuditBenchmark.fill(target: try token.target(profile: profile), directory: audit.directory(profile: profile),
                                             records: records, observer: Console())
        try output.emit(report) { report in
            "Appended \(report.appended) records in \(DecimalText.fixed(report.seconds, places: 1)) s; the log holds \(report.records).\n"
        }
    }
}

extension BenchAuditFillCommand: JSONReporting { var wantsJSON: Bool { output.json } }

struct BenchSignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign for a while with N workers through the signing pool; report rate and latency.",
        usage: "fireblocks-hsm bench sign [--module <path|name>] [--token <label|uri>]\n[--pin-source <source>] [--profile <name>] [--key <label|uri>]\n[--audit-dir <path>] [--duration <seconds>] [--workers <n>]\n[--message-bytes <n>] [--json]",
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
    @OptionGroup var audit: AuditOptions

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
                                                    messageBytes: messageBytes, auditDirectory: audit.directory(profile: profile),
                                                    observer: Console())
        let console = Console()
        if json {
            console.output(try JSONOutput.encode(result))
        } else {
            console.output("""
                \(result.signatures) signatures in \(DecimalText.fixed(result.durationSeconds, places: 2)) s with \(result.workers) worker(s) (RSA-\(result.keyBits), pool of \(result.poolSize))
                \(DecimalText.fixed(result.signaturesPerSecond, places: 1)) signatures/s; latency p50 \(DecimalText.fixed(result.p50Ms, places: 2)) ms, p99 \(DecimalText.fixed(result.p99Ms, places: 2)) ms

                """)
        }
    }
}
