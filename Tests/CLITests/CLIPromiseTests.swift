import Foundation
import SoftHSMTestSupport
import Synchronization
import Testing

/// The product's promises under races, re-runs, kills and typos: one key and one API user per
/// intent, nothing half-made that cannot be resumed or repaired.
@Suite("Command line: one key and one user per intent")
struct CLIPromiseTests {
    let adminKey = UUID().uuidString.lowercased()

    private func setUp() throws -> (CLIHarness, SandboxProcess, [String]) {
        try SandboxProcess.withAdmin(apiKey: adminKey)
    }

    private func onboard(_ cli: CLIHarness, key: String = "ci-bot", name: String = "ci-bot", role: String = "SIGNER",
                         extra: [String] = [], environment: [String: String] = [:]) throws -> ProcessResult {
        try cli.runOnToken(["onboard", "--key", key, "--bits", "2048", "--name", name, "--role", role,
                            "--o", "Acme Corp", "--cn", name] + extra, environment: environment)
    }

    /// Runs the commands at the same moment, each in its own process.
    private func together(_ runs: [@Sendable () throws -> ProcessResult]) -> [ProcessResult?] {
        let results = Results(count: runs.count)
        DispatchQueue.concurrentPerform(iterations: runs.count) { index in
            results.set(index, try? runs[index]())
        }
        return results.values
    }

    private func privateKeyLabels(_ cli: CLIHarness) throws -> [String] {
        let keys = try #require(try cli.runOnToken(["key", "list", "--json"]).json() as? [[String: Any]])
        return keys.compactMap { $0["label"] as? String }.sorted()
    }

    private func users(_ sandbox: SandboxProcess) throws -> [[String: Any]] {
        try sandbox.state()["users"] as? [[String: Any]] ?? []
    }

    // MARK: Races

