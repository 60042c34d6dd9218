import ArgumentParser
import Dispatch
import FireblocksAPI
import FireblocksHSM
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import ProxySettings
import Synchronization

// `approvals list|show|approve|reject|watch` (Fireblocks' Approvals API, early availability):
// pending requests, approved by a signature made on the token. Network commands.

package struct ApprovalsCommand: ParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "approvals",
        abstract: "List, show, approve (signed on the token) and reject pending approval requests (early availability).",
        subcommands: [ApprovalsListCommand.self, ApprovalsShowCommand.self, ApprovalsApproveCommand.self, ApprovalsRejectCommand.self,
                      ApprovalsWatchCommand.self]
    )
}

struct ApprovalsListCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the approval requests the API user may act on (GET /v1/approvals, every page).",
        discussion: """
            Examples:
              fireblocks-hsm approvals list --profile ci-bot
              fireblocks-hsm approvals list --profile ci-bot --include-user-approved --json
            """
    )

    @OptionGroup var session: ApprovalSessionOptions

    @Flag(name: .customLong("include-user-approved"), help: "Also list requests this user approved that are still pending overall.")
    var includeUserApproved = false

    @OptionGroup var output: OutputOptions

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let items = try await ApprovalOperations.list(
            token: targets.token, api: targets.api,
            includeUserApproved: includeUserApproved, observer: Console())
        try output.emit(items) { items in
            if items.isEmpty { return "No approval requests.\n" }
            return TextReports.table([["REQUEST ID", "TYPE", "EXPIRES", "YOUR STATUS", "QUORUM"]] + items.map { item in
                let payload = item.payload
                return [payload?.requestId ?? "(unreadable payload)", payload?.requestType ?? "-",
                        payload?.expiresAt.map { ApprovalText.time(seconds: String($0)) } ?? "-", item.userStatus,
                        ApprovalText.quorum(item.quorumStatus)].map { TerminalText.sanitized($0, limit: 80) }
            })
        }
    }
}

struct ApprovalsShowCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show one approval request: its fields, its request data readable, and the SHA-256 of the exact payload.",
        discussion: """
            --json prints the item as the API gave it (requestPayload unchanged).

            Examples:
              fireblocks-hsm approvals show 5e0c…-… --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try ApprovalText.validateID(id) }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let item = try await ApprovalOperations.show(
            token: targets.token, api: targets.api,
            requestID: id, observer: Console())
        try output.emit(item) { item in ApprovalText.describe(item) }
    }
}

struct ApprovalsApproveCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve a request: its exact requestPayload is signed on the token with the approval key.",
        usage: "fireblocks-hsm approvals approve [<options>] <request-id> --key <label>",
        discussion: """
            The request is read first: an expired one, or one whose payload names another
            request, is refused before the token signs. The payload's bytes are signed as
            received (never re-serialized) and the signature is sent base64url with the
            key's registered id. The audit record holds the request id, its type and the
            payload's SHA-256.

            Examples:
              fireblocks-hsm approvals approve 5e0c…-… --key approver-1 --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try ApprovalText.validateID(id)
        guard approvalKey.key != nil else { throw ValidationError("give the approval key that signs: --key LABEL") }
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let report = try await ApprovalOperations.approve(
            token: targets.token, api: targets.api,
            requestID: id, label: approvalKey.key ?? "", observer: Console())
        try output.emit(report) { report in
            TerminalText.sanitized("Approved \(report.requestID) (\(report.requestType)) with approval key '\(report.keyLabel ?? "")' [X-Request-ID: \(report.xRequestID ?? "none")].") + "\n"
                + "Payload SHA-256: \(report.payloadSHA256)\n"
        }
    }
}

