import ArgumentParser
import FireblocksAPI
import FireblocksHSM
import FireblocksHSMCommandLine
import Foundation
import Logging
import PolicyLimits
import SigningProxy
import TransactionPolicy

/// What `policy check` and `policy test` do; `fireblocks-hsm` parses them, this executable
/// (which links the YAML parser) runs them.
struct NetPolicyRunner: PolicyRunner {
    func check(_ command: PolicyCheckCommand) async throws {
        let file = try Self.read(command.file, trusted: false)
        let policy = file.policy
        let clients = policy.clients.keys.sorted()
        let warnings = policy.warnings
        if command.json {
            struct Warning: Encodable { let line: Int?; let message: String }
            struct Report: Encodable {
                let valid: Bool
                let path: String
                let sha256: String
                let clients: [String]
                let hasDefault: Bool
                let transactionRules: Int
                let warnings: [Warning]
            }
            Console().output(try JSONOutput.encode(Report(
                valid: true, path: file.path, sha256: file.sha256, clients: clients, hasDefault: policy.defaultClient != nil,
                transactionRules: policy.transactionRuleCount, warnings: warnings.map { Warning(line: $0.line, message: $0.message) })))
        } else {
            let console = Console()
            for warning in warnings { console.diagnostic(TerminalText.sanitized("warning: \(file.path): \(warning)")) }
            let named = clients.isEmpty ? "no named client" : "\(clients.count) client(s) (\(clients.joined(separator: ", ")))"
            let withDefault = policy.defaultClient == nil ? "" : " and a default"
            console.output(TerminalText.sanitized("\(file.path): valid: \(named)\(withDefault), \(policy.transactionRuleCount) transaction rule(s); sha256 \(file.sha256)") + "\n")
        }
    }

    func test(_ command: PolicyTestCommand) async throws {
        let file = try Self.read(command.file, trusted: false)
        let body: [UInt8]
        switch command.request {
        case nil:
            body = []
        case "-"?:
            body = Array(FileHandle.standardInput.readDataToEndOfFile().prefix(16 << 20))
        case let path?:
            do {
                body = Array(try Data(contentsOf: URL(fileURLWithPath: path)).prefix(16 << 20))
            } catch {
                throw CommandLineError("--request: cannot read \(path): \(error.localizedDescription)", exitClass: .io)
            }
        }
        let seconds: Int64
        if let at = command.at {
            guard let date = try? Date.ISO8601FormatStyle().parse(at) else {
                throw CommandLineError("--at is a UTC time 'YYYY-MM-DDTHH:MM:SSZ', not '\(at)'")
            }
            seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        } else {
            seconds = Int64(Date().timeIntervalSince1970.rounded(.down))
        }
        guard let request = PolicyRequest(method: command.method, target: command.path, client: command.client, body: body,
                                          secondsSince1970: seconds) else {
            throw CommandLineError("--path '\(command.path)' has an empty, '.' or '..' segment or percent-encoding: the proxy refuses it before any policy")
        }
        let verdict = file.policy.evaluate(request)
        if command.json {
            struct Reservation: Encodable { let assetId: String; let amount: String; let periodSeconds: Int64; let maxTotal: String }
            struct Report: Encodable {
                let allowed: Bool
                let client: String
                let rule: String
                let check: String
                let reason: String
                let facts: TransactionFacts?
                let window: Reservation?
                let policySHA256: String
            }
            Console().output(try JSONOutput.encode(Report(
                allowed: verdict.allowed, client: verdict.client, rule: verdict.rule, check: verdict.check, reason: verdict.reason,
                facts: verdict.facts,
                window: verdict.reservation.map {
                    Reservation(assetId: $0.assetId, amount: $0.amount.description, periodSeconds: $0.window.seconds,
                                maxTotal: $0.window.maximumTotal.description)
                },
                policySHA256: file.sha256)))
        } else {
            var line = verdict.allowed
                ? "allowed by rule \(verdict.rule) (client \(verdict.client)): \(verdict.reason)"
                : "denied by rule \(verdict.rule) (\(verdict.check), client \(verdict.client)): \(verdict.reason)"
            if let reservation = verdict.reservation {
                line += "; the proxy reserves \(reservation.amount) \(reservation.assetId) against \(reservation.window.maximumTotal) "
                    + "per \(reservation.window.seconds) s before signing"
            }
            Console().output(TerminalText.sanitized(line) + "\n")
        }
        if !verdict.allowed { throw ExitCode(policyDeniedExitCode) }
    }