    /// Also SoftHSM's own race: each process logs in (SoftHSM then rewrites the token's file in
    /// place) while the other starts and reads the token (TokenLocator.load, Slot.tokenInfo).
    @Test func twoKeyGeneratesAtOnceMakeOneKey() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let run: @Sendable () throws -> ProcessResult = { try cli.runOnToken(["key", "generate", "--key", "twin", "--bits", "2048"]) }
        let results = together([run, run])
        let statuses = results.map { $0?.status ?? -1 }.sorted()
        // SoftHSM's race (above) can also fail the loser's C_Login itself with
        // CKR_GENERAL_ERROR (exit 4): seen once in CI. What the tool promises holds either way:
        // one process made the key, the other made nothing and said why.
        let softHSMRace = statuses == [0, 4]
            && results.contains { $0?.status == 4 && $0?.standardError.contains("C_Login: CKR_GENERAL_ERROR") == true }
        #expect(statuses == [0, 6] || softHSMRace, "\(results.map { ($0?.standardError ?? "did not run") + ($0?.standardOutput ?? "") })")
        if !softHSMRace {
            let loser = results.first { $0?.status == 6 }
            #expect(loser??.standardError.contains("already has an object labelled 'twin'") == true)
        }
        #expect(try privateKeyLabels(cli) == ["twin"])
    }

    @Test func twoOnboardsAtOnceMakeOneKeyAndOneUser() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        let run: @Sendable () throws -> ProcessResult = { try self.onboard(cli, extra: ["--submit", "--admin-key", "admin", "--json"] + api) }
        let results = together([run, run])
        for result in results {
            #expect(result?.status == 0, "\(result?.standardError ?? "did not run")")
        }
        #expect(try privateKeyLabels(cli) == ["admin", "ci-bot"])
        #expect(try users(sandbox).count == 1)
        let states = results.compactMap { try? $0?.json() as? [String: Any] }.compactMap { $0["key"] as? String }.sorted()
        #expect(states == ["generated", "resumed"])
    }

    // MARK: Changed intent

    @Test(arguments: [["--name", "other-bot"], ["--role", "VIEWER"], ["--co-signer-setup-type", "SGX_MACHINE"]])
    func aReRunWithAnotherIntentIsRefusedNamingTheField(change: [String]) throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        let first = try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api)
        #expect(first.status == 0, "\(first.standardError)")

        var arguments = ["onboard", "--key", "ci-bot", "--bits", "2048", "--o", "Acme Corp", "--cn", "ci-bot",
                         "--submit", "--admin-key", "admin"] + api
        var fields = ["--name": "ci-bot", "--role": "SIGNER"]
        fields[change[0]] = change[1]
        for (flag, value) in fields { arguments += [flag, value] }
        if change[0] == "--co-signer-setup-type" { arguments += change }
        let second = try cli.runOnToken(arguments)
        #expect(second.status == 6, "\(second.standardError)")
        #expect(second.standardError.contains(change[0]), "\(second.standardError)")
        #expect(second.standardError.contains("new --key label"))
        #expect(try users(sandbox).count == 1)
    }

    @Test func aCSRWhoseKeyBacksAUserIsRefusedUnlessAllowed() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        #expect(try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api).status == 0)
        // The same key's CSR, offered for a second user.
        let create = ["api-user", "create", "--key", "admin", "--name", "second-bot", "--role", "VIEWER", "--csr", "ci-bot.csr"] + api
        let refused = try cli.runOnToken(create)
        #expect(refused.status == 9, "\(refused.standardError)")
        #expect(refused.standardError.contains("already backs API user 'ci-bot'"))
        #expect(try users(sandbox).count == 1)

        let allowed = try cli.runOnToken(create + ["--allow-key-reuse"])
        #expect(allowed.status == 0, "\(allowed.standardError)")
        #expect(allowed.standardError.contains("warning:"))
        #expect(try users(sandbox).count == 2)
    }

    @Test func theNewUsersIDIsReportedOnlyWhenUnambiguous() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        // A namesake made by hand first (another key, same name and role).
        #expect(try cli.runOnToken(["key", "generate", "--key", "other", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["csr", "--key", "other", "--o", "Acme", "--out", "other.csr"]).status == 0)
        let namesake = try cli.runOnToken(["api-user", "create", "--key", "admin", "--name", "ci-bot", "--role", "SIGNER",
                                           "--csr", "other.csr", "--json"] + api)
        #expect(namesake.status == 0, "\(namesake.standardError)")
        let namesakeID = try #require((try namesake.json() as? [String: Any])?["userID"] as? String)

        let result = try onboard(cli, extra: ["--submit", "--admin-key", "admin", "--json"] + api)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardError.contains("already has an API user named 'ci-bot'"))
        let report = try #require(try result.json() as? [String: Any])
        let submission = try #require(report["submission"] as? [String: Any])
        let newID = try #require(submission["userID"] as? String)
        #expect(newID != namesakeID)
        #expect(submission["userIdentification"] as? String == "identified")
        let created = try users(sandbox).first { $0["id"] as? String == newID }
        #expect(created?["publicKeySHA256"] as? String == report["keyFingerprintSHA256"] as? String)
    }

    // MARK: Kill windows

    /// The windows themselves are tested in process (FireblocksHSMTests, OnboardingTests, through
    /// the fault hook's task-local); this one stays a process test because a real SIGKILL
    /// unwinds nothing: no deferred lock release, no failure record, the kernel drops the locks.
    @Test func anOnboardKilledAfterStoringTheKeyAdoptsItOnReRun() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        let killed = try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api,
                                 environment: ["FIREBLOCKS_HSM_FAULT": "onboard-after-key-stored"])
        #expect(killed.status == SIGKILL)
        #expect(try privateKeyLabels(cli) == ["admin", "ci-bot"])

        let resumed = try onboard(cli, extra: ["--submit", "--admin-key", "admin", "--json"] + api)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardError.contains("adopting key 'ci-bot'"))
        #expect((try resumed.json() as? [String: Any])?["key"] as? String == "resumed")
        #expect(try privateKeyLabels(cli) == ["admin", "ci-bot"])
        #expect(try users(sandbox).count == 1)
    }

    @Test func aKeyGenerateKilledBetweenTheCopiesIsRepairedWithKeyDelete() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let killed = try cli.runOnToken(["key", "generate", "--key", "half", "--bits", "2048"],
                                        environment: ["FIREBLOCKS_HSM_FAULT": "keygen-between-copies"])
        #expect(killed.status == SIGKILL)

        let blocked = try cli.runOnToken(["key", "generate", "--key", "half", "--bits", "2048"])
        #expect(blocked.status == 6)
        #expect(blocked.standardError.contains("without a private key"))
        #expect(blocked.standardError.contains("fireblocks-hsm key delete"))

        let deleted = try cli.runOnToken(["key", "delete", "--key", "half", "--yes", "--json"])
        #expect(deleted.status == 0, "\(deleted.standardError)")
        let plan = try #require((try deleted.json() as? [String: Any])?["plan"] as? [String: Any])
        #expect((plan["items"] as? [[String: Any]])?.map { $0["kind"] as? String } == ["public"])

        let again = try cli.runOnToken(["key", "generate", "--key", "half", "--bits", "2048"])
        #expect(again.status == 0, "\(again.standardError)")
    }

    @Test func aRecordedKeyThatVanishedIsNotSilentlyReplaced() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        #expect(try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api).status == 0)
        // Removed behind the tool's back (pkcs11-tool), so the onboarding record stays.
        let removed = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", cli.label, "--login", "--pin", "env:TEST_HSM_PIN",
            "--delete-object", "--type", "privkey", "--label", "ci-bot"], environment: cli.environment())
        #expect(removed.status == 0, "\(removed.standardError)")
        let again = try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api)
        #expect(again.status == 6, "\(again.standardError)")
        #expect(again.standardError.contains("no longer on token"))
        #expect(try privateKeyLabels(cli) == ["admin"])
        #expect(try users(sandbox).count == 1)
    }

    // MARK: key delete

    @Test func keyDeleteShowsAsksAndDeletesBothHalves() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "gone", "--bits", "2048"]).status == 0)
        // No terminal to ask on: refused without --yes, nothing deleted.
        let unconfirmed = try cli.runOnToken(["key", "delete", "--key", "gone"])
        #expect(unconfirmed.status == 2)
        #expect(unconfirmed.standardError.contains("--yes"))
        #expect(unconfirmed.standardError.contains("private key 'gone'"))
        #expect(try privateKeyLabels(cli) == ["gone"])

        let deleted = try cli.runOnToken(["key", "delete", "--key", "gone", "--yes"])
        #expect(deleted.status == 0, "\(deleted.standardError)")
        #expect(deleted.standardError.contains("public key 'gone'"))
        #expect(try privateKeyLabels(cli) == [])
        let objects = try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--list-objects"],
                                         environment: cli.environment())
        #expect(!objects.standardOutput.contains("gone"), "\(objects.standardOutput)")
    }

    @Test func keyDeleteRefusesAKeyBackingAUserUnlessForced() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        #expect(try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api).status == 0)
        let refused = try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes"])
        #expect(refused.status == 6, "\(refused.standardError)")
        #expect(refused.standardError.contains("backing API user 'ci-bot'"))
        #expect(refused.standardError.contains("--force") && refused.standardError.contains("--admin-key"))
        #expect(try privateKeyLabels(cli) == ["admin", "ci-bot"])
        // Refused before it asks: without --yes and without a terminal it is the refusal, not
        // "no terminal to confirm on".
        let unasked = try cli.runOnToken(["key", "delete", "--key", "ci-bot"])
        #expect(unasked.status == 6 && !unasked.standardError.contains("confirm"), "\(unasked.standardError)")
        // The API still lists the user, enabled: asking it does not retire the user.
        let stillActive = try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes", "--admin-key", "admin"] + api)
        #expect(stillActive.status == 6, "\(stillActive.standardError)")
        #expect(stillActive.standardError.contains("enabled"), "\(stillActive.standardError)")

        let forced = try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes", "--force"])
        #expect(forced.status == 0, "\(forced.standardError)")
        #expect(try privateKeyLabels(cli) == ["admin"])
    }

    /// Rotation's last step: the user was removed in the Console (here, in the stand-in); the
    /// deletion asks the API with the admin key, finds the recorded id gone, and deletes
    /// without --force, saying why.
    @Test func keyDeleteAsksTheAPIAndDeletesTheKeyOfARemovedUser() throws {
        let (cli, sandbox, api) = try setUp()
        defer { sandbox.stop(); cli.remove() }
        #expect(try onboard(cli, extra: ["--submit", "--admin-key", "admin"] + api).status == 0)
        let removed = try cli.runSandbox(["set-user", "ci-bot", "--remove", "--state", sandbox.stateFile])
        #expect(removed.status == 0, "\(removed.standardError)")
        let halfGiven = try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes"] + api)
        #expect(halfGiven.status == 2 && halfGiven.standardError.contains("--admin-key"), "\(halfGiven.standardError)")
        let deleted = try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes", "--admin-key", "admin", "--json"] + api)
        #expect(deleted.status == 0, "\(deleted.standardError)")
        #expect(deleted.standardError.contains("retired: absent from the API users listed"), "\(deleted.standardError)")
        #expect(try privateKeyLabels(cli) == ["admin"])
        let records = try #require(try cli.runOnToken(["audit", "show", "--event", "key.deleted", "--json"]).json() as? [[String: Any]])
        let facts = try #require(records.last?["facts"] as? [String: Any])
        #expect(facts["forced"] as? Bool == false)
        #expect((facts["retiredAPIUsers"] as? [String])?.first?.contains("'ci-bot'") == true, "\(facts)")
    }

    // MARK: Typos

    @Test(arguments: [["onboard", "--name", "x", "--role", "SIGNER", "--o", "Acme"], ["key", "generate", "--bits", "2048"]])
    func aNewKeyTakesALabelNotAURI(command: [String]) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let result = try cli.runOnToken(command + ["--key", "pkcs11:object=new-key"])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("not a pkcs11: URI"))
        #expect(try privateKeyLabels(cli) == [])
        let files = try FileManager.default.contentsOfDirectory(atPath: cli.files)
        #expect(!files.contains { $0.hasPrefix("pkcs11") }, "\(files)")
    }

    @Test func anIdempotencyKeyTheAPIWouldRefuseStopsEverythingFirst() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let tooLong = String(repeating: "k", count: 41)
        let result = try onboard(cli, extra: ["--submit", "--admin-key", "admin", "--api-key", "k",
                                              "--base-url", "http://127.0.0.1:9/v1", "--idempotency-key", tooLong])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("1 to 40"))
        #expect(!result.standardError.contains("Generating"))
        #expect(try privateKeyLabels(cli) == [])
    }

    @Test func aStateDirectoryThatCannotBeWrittenIsAnIOError() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        // A path under a regular file: no directory can be made there, whoever runs the test.
        let blocker = cli.files + "/not-a-directory"
        try Data().write(to: URL(fileURLWithPath: blocker))
        let result = try onboard(cli, extra: ["--state-dir", blocker + "/state", "--json"])
        #expect(result.status == 3, "\(result.standardError)")
        let error = try #require((try result.json() as? [String: Any])?["error"] as? [String: Any])
        #expect(error["class"] as? String == "io")
        #expect(!result.standardError.contains("idempotency"))
        #expect(try privateKeyLabels(cli) == [])
    }
}

/// Results written by concurrent runs.
private final class Results: Sendable {
    private let storage: Mutex<[ProcessResult?]>

    init(count: Int) { storage = Mutex(Array(repeating: nil, count: count)) }

    func set(_ index: Int, _ value: ProcessResult?) {
        storage.withLock { $0[index] = value }
    }

    var values: [ProcessResult?] { storage.withLock { $0 } }
}
