import DurableFiles
import ArgumentParser
import FireblocksAPI
import FireblocksSandbox
import Foundation

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the stand-in on loopback until interrupted.",
        discussion: """
            Verifies requests as the API is documented to (known X-API-Key, RS256
            signature with the registered key, sub, uri, bodyHash, lifetime, expiry,
            iat, nonce reuse) and answers with the documented error shapes and an
            X-Request-ID. Implements POST/GET /v1/management/api_users, POST
            …/{id}/pairing_token, GET …/{id}/whitelist_ip_addresses and GET
            /v1/workspace, and the API user lifecycle: a new user awaits approval
            (--auto-approve-after, or 'fireblocks-sandbox approve'), is then
            PENDING_ACTIVATION (--initial-status), and after a pairing token
            PENDING_DEVICE_PAIRING, then READY (--pair-after). The Approvals API:
            approval keys (--approval-key-registration), GET /v1/approvals, approve
            (signatures checked over the exact payload) and reject; its requests
            come from 'fireblocks-sandbox approvals add'. Prints its base URL on
            stdout. See docs/sandbox.md.

            Examples:
              fireblocks-hsm key export --token fb --key admin --out admin.pub
              fireblocks-sandbox serve --port 8088 \\
                  --trust admin.pub=$ADMIN_API_KEY:ADMIN --state sandbox.json
              fireblocks-sandbox serve --port 0 \\
                  --trust admin.pub=$ADMIN_API_KEY:ADMIN --fail-first 2 --delay 0.5
            """
    )

    @Option(help: "Loopback address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port (0: any free port; the chosen one is printed).")
    var port = 8088

    @Option(help: ArgumentHelp("Accept requests from this API user: PUBLIC_KEY_PEM=API_KEY:ROLE (repeatable).", valueName: "file=key:role"))
    var trust: [String] = []

    @Option(help: ArgumentHelp("Keep state (users created, idempotency records) in this JSON file.", valueName: "path"))
    var state: String?

    @Option(name: .customLong("port-file"), help: ArgumentHelp("Also write the bound port to this file (for scripts).", valueName: "path"))
    var portFile: String?

    @Option(name: .customLong("fail-first"), help: "Answer 503 to the first N authenticated requests.")
    var failFirst = 0

    @Option(name: .customLong("rate-limit-first"), help: "Answer 429 (Retry-After: 1) to the first N authenticated requests.")
    var rateLimitFirst = 0

    @Option(name: .customLong("drop-first"), help: "Close the connection without answering the first N requests.")
    var dropFirst = 0

    @Option(name: .customLong("lose-response-first"), help: "Carry out the first N authenticated requests, then close the connection without answering.")
    var loseResponseFirst = 0

    @Option(help: "Wait this many seconds before every answer.")
    var delay: Double = 0

    @Option(name: .customLong("clock-offset"), help: "Run the stand-in's clock this many seconds ahead (negative: behind; write --clock-offset=-120).")
    var clockOffset: Double = 0

    @Option(name: .customLong("auto-approve-after"), help: ArgumentHelp("The admin quorum approves a new API user after this long (30s, 5m; default 0); 'never': only 'fireblocks-sandbox approve'. Until approved a user is not listed.", valueName: "duration|never"))
    var autoApproveAfter = "0"

    @Option(name: .customLong("initial-status"), help: ArgumentHelp("The status an approved user takes (default PENDING_ACTIVATION).", valueName: "status"))
    var initialStatus = "PENDING_ACTIVATION"

    @Option(name: .customLong("pair-after"), help: ArgumentHelp("After a pairing token, the device pairs this long later (PENDING_DEVICE_PAIRING → READY; co-signer users through PENDING_DEVICE_SETUP, twice as long).", valueName: "duration"))
    var pairAfter = "1s"

    @Option(name: .customLong("transaction-step"), help: ArgumentHelp("A transaction moves to its next status this long after the last (SUBMITTED → … → COMPLETED; default 1s).", valueName: "duration"))
    var transactionStep = "1s"

    @Option(help: ArgumentHelp("Whitelisted IPs of a user: NAME=IP,IP (repeatable; none: any IP).", valueName: "name=ips"))
    var whitelist: [String] = []

    @Option(name: .customLong("approval-key-registration"), help: ArgumentHelp("'immediate': a registered approval key is active at once; 'pending': it waits for an approval request ('fireblocks-sandbox approvals approve').", valueName: "immediate|pending"))
    var approvalKeyRegistration = "immediate"

    func validate() throws {
        guard ["immediate", "pending"].contains(approvalKeyRegistration) else { throw ValidationError("'--approval-key-registration' is 'immediate' or 'pending'") }
        guard !trust.isEmpty else { throw ValidationError("give at least one '--trust PUBLIC_KEY_PEM=API_KEY:ROLE'") }
        guard (0...65535).contains(port) else { throw ValidationError("'--port' must be 0 to 65535 (0: any free port)") }
    }

    func run() async throws {
        let base = SandboxConfiguration(
            trusted: try trust.map(TrustedAPIUser.init(trustArgument:)),
            stateFile: state.map { URL(fileURLWithPath: $0) }, failFirst: failFirst, rateLimitFirst: rateLimitFirst,
            dropFirst: dropFirst, loseResponseFirst: loseResponseFirst, delay: delay, clockOffset: clockOffset)
        var lifecycle = base
        lifecycle.autoApproveAfter = autoApproveAfter == "never" ? nil : try DurationText.seconds(autoApproveAfter, flag: "--auto-approve-after")
        lifecycle.initialStatus = initialStatus.uppercased()
        lifecycle.pairAfter = try DurationText.seconds(pairAfter, flag: "--pair-after")
        lifecycle.transactionStep = try DurationText.seconds(transactionStep, flag: "--transaction-step")
        lifecycle.approvalKeysActiveAtOnce = approvalKeyRegistration == "immediate"
        for entry in whitelist {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--whitelist takes NAME=IP,IP") }
            let addresses = parts[1].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard addresses.allSatisfy({ !$0.isEmpty && $0.count <= 64 }) else { throw ValidationError("--whitelist \(parts[0]): empty address") }
            lifecycle.whitelist[parts[0], default: []] += addresses
        }
        let configuration = lifecycle
        try configuration.validate()
        let service = try SandboxService(configuration: configuration)
        let server = try await SandboxServer.start(service: service, host: host, port: port, handlingSignals: true,
                                                   log: { Diagnostics.line($0) })
        if let portFile {
            try AtomicFile.write(Array("\(server.port)\n".utf8), to: portFile, overwrite: true, mode: 0o644)
        }
        FileHandle.standardOutput.write(Data((server.baseURL + "\n").utf8))
        Diagnostics.line("fireblocks-sandbox: listening on \(server.baseURL) (Ctrl-C to stop)")
        // SIGINT/SIGTERM: stop accepting, finish the requests in flight, then return.
        try await server.waitUntilClosed()
        Diagnostics.line("fireblocks-sandbox: stopped")
    }
}