    func bench(_ command: BenchPolicyCommand) async throws {
        // 20 rules, the one that decides last, so that every request walks them all.
        var rules = ""
        for index in 0..<19 {
            rules += """
                  - name: rule-\(index)
                    assets: [ASSET_\(index)]
                    maxAmount: "1000"
                    window: { period: 24h, maxTotal: "1000000" }
                    sourceVaultAccounts: ["\(index)"]
                    destinationTypes: [EXTERNAL_WALLET, VAULT_ACCOUNT]
                    externalTxId: required

            """
        }
        let text = """
            version: 1
            clients:
              payouts:
                routes: [GET /v1/vault/accounts_paged, POST /v1/transactions, GET /v1/transactions/*]
                transactions:
            \(rules)      - name: usdc-payouts
                    assets: [USDC]
                    maxAmount: "10000"
                    window: { period: 24h, maxTotal: "1000000000" }
                    sourceVaultAccounts: ["3"]
                    destinationTypes: [EXTERNAL_WALLET, VAULT_ACCOUNT]
                    destinationIds: ["wallet-1", "wallet-2", "wallet-3"]
                    externalTxId: required
                    note: { required: true, pattern: "payout-[0-9]+" }
                    hoursUTC: [{ from: "00:00", to: "24:00" }]

            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fireblocks-hsm-bench-policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("policy.yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let file = try Self.read(path)
        let gate = PolicyGate(file: file, store: try await SQLiteLimitStore.open(path: directory.appendingPathComponent("limits.sqlite").path))
        // The request's own record, as the proxy makes it while the reservation commits: an
        // append and fdatasync of a file beside the store (the audit log's cost, on that disk).
        let record = open(directory.appendingPathComponent("records.jsonl").path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard record >= 0 else { throw CommandLineError("bench policy: cannot create its record file", exitClass: .io) }
        defer { close(record) }
        let line = Array(String(repeating: "r", count: 400).utf8) + [0x0A]
        let clock = ContinuousClock()
        let signature = Duration.nanoseconds(Int64(command.signatureMs * 1_000_000))
        var added: [Duration] = [], decisions: [Duration] = [], durable: [Duration] = [], evaluations: [Duration] = []
        added.reserveCapacity(command.requests); decisions.reserveCapacity(command.requests); durable.reserveCapacity(command.requests)
        var denied = 0
        for index in 0..<command.requests {
            let body = Array(#"{"assetId":"USDC","amount":"12.34","source":{"type":"VAULT_ACCOUNT","id":"3"},"destination":{"type":"EXTERNAL_WALLET","id":"wallet-2"},"externalTxId":"payout-\#(index)","note":"payout-\#(index)"}"#.utf8)
            let started = clock.now
            let request = PolicyRequest(method: "POST", segments: ["v1", "transactions"], client: "payouts", body: body,
                                        secondsSince1970: Int64(Date().timeIntervalSince1970))
            let (judgement, _) = await gate.judge(request)
            let decided = clock.now
            guard case .allowed(_, _, let commit) = judgement else {
                denied += 1
                continue
            }
            let recorded = Task.detached { () -> ContinuousClock.Instant? in
                let written = line.withUnsafeBytes { write(record, $0.baseAddress, $0.count) }
                guard written == line.count, fdatasync(record) == 0 else { return nil }
                return ContinuousClock.now
            }
            do {
                try await commit.wait()
            } catch {
                throw CommandLineError("bench policy: a reservation could not be committed: \(error.reason)", exitClass: .io)
            }
            let committed = clock.now
            guard let recordedAt = await recorded.value else { throw CommandLineError("bench policy: cannot write its record file", exitClass: .io) }
            // What the request waits for because of the policy: the decision, and the part of the
            // commit that outlasts the record and the signature it makes anyway.
            let ownWork = max(recordedAt, decided + signature)
            added.append(started.duration(to: decided) + max(.zero, ownWork.duration(to: committed)))
            decisions.append(started.duration(to: decided))
            durable.append(started.duration(to: committed))
            // The rules alone, for the record of where the decision's time goes.
            let evaluating = clock.now
            _ = file.policy.evaluate(request)
            evaluations.append(evaluating.duration(to: clock.now))
        }
        await gate.close()
        guard denied == 0 else { throw CommandLineError("bench policy: \(denied) of the benchmark's requests were denied (a defect of the benchmark)") }
        func percentile(_ values: [Duration], _ fraction: Double) -> Double {
            let sorted = values.sorted()
            let value = sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
            return Double(value.components.seconds) * 1e6 + Double(value.components.attoseconds) / 1e12
        }
        let (p50, p90, p99) = (percentile(added, 0.5), percentile(added, 0.9), percentile(added, 0.99))
        let (decisionP50, durableP50, durableP99) = (percentile(decisions, 0.5), percentile(durable, 0.5), percentile(durable, 0.99))
        let evaluationP50 = percentile(evaluations, 0.5)
        // The last tenth decides with nine tenths of the requests already in the window: about
        // the same as the whole when a reservation's cost does not grow with its window.
        let lastTenthP50 = percentile(Array(decisions.suffix(max(1, decisions.count / 10))), 0.5)
        if command.json {
            struct Report: Encodable {
                let requests: Int; let rules: Int; let store: String; let signatureMs: Double
                let p50Microseconds: Double; let p90Microseconds: Double; let p99Microseconds: Double
                let decisionP50Microseconds: Double; let durableP50Microseconds: Double; let durableP99Microseconds: Double
                let evaluationP50Microseconds: Double; let decisionLastTenthP50Microseconds: Double
            }
            Console().output(try JSONOutput.encode(Report(requests: command.requests, rules: file.policy.transactionRuleCount, store: "sqlite",
                                                          signatureMs: command.signatureMs, p50Microseconds: p50, p90Microseconds: p90,
                                                          p99Microseconds: p99, decisionP50Microseconds: decisionP50,
                                                          durableP50Microseconds: durableP50, durableP99Microseconds: durableP99,
                                                          evaluationP50Microseconds: evaluationP50,
                                                          decisionLastTenthP50Microseconds: lastTenthP50)))
        } else {
            Console().output("policy: \(command.requests) requests, \(file.policy.transactionRuleCount) rules, SQLite store, signature \(command.signatureMs) ms: "
                             + "added p50 \(Int(p50)) µs, p90 \(Int(p90)) µs, p99 \(Int(p99)) µs per request; "
                             + "decided in \(Int(decisionP50)) µs (the rules alone: \(Int(evaluationP50)) µs; the last tenth: \(Int(lastTenthP50)) µs), "
                             + "durable after \(Int(durableP50)) µs (p50)\n")
        }
    }

    /// `serve --policy`: the policy and its limit store, opened before the proxy starts; errors
    /// name the flag (and the policy's line).
    static func gate(policy path: String, store spec: String, logger: Logger) async throws -> PolicyGate {
        let file: PolicyFile
        do {
            file = try read(path)
        } catch let error as CommandLineError {
            throw CommandLineError("--policy \(error.message)")
        }
        let store: any LimitStore
        do {
            if spec.hasPrefix("sqlite:") {
                // The store makes its file (0600) and refuses it, or its directory, when others
                // could have written them.
                let path = String(spec.dropFirst("sqlite:".count))
                try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                         attributes: [.posixPermissions: 0o700])
                store = try await SQLiteLimitStore.open(path: path)
            } else {
                let location = try PostgresLocation(parsing: spec)
                store = try await PostgresLimitStore.open(location, password: ProcessInfo.processInfo.environment["PGPASSWORD"], logger: logger)
            }
        } catch {
            throw CommandLineError("--policy-store \(TerminalText.sanitized(error.reason))", exitClass: error.code == .badLocation ? .usage : .io)
        }
        logger.notice("policy in force", metadata: ["policy.file": "\(file.path)", "policy.sha256": "\(file.sha256)"])
        return PolicyGate(file: file, store: store)
    }

    /// SIGHUP reloads the policy: validated, or the old one kept (logged, recorded, counted).
    static func reloadOnHangUp(_ gate: PolicyGate, logger: Logger) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler {
            Task {
                switch await gate.reload() {
                case .success(let file):
                    logger.notice("policy reloaded", metadata: ["policy.file": "\(file.path)", "policy.sha256": "\(file.sha256)"])
                case .failure(let error):
                    logger.error("policy reload refused: the policy in force is kept", metadata: [
                        "policy.file": "\(gate.file.path)", "policy.sha256": "\(gate.file.sha256)", "error": "\(error)",
                    ])
                }
            }
        }
        source.resume()
        return source
    }

    /// The policy, or the command line's error naming the file and the line (exit 2; 3 when
    /// the file cannot be read).
    func approvalJudge(path: String) throws -> (judge: @Sendable (ApprovalPayload) -> ApprovalJudgement, sha256: String) {
        let loaded: (policy: ApprovalPolicy, sha256: String)
        do {
            loaded = try ApprovalPolicy.load(path: path)
        } catch {
            let place = [error.line.map(String.init), error.column.map(String.init)].compactMap { $0 }.joined(separator: ":")
            throw CommandLineError(TerminalText.sanitized("\(path)\(place.isEmpty ? "" : ":" + place): \(error.reason)"),
                                   exitClass: error.code == .unreadable || error.code == .untrusted ? .io : .usage)
        }
        let policy = loaded.policy
        return ({ payload in
            let verdict = policy.evaluate(requestType: payload.requestType, requestData: payload.requestData.map(Self.value))
            return ApprovalJudgement(decision: verdict.decision.rawValue, rule: verdict.rule, reason: verdict.reason)
        }, loaded.sha256)
    }

    /// A payload's value as the approval policy reads it (numbers keep their text).
    static func value(_ payload: PayloadValue) -> ApprovalPolicy.Value {
        switch payload {
        case .null: return .null
        case .bool(let flag): return .bool(flag)
        // Never compared: JSONDecoder may have rounded it (docs/approvals.md).
        case .number: return .null
        case .string(let text): return .string(text)
        case .array(let items): return .array(items.map(value))
        case .object(let fields): return .object(fields.mapValues(value))
        }
    }

    static func read(_ path: String, trusted: Bool = true) throws -> PolicyFile {
        do {
            return try PolicyFile(path: path, trusted: trusted)
        } catch {
            let place = [error.line.map(String.init), error.column.map(String.init)].compactMap { $0 }.joined(separator: ":")
            let message = "\(path)\(place.isEmpty ? "" : ":" + place): \(error.reason)"
            throw CommandLineError(TerminalText.sanitized(message), exitClass: error.code == .unreadable || error.code == .untrusted ? .io : .usage)
        }
    }
}
