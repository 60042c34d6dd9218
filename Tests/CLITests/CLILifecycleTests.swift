import Foundation
import SoftHSMTestSupport
import Testing

/// The API user's life after creation, against the stand-in: approval, pairing, READY; show,
/// wait and pairing-token as a user runs them.
@Suite("Command line: API user lifecycle")
struct CLILifecycleTests {
    private let adminKey = UUID().uuidString.lowercased()

    /// A user created through the tool (key and CSR on the token).
    private func create(_ cli: CLIHarness, _ api: [String], name: String, key: String) throws {
        let created = try cli.runOnToken(["onboard", "--key", key, "--bits", "2048", "--name", name, "--role", "SIGNER", "--o", "Acme",
                                          "--submit", "--admin-key", "admin"] + api)
        guard created.status == 0 else { throw TestSupportError(created.standardError) }
    }

    private func admin(_ arguments: [String], _ cli: CLIHarness, _ api: [String]) throws -> ProcessResult {
        try cli.runOnToken(arguments + ["--key", "admin"] + api)
    }

    @Test func showByNameByIDAndAmbiguousWithTheWhitelist() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey, sandboxArguments: ["--whitelist", "ci-bot=10.0.0.7,10.0.0.8"])
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "ci-bot", key: "k1")
        let shown = try admin(["api-user", "show", "ci-bot", "--json"], cli, api)
        #expect(shown.status == 0, "\(shown.standardError)")
        let details = try #require(try shown.json() as? [String: Any])
        #expect(details["status"] as? String == "PENDING_ACTIVATION")
        #expect(details["whitelistedIPs"] as? [String] == ["10.0.0.7", "10.0.0.8"])
        #expect(details["anyIPAllowed"] as? Bool == false)
        let id = try #require(details["id"] as? String)
        let byID = try admin(["api-user", "show", "--id", id], cli, api)
        #expect(byID.status == 0 && byID.standardOutput.contains("ci-bot"))
        let adminShown = try admin(["api-user", "show", "trusted-admin"], cli, api)
        #expect(adminShown.standardOutput.contains("any IP"), "an empty whitelist is said to allow any IP: \(adminShown.standardOutput)")

        // A second user of the same name: the name no longer says which.
        try create(cli, api, name: "ci-bot", key: "k2")
        let ambiguous = try admin(["api-user", "show", "ci-bot"], cli, api)
        #expect(ambiguous.status == 2)
        #expect(ambiguous.standardError.contains(id) && ambiguous.standardError.contains("--id"), "\(ambiguous.standardError)")
        let missing = try admin(["api-user", "show", "nobody"], cli, api)
        #expect(missing.status == 9)
        #expect(try admin(["api-user", "show", "ci-bot", "--id", id], cli, api).status == 2)
    }

    @Test func waitFollowsApprovalAndPairingToReadyPrintingEachChange() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey,
                                                               sandboxArguments: ["--auto-approve-after", "2s", "--pair-after", "1s"])
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "ci-bot", key: "k1")
        // Awaiting approval: not listed yet, which the wait sits out.
        let listed = try admin(["api-user", "list", "--json"], cli, api)
        #expect(!listed.standardOutput.contains("ci-bot"))
        let approved = try admin(["api-user", "wait", "ci-bot", "--until", "PENDING_ACTIVATION", "--interval", "0.3s", "--timeout", "20s"], cli, api)
        #expect(approved.status == 0, "\(approved.standardError)")
        #expect(approved.standardError.contains("ci-bot") && approved.standardError.contains(": PENDING_ACTIVATION"))

        let token = try admin(["api-user", "pairing-token", "ci-bot", "--out", "pairing.token"], cli, api)
        #expect(token.status == 0, "\(token.standardError)")
        let ready = try admin(["api-user", "wait", "ci-bot", "--until", "READY", "--interval", "0.3s", "--timeout", "20s", "--json"], cli, api)
        #expect(ready.status == 0, "\(ready.standardError)")
        #expect((try ready.json() as? [String: Any])?["status"] as? String == "READY")
        // Each change on its own line with its time: 2026-…Z name (id): STATUS.
        let changes = ready.standardError.split(separator: "\n").filter { $0.contains("): ") }
        #expect(changes.contains { $0.hasSuffix(": PENDING_DEVICE_PAIRING") } && changes.contains { $0.hasSuffix(": READY") }, "\(ready.standardError)")
        #expect(changes.allSatisfy { $0.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "#, options: .regularExpression) != nil })
    }

    @Test func aWaitThatRunsOutExits12AndOneForADisabledOrVanishedUserStopsAtOnce() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey)
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "ci-bot", key: "k1")
        let started = Date()
        let timedOut = try admin(["api-user", "wait", "ci-bot", "--until", "READY", "--interval", "0.3s", "--timeout", "2s", "--json"], cli, api)
        #expect(timedOut.status == 12, "\(timedOut.standardError)")
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(timedOut.standardError.contains("PENDING_ACTIVATION"))
        // Time does not move a PENDING_ACTIVATION user on: its pairing token does.
        #expect(timedOut.standardError.contains("api-user pairing-token") && !timedOut.standardError.contains("wait longer"),
                "\(timedOut.standardError)")
        #expect(((try timedOut.json() as? [String: Any])?["error"] as? [String: Any])?["class"] as? String == "wait-timeout")

        // Removed while waited for: the wait stops, it does not run out.
        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        waiter.arguments = ["api-user", "wait", "ci-bot", "--until", "READY", "--interval", "0.3s", "--timeout", "60s", "--key", "admin",
                            "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath] + api
        waiter.environment = cli.environment()
        waiter.currentDirectoryURL = URL(fileURLWithPath: cli.files)
        let errorFile = cli.files + "/waiter.err"
        _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
        waiter.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorFile))
        waiter.standardOutput = FileHandle.nullDevice
        try waiter.run()
        // The waiter has seen the user (it prints each status it sees) before it is removed.
        let seen = CLIHarness.eventually(within: 30) {
            ((try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? "").contains(": PENDING_ACTIVATION")
        }
        #expect(seen, "the wait never saw the user")
        #expect(try cli.runSandbox(["set-user", "ci-bot", "--remove", "--state", sandbox.stateFile]).status == 0)
        waiter.waitUntilExit()
        let text = (try? String(contentsOfFile: errorFile, encoding: .utf8)) ?? ""
        #expect(waiter.terminationStatus == 9, "\(text)")
        #expect(text.contains("no longer listed"))

        try create(cli, api, name: "other", key: "k2")
        #expect(try cli.runSandbox(["set-user", "other", "--disable", "--state", sandbox.stateFile]).status == 0)
        let disabled = try admin(["api-user", "wait", "other", "--until", "READY", "--interval", "0.3s"], cli, api)
        #expect(disabled.status == 9 && disabled.standardError.contains("disabled"), "\(disabled.standardError)")
    }

    @Test func rateLimitedPollsSlowTheWaitDownButNeverEndIt() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey, sandboxArguments: ["--rate-limit-first", "3"])
        defer { sandbox.stop(); cli.remove() }
        let waited = try admin(["api-user", "wait", "trusted-admin", "--until", "READY", "--interval", "0.1s", "--timeout", "60s",
                                "--attempts", "1"], cli, api)
        #expect(waited.status == 0, "\(waited.standardError)")
        #expect(waited.standardError.contains("429") && waited.standardError.contains("slowing down"), "\(waited.standardError)")
    }

    @Test func aPairingTokenIsIssuedOncePerKeyKeptSecretAndA409IsExplained() throws {
        // The user must still be pairing at the 409 below, however slow the machine: the
        // stand-in's default pairs a device one second after its token.
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey, sandboxArguments: ["--pair-after", "10m"])
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "ci-bot", key: "k1")
        let key = "pair-" + UUID().uuidString.prefix(8)
        let first = try admin(["api-user", "pairing-token", "ci-bot", "--idempotency-key", String(key), "--out", "a.token"], cli, api)
        #expect(first.status == 0, "\(first.standardError)")
        let again = try admin(["api-user", "pairing-token", "ci-bot", "--idempotency-key", String(key), "--out", "b.token"], cli, api)
        #expect(again.status == 0, "\(again.standardError)")
        let tokenA = try String(contentsOfFile: cli.files + "/a.token", encoding: .utf8)
        let tokenB = try String(contentsOfFile: cli.files + "/b.token", encoding: .utf8)
        #expect(tokenA == tokenB && tokenA.count > 20, "the same Idempotency-Key gets the same token")
        #expect((try FileManager.default.attributesOfItem(atPath: cli.files + "/a.token")[.posixPermissions] as? Int) == 0o600)
        #expect(try admin(["api-user", "pairing-token", "ci-bot", "--out", "a.token"], cli, api).status == 3, "an existing file needs --force")

        // A new request for a user that is no longer waiting for activation: 409, explained.
        let conflict = try admin(["api-user", "pairing-token", "ci-bot", "--out", "c.token"], cli, api)
        #expect(conflict.status == 9)
        #expect(conflict.standardError.contains("PENDING_DEVICE_PAIRING") && conflict.standardError.contains("not PENDING_ACTIVATION"),
                "\(conflict.standardError)")
        #expect(!FileManager.default.fileExists(atPath: cli.files + "/c.token"))
        #expect(try admin(["api-user", "pairing-token", "ci-bot", "--json"], cli, api).status == 2, "--json never carries the token")

        // Piped, the token goes to stdout; nowhere else.
        try create(cli, api, name: "piped", key: "k2")
        let piped = try admin(["api-user", "pairing-token", "piped"], cli, api)
        #expect(piped.status == 0, "\(piped.standardError)")
        let token = piped.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count > 20 && !piped.standardError.contains(token))
        // A re-run (after a crash or a lost answer) gets the same token, not a 409: the default
        // Idempotency-Key is derived from the user.
        let rerun = try admin(["api-user", "pairing-token", "piped"], cli, api)
        #expect(rerun.status == 0 && rerun.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == token, "\(rerun.standardError)")
        let audit = try FileManager.default.contentsOfDirectory(atPath: cli.directory.path + "/audit").filter { $0.hasSuffix(".jsonl") }
        let log = try String(contentsOfFile: cli.directory.path + "/audit/" + (audit.first ?? ""), encoding: .utf8)
        for secret in [token, tokenA.trimmingCharacters(in: .whitespacesAndNewlines), cli.userPIN] {
            #expect(!log.contains(secret), "a secret is in the audit log")
        }
        #expect(log.components(separatedBy: "\"api-user.pairing-token-issued\"").count - 1 == 4)
        for output in [first, again, conflict] { #expect(!output.standardOutput.contains(tokenA.prefix(16)) && !output.standardError.contains(tokenA.prefix(16))) }
    }

    @Test func onboardGoesFromKeygenToAReadyUserAndRecordsTheUserItReplaces() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey,
                                                               sandboxArguments: ["--auto-approve-after", "1s", "--pair-after", "0.5s"])
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "old-bot", key: "old")
        #expect(try admin(["api-user", "wait", "old-bot", "--until", "PENDING_ACTIVATION", "--interval", "0.2s"], cli, api).status == 0)
        let onboard = try cli.runOnToken(["onboard", "--key", "new", "--bits", "2048", "--name", "new-bot", "--role", "SIGNER", "--o", "Acme",
                                          "--submit", "--admin-key", "admin", "--replaces", "old-bot", "--pairing-token-out", "new.token",
                                          "--wait-until", "READY", "--interval", "0.3s", "--timeout", "30s", "--json"] + api)
        #expect(onboard.status == 0, "\(onboard.standardError)")
        let report = try #require(try onboard.json() as? [String: Any])
        #expect((report["apiUser"] as? [String: Any])?["status"] as? String == "READY")
        #expect(report["replaces"] as? String == "old-bot")
        #expect((report["replacesUserID"] as? String)?.isEmpty == false)
        #expect((report["nextSteps"] as? [String])?.contains { $0.contains("retire 'old-bot'") && $0.contains("Console") } == true)
        #expect((try FileManager.default.attributesOfItem(atPath: cli.files + "/new.token")[.posixPermissions] as? Int) == 0o600)
        // READY means usable: the new user signs its own requests with its key on the token.
        let newID = try #require((report["apiUser"] as? [String: Any])?["id"] as? String)
        let own = try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "new", "--api-key", newID,
                                      "--base-url", api[api.firstIndex(of: "--base-url")! + 1]])
        #expect(own.status == 0, "\(own.standardError)")

        // Recorded in the onboarding record, the audit log and the evidence bundle.
        let records = try String(contentsOfFile: cli.directory.path + "/state/onboarding.json", encoding: .utf8)
        #expect(records.contains("\"replaces\" : \"old-bot\"") || records.contains("\"replaces\":\"old-bot\""), "\(records)")
        let created = try #require(try cli.runOnToken(["audit", "show", "--event", "api-user.created", "--json"]).json() as? [[String: Any]])
        #expect(created.contains { ($0["facts"] as? [String: Any])?["replaces"] as? String == "old-bot" })
        let statement = try String(contentsOfFile: cli.files + "/new-evidence/statement.json", encoding: .utf8)
        #expect(statement.contains("old-bot"))
        #expect(try cli.run(["evidence", "verify", cli.files + "/new-evidence", "--audit-key", cli.files + "/new-evidence/audit-key.pem"],
                            module: nil).status == 0)

        // The lifecycle after creation is added as signed milestones, never as edits: the
        // pairing token and READY of this run, then the predecessor's key retired.
        let bundleFiles = try FileManager.default.contentsOfDirectory(atPath: cli.files + "/new-evidence").filter { $0 != "milestones" }.sorted()
        let bundleStatement = try Data(contentsOf: URL(fileURLWithPath: cli.files + "/new-evidence/statement.json"))
        let retire = try cli.runOnToken(["key", "delete", "--key", "old", "--yes"])  // succeeded through --replaces: no --force
        #expect(retire.status == 0, "\(retire.standardError)")
        let milestones = try FileManager.default.contentsOfDirectory(atPath: cli.files + "/new-evidence/milestones").sorted()
        for event in ["api-user-pairing-token-issued", "api-user-ready", "api-user-predecessor-retired"] {
            #expect(milestones.contains { $0.hasSuffix("-" + event) }, "\(event): \(milestones)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: cli.files + "/new-evidence").filter { $0 != "milestones" }.sorted() == bundleFiles)
        #expect(try Data(contentsOf: URL(fileURLWithPath: cli.files + "/new-evidence/statement.json")) == bundleStatement)
        let verified = try cli.run(["evidence", "verify", cli.files + "/new-evidence", "--audit-key", cli.files + "/new-evidence/audit-key.pem",
                                    "--json"], module: nil)
        #expect(verified.status == 0, "\(verified.standardError)")
        #expect((try verified.json() as? [String: Any])?["milestones"] as? Int == 3)
        // Each milestone passes the auditor's procedure on its own.
        let fingerprint = try Subprocess.run("sh", ["-c", "openssl pkey -pubin -in '\(cli.files)/new-evidence/audit-key.pem' -outform DER | sha256sum"])
            .standardOutput.prefix(64)
        for milestone in milestones {
            let guide = try CLIEvidenceTests.runGuide(cli.files + "/new-evidence/milestones/" + milestone, fingerprint: String(fingerprint))
            #expect(guide.status == 0, "\(milestone): \(guide.standardOutput) \(guide.standardError)")
        }
    }

    @Test func theStandInWaitsForApprovalUntilApproved() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: adminKey, sandboxArguments: ["--auto-approve-after", "never"])
        defer { sandbox.stop(); cli.remove() }
        try create(cli, api, name: "ci-bot", key: "k1")
        #expect(!(try admin(["api-user", "list"], cli, api).standardOutput.contains("ci-bot")))
        let approve = try cli.runSandbox(["approve", "ci-bot", "--state", sandbox.stateFile])
        #expect(approve.status == 0, "\(approve.standardError)")
        let shown = try admin(["api-user", "show", "ci-bot", "--json"], cli, api)
        #expect((try shown.json() as? [String: Any])?["status"] as? String == "PENDING_ACTIVATION", "\(shown.standardError)")
    }
}