struct ApprovalsRejectCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "reject",
        abstract: "Reject a request (the reason is kept in the audit log; the API takes none).",
        usage: "fireblocks-hsm approvals reject [<options>] <request-id> --reason <text>",
        discussion: """
            Examples:
              fireblocks-hsm approvals reject 5e0c…-… --reason "not in the change plan" \\
                  --profile ci-bot
            """
    )

    @Argument(help: ArgumentHelp("The approval request's id.", valueName: "request-id"))
    var id: String

    @Option(help: ArgumentHelp("Why (1 to 1024 characters; recorded in the audit log).", valueName: "text"))
    var reason: String

    @OptionGroup var session: ApprovalSessionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try ApprovalText.validateID(id)
        guard (1...1024).contains(reason.count), !reason.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw ValidationError("--reason is 1 to 1024 characters without control characters (it has \(reason.count))")
        }
    }

    func run(network: Network) async throws {
        let targets = try session.targets(network)
        let report = try await ApprovalOperations.reject(
            token: targets.token, api: targets.api,
            requestID: id, reason: reason, observer: Console())
        try output.emit(report) { report in
            TerminalText.sanitized("Rejected \(report.requestID) (\(report.requestType)) [X-Request-ID: \(report.xRequestID ?? "none")].") + "\n"
        }
    }
}

struct ApprovalsWatchCommand: NetworkCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "The automated approver: decide each pending request by a written policy (approve, reject, or leave it for people).",
        usage: "fireblocks-hsm approvals watch [<options>] --policy <path> --key <label>\n[--once] [--interval <duration>] [--listen <address>]",
        discussion: """
            Polls GET /v1/approvals (every --interval, ±20% jitter, slower while the API
            answers 429 or 5xx) until SIGTERM or SIGINT; --once makes one pass. Each request
            not decided before is judged by the approval policy (docs/approvals.md: rules on
            requestType and fields of requestData, exact decimal amounts; the first rule
            that matches decides, else 'default'); an expired one is left. The decision is
            written to the state directory before anything is signed or sent, so a request
            is never decided or signed twice, across restarts too. Approvals are signed on
            the token with --key; every decision, skips included, is an audit record naming
            the rule. The policy file must pass the trust rule for configuration.

            With --listen (a loopback HOST:PORT or unix:PATH, as for serve) it answers
            GET /healthz (200 while the last pass succeeded and is recent, else 503) and
            GET /metrics (Prometheus: passes, decisions by outcome, errors) for systemd and
            monitoring.

            Examples:
              fireblocks-hsm approvals watch --policy approvals.yaml --key approver-1 \\
                  --profile ci-bot --interval 30s --listen 127.0.0.1:9464
              fireblocks-hsm approvals watch --policy approvals.yaml --key approver-1 \\
                  --profile ci-bot --once --json
            """
    )

    @Option(help: ArgumentHelp("The approval policy (YAML).", valueName: "path"))
    var policy: String

    @OptionGroup var approvalKey: ApprovalKeyLabelOption
    @OptionGroup var session: ApprovalSessionOptions

    @Flag(help: "One pass, then exit.")
    var once = false

    @Option(help: ArgumentHelp("Time between passes (±20% jitter).", valueName: "duration"))
    var interval = "30s"

    @Option(help: ArgumentHelp("Serve GET /healthz and GET /metrics on a loopback address or a unix socket (not with --once).",
                               valueName: "127.0.0.1:PORT|unix:PATH"))
    var listen: String?

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard approvalKey.key != nil else { throw ValidationError("give the approval key that signs: --key LABEL") }
        if let listen {
            guard !once else { throw ValidationError("--listen serves a running watch; --once makes one pass") }
            do { _ = try ListenAddress(parsing: listen) } catch { throw ValidationError("--listen \(error.reason)") }
        }
        let seconds = try DurationText.seconds(interval, flag: "--interval")
        guard seconds >= 1 else { throw ValidationError("--interval must be at least 1s") }
    }

    func run(network: Network) async throws {
        let (judge, sha256) = try network.policies.approvalJudge(path: policy)
        let targets = try session.targets(network)
        let console = Console()
        // SIGINT and SIGTERM end the loop after the pass under way (systemd's stop).
        let stopped = StopFlag()
        let signals = once ? [] : [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stopped.set() }
            source.resume()
            return source
        }
        console.note(TerminalText.sanitized("approvals watch: policy \(policy) (sha256 \(sha256))\(once ? ", one pass" : ", every \(interval)")"))
        let json = output.json
        let seconds = try DurationText.seconds(interval, flag: "--interval")
        var endpoint: (any WatchStatusEndpoint)?
        if let listen {
            let bound = try await network.proxies.watchStatus(listen: listen, interval: seconds)
            console.note(TerminalText.sanitized("approvals watch: /healthz and /metrics on \(bound.listening)"))
            endpoint = bound
        }
        let total: WatchPass
        do {
            total = try await ApprovalOperations.watch(
                token: targets.token, api: targets.api, label: approvalKey.key ?? "", interval: seconds, once: once, judge: judge,
                shouldStop: { stopped.isSet }, observer: console, events: endpoint.map { $0 as any WatchEvents }) { pass in
                    guard !json else { return }
                    for decision in pass.decided {
                        console.output(TerminalText.sanitized("\(decision.requestId) \(decision.requestType): \(decision.decision) by rule '\(decision.rule)' (\(decision.state))") + "\n")
                    }
                }
        } catch {
            await endpoint?.shutdown()
            throw error
        }
        await endpoint?.shutdown()
        if json { console.output(try JSONOutput.encode(total)) }
        withExtendedLifetime(signals) {}
    }
}

