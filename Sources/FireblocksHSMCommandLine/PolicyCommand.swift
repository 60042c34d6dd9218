import ArgumentParser
import FireblocksAPI
import FireblocksHSM

/// `policy`: check a proxy policy and try requests against it (docs/policy.md).
///
/// The policy language is YAML, read with Yams, which needs the full Foundation; the signing
/// binary links FoundationEssentials only (docs/performance.md), so these commands are parsed
/// here and run by the companion executable like the network commands (they open no
/// connection). ``PolicyRunner`` is what the companion provides.
package struct PolicyCommand: AsyncParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Check a proxy policy, and try requests against it.",
        discussion: """
            A policy says per client which routes it may call and which transactions it
            may create (assets, amounts, rolling totals, sources, destinations,
            externalTxId, note, UTC hours); `serve --policy FILE` enforces it before
            the token signs. The language: docs/policy.md; a JSON Schema for editors:
            docs/policy.schema.json.
            """,
        subcommands: [PolicyCheckCommand.self, PolicyTestCommand.self]
    )
}

/// `policy check FILE`: the schema and the lint; exit 2 naming the line of the first error.
package struct PolicyCheckCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a policy file: exit 2 naming the line of its first error.",
        discussion: """
            Prints the clients and rules it found and the file's SHA-256 (what `serve`
            records), with warnings for what is allowed but probably not meant (a client
            that may create transactions with no transaction rules).

            Example:
              fireblocks-hsm policy check payments.yaml
            """
    )

    @Argument(help: ArgumentHelp("The policy file (YAML).", valueName: "file"))
    package var file: String

    @Flag(help: "Print the result as JSON.")
    package var json = false

    package func run(network: Network) async throws {
        try await network.policies.check(self)
    }
}

/// `policy test FILE --client NAME --request req.json`: the verdict and the rule that decided.
package struct PolicyTestCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Judge a request against a policy: the verdict and the rule (exit 13 when denied).",
        usage: "fireblocks-hsm policy test <file> [--client <name>] [--request <file>]\n[--method <method>] [--path <path>] [--at <time>] [--json]",
        discussion: """
            The request is a JSON body as Fireblocks' TransactionRequest for the default
            POST /v1/transactions, judged as the proxy would before signing. Rolling window
            totals are checked against the amount alone (the proxy adds what the window
            already holds).

            Example:
              fireblocks-hsm policy test payments.yaml --client payouts --request req.json
            """
    )

    @Argument(help: ArgumentHelp("The policy file (YAML).", valueName: "file"))
    package var file: String

    @Option(help: ArgumentHelp("The client token's name the request comes with (none: the policy's default).", valueName: "name"))
    package var client: String?

    @Option(help: ArgumentHelp("A file with the request's JSON body (- for standard input).", valueName: "file"))
    package var request: String?

    @Option(help: ArgumentHelp("The request's method.", valueName: "method"))
    package var method: String = "POST"

    @Option(help: ArgumentHelp("The request's path (and query), under the API's base URL.", valueName: "path"))
    package var path: String = "/v1/transactions"

    @Option(help: ArgumentHelp("When the request arrives, as UTC 'YYYY-MM-DDTHH:MM:SSZ' (default: now), for hoursUTC.", valueName: "time"))
    package var at: String?

    @Flag(help: "Print the verdict as JSON.")
    package var json = false

    package func validate() throws {
        guard path.hasPrefix("/") else { throw ValidationError("--path is absolute, e.g. /v1/transactions") }
    }

    package func run(network: Network) async throws {
        try await network.policies.test(self)
    }
}

/// `bench policy`: what the policy adds to each request the proxy signs (docs/performance.md).
package struct BenchPolicyCommand: NetworkCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Measure the policy's added latency per request: a 20-rule policy, its SQLite limit store.",
        usage: "fireblocks-hsm bench policy [--requests <n>] [--signature-ms <ms>]\n[--json]",
        discussion: """
            Judges POST /v1/transactions requests one after another as the proxy
            does before signing (the body read against the rules, a window's amount
            decided in a new SQLite store in a temporary directory), then, as the
            proxy does, makes the request's record (an append and fdatasync of a
            file beside the store) while the reservation commits, and waits for
            both. Per request, the policy's added latency is the decision plus
            whatever of the commit outlasts the work the request does anyway: its
            record, and its signature (--signature-ms, the token's measured signing
            time; 0 counts the record alone). Prints the percentiles of the added
            latency, of the decision (also of its last tenth, made with the window
            already holding the others), and of the reservation made durable with
            nothing overlapping it.

            Example:
              fireblocks-hsm bench policy --requests 5000 --signature-ms 4.3 --json
            """
    )

    @Option(help: ArgumentHelp("Requests to judge.", valueName: "n"))
    package var requests: Int = 2000

    @Option(help: ArgumentHelp("The token's signing time (ms) that the commit overlaps; 0: the record alone.", valueName: "ms"))
    package var signatureMs: Double = 0

    @Flag(help: "Print one JSON document on stdout.")
    package var json = false

    package func validate() throws {
        guard (10...1_000_000).contains(requests) else { throw ValidationError("--requests must be 10 to 1000000") }
        guard signatureMs.isFinite, (0...10_000).contains(signatureMs) else { throw ValidationError("--signature-ms must be 0 to 10000") }
    }

    package func run(network: Network) async throws {
        try await network.policies.bench(self)
    }
}

/// What runs `policy check`, `policy test` and `bench policy` (in the companion executable,
/// which links the policy's YAML parser).
package protocol PolicyRunner: Sendable {
    func check(_ command: PolicyCheckCommand) async throws
    func test(_ command: PolicyTestCommand) async throws
    func bench(_ command: BenchPolicyCommand) async throws
    /// The judge of `approvals watch` from the approval policy at `path` (read under the trust
    /// rule for configuration), and the SHA-256 of the file.
    func approvalJudge(path: String) throws -> (judge: @Sendable (ApprovalPayload) -> ApprovalJudgement, sha256: String)
}

extension PolicyCheckCommand: JSONReporting { package var wantsJSON: Bool { json } }
extension PolicyTestCommand: JSONReporting { package var wantsJSON: Bool { json } }
extension BenchPolicyCommand: JSONReporting { package var wantsJSON: Bool { json } }

/// The exit code of a denial (`policy test`), after the verdict is printed.
package let policyDeniedExitCode = ExitStatus.policyDenied.rawValue