/// A flag set once, from a signal handler's queue.
final class StopFlag: Sendable {
    private let flag = Mutex(false)
    var isSet: Bool { flag.withLock { $0 } }
    func set() { flag.withLock { $0 = true } }
}

/// Text for approval reports.
enum ApprovalText {
    static func validateID(_ id: String) throws {
        do { _ = try FireblocksClient.checkedApprovalID(id, what: "a request id") } catch { throw ValidationError(error.reason) }
    }

    /// Epoch seconds (as the API gives them, a string) as an ISO 8601 time; "never" for 0.
    static func time(seconds text: String) -> String {
        guard let seconds = Int64(text) else { return text }
        if seconds == 0 { return "never" }
        guard seconds > 0, seconds < 253_402_300_800 else { return text }
        return Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
    }

    static func quorum(_ status: QuorumStatus?) -> String {
        guard let status else { return "-" }
        guard let quorum = status.quorum, let threshold = quorum.threshold, let count = quorum.currentApprovalCount else { return status.requestStatus }
        return "\(status.requestStatus) \(count)/\(threshold)"
    }

    static func describe(_ item: ApprovalRequestItem) -> String {
        let digest = ApprovalOperations.payloadSHA256(item)
        guard let payload = item.payload else {
            // On one line, newlines escaped: a payload the server chose must not print a line
            // that reads as this report's own (a "Payload SHA-256" of its choosing).
            return "The requestPayload is not the documented JSON; as received (one line, escaped):\n"
                + TerminalText.sanitized(item.requestPayload, limit: 64 * 1024) + "\n"
                + "Payload SHA-256: \(digest)\n"
        }
        var rows = [["Request id", payload.requestId], ["Type", payload.requestType]]
        if let timestamp = payload.requestTimestamp { rows.append(["Requested", time(seconds: String(timestamp / 1000))]) }
        if let expires = payload.expiresAt { rows.append(["Expires", time(seconds: String(expires))]) }
        rows += [["Your status", item.userStatus], ["Quorum", quorum(item.quorumStatus)], ["Payload SHA-256", digest]]
        var text = TextReports.table(rows.map { [$0[0], TerminalText.sanitized($0[1])] })
        if let data = payload.requestData {
            text += "Request data:\n" + TerminalText.sanitized(render(data, indent: "  "), limit: 64 * 1024, keepNewlines: true) + "\n"
        }
        return text
    }

    /// A JSON value as indented lines (keys sorted, numbers exactly as sent).
    static func render(_ value: PayloadValue, indent: String) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return String(flag)
        case .number(let text): return text
        case .string(let text): return text.debugDescription
        case .array(let items):
            if items.isEmpty { return "[]" }
            return items.map { "\n" + indent + "- " + render($0, indent: indent + "  ") }.joined()
        case .object(let fields):
            if fields.isEmpty { return "{}" }
            // A key is the server's text too: one that is not a plain name is quoted and escaped
            // like a string value (a newline in it must not start a line of its own).
            func key(_ name: String) -> String {
                name.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || $0.properties.numericType != nil || "_-.".unicodeScalars.contains($0) })
                    && !name.isEmpty ? name : name.debugDescription
            }
            return fields.keys.sorted().map { "\n" + indent + key($0) + ": " + render(fields[$0] ?? .null, indent: indent + "  ") }.joined()
        }
    }
}
