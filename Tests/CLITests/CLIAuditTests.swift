import Foundation
import SoftHSMTestSupport
import Testing

/// The audit trail as an auditor and an attacker meet it: records of every key operation,
/// checkpoints signed on the token, and each kind of tampering caught.
@Suite("Command line: audit trail")
struct CLIAuditTests {
    private func auditLog(_ cli: CLIHarness) throws -> String {
        let directory = cli.directory.path + "/audit"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".jsonl") })
        return directory + "/" + name
    }

    private func onboarded() throws -> (CLIHarness, SandboxProcess, [String]) {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        let onboard = try cli.runOnToken(["onboard", "--key", "ci-bot", "--bits", "2048", "--name", "ci-bot", "--role", "SIGNER",
                                          "--o", "Acme", "--submit", "--admin-key", "admin"] + api)
        guard onboard.status == 0 else { throw TestSupportError(onboard.standardError) }
        return (cli, sandbox, api)
    }

    @Test func anOnboardingIsRecordedAndVerifiesAndNoSecretIsInTheLog() throws {
        let (cli, sandbox, _) = try onboarded()
        defer { sandbox.stop(); cli.remove() }
        let verify = try cli.runOnToken(["audit", "verify", "--json"])
        #expect(verify.status == 0, "\(verify.standardError)")
        let report = try #require(try verify.json() as? [String: Any])
        #expect(report["intact"] as? Bool == true)
        #expect((report["checkedAgainst"] as? [String])?.first?.hasPrefix("token") == true)

        let shown = try #require(try cli.runOnToken(["audit", "show", "--json"]).json() as? [[String: Any]])
        let events = shown.compactMap { $0["event"] as? String }
        for event in ["audit.key-created", "key.generated", "csr.created", "api.call", "api-user.created"] {
            #expect(events.contains(event), "\(events)")
        }
        // --since: a day (UTC); records from it on.
        let tomorrow = Date().addingTimeInterval(86_400).formatted(Date.ISO8601FormatStyle().year().month().day())
        let none = try #require(try cli.runOnToken(["audit", "show", "--since", tomorrow, "--json"]).json() as? [[String: Any]])
        #expect(none.isEmpty)
        let all = try #require(try cli.runOnToken(["audit", "show", "--since", "2000-01-01", "--json"]).json() as? [[String: Any]])
        #expect(all.count == shown.count)
        for bad in ["2026-13-01", "2026-11-25T00:00:00Z", "25/11/2026"] {
            #expect(try cli.runOnToken(["audit", "show", "--since", bad]).status == 2, "\(bad)")
        }

        let log = try String(contentsOfFile: try auditLog(cli), encoding: .utf8)
        for secret in [cli.userPIN, cli.securityOfficerPIN, "eyJ", "Bearer"] {
            #expect(!log.contains(secret), "the audit log holds \(secret)")
        }
    }

    @Test func jwtsAndAPICallsAreRecordedWithoutTheirTokens() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let jwt = try cli.runOnToken(["jwt", "--key", "admin", "--api-key", "k", "--path", "/v1/workspace"])
        #expect(jwt.status == 0, "\(jwt.standardError)")
        let token = jwt.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "admin"] + api).status == 0)
        let records = try #require(try cli.runOnToken(["audit", "show", "--json"]).json() as? [[String: Any]])
        let signed = try #require(records.first { $0["event"] as? String == "jwt.signed" })
        #expect(((signed["facts"] as? [String: Any])?["uri"] as? String) == "/v1/workspace")
        let call = try #require(records.first { $0["event"] as? String == "api.call" })
        let facts = try #require(call["facts"] as? [String: Any])
        #expect(facts["httpStatus"] as? Int == 200)
        #expect((facts["xRequestID"] as? String)?.isEmpty == false)
        let log = try String(contentsOfFile: try auditLog(cli), encoding: .utf8)
        #expect(!log.contains(token) && !log.contains(String(token.split(separator: ".").last ?? "x")))
        #expect(!log.contains("eyJ"))
    }

    @Test func aProfileCanSayWhereTheAuditLogsGo() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let configDirectory = cli.directory.path + "/config"
        try FileManager.default.createDirectory(atPath: configDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let config = configDirectory + "/config.json"
        let auditDirectory = cli.directory.path + "/profile-audit"
        try #"{"profiles": {"default": {"auditDir": "\#(auditDirectory)"}}}"#.write(toFile: config, atomically: true, encoding: .utf8)
        chmod(config, 0o600)
        // The harness's FIREBLOCKS_HSM_AUDIT_DIR would win over the profile: take it away.
        var environment = cli.environment(["FIREBLOCKS_HSM_CONFIG": config])
        environment.removeValue(forKey: "FIREBLOCKS_HSM_AUDIT_DIR")
        let result = try Subprocess.run(CLIHarness.binary, ["key", "generate", "--key", "k", "--bits", "2048", "--token", cli.label,
                                                             "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath],
                                        environment: environment, workingDirectory: cli.files)
        #expect(result.status == 0, "\(result.standardError)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: auditDirectory)) ?? []
        #expect(files.contains { $0.hasSuffix(".jsonl") }, "\(files)")
    }

    @Test func aRefusedLoginIsRecordedWithoutThePIN() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "a", "--bits", "2048"]).status == 0)
        let wrong = try cli.run(["key", "generate", "--key", "b", "--bits", "2048", "--token", cli.label, "--pin-source", "env:WRONG"],
                                environment: ["WRONG": "wrong-48151623"])
        #expect(wrong.status == 5)
        let log = try String(contentsOfFile: try auditLog(cli), encoding: .utf8)
        #expect(log.contains("\"login.failed\""))
        #expect(!log.contains("48151623"))
        // Sealed by the next checkpoint.
        #expect(try cli.runOnToken(["key", "generate", "--key", "c", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test func aCommandThatFailsOnTheTokenIsRecordedWithItsReason() throws {
        let (cli, sandbox, api) = try onboarded()
        defer { sandbox.stop(); cli.remove() }
        // Another name for the same key: refused, and the refusal recorded.
        let conflict = try cli.runOnToken(["onboard", "--key", "ci-bot", "--bits", "2048", "--name", "other", "--role", "SIGNER",
                                           "--o", "Acme", "--submit", "--admin-key", "admin"] + api)
        #expect(conflict.status == 6)
        let records = try #require(try cli.runOnToken(["audit", "show", "--event", "command.failed", "--json"]).json() as? [[String: Any]])
        let failed = try #require(records.last)
        #expect((failed["facts"] as? [String: Any])?["command"] as? String == "onboard")
        #expect(((failed["outcome"] as? [String: Any])?["reason"] as? String)?.contains("other") == true)
        #expect(try cli.runOnToken(["key", "generate", "--key", "z", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test func everyKindOfCommandRecordsItsFailureOnceTheTokenIsOpen() throws {
        let (cli, sandbox, api) = try onboarded()
        defer { sandbox.stop(); cli.remove() }
        // A key that backs a user is not deleted without --force; a missing key cannot sign.
        #expect(try cli.runOnToken(["key", "delete", "--key", "ci-bot", "--yes"]).status != 0)
        #expect(try cli.runOnToken(["jwt", "--key", "missing", "--api-key", "k", "--path", "/v1/workspace"]).status != 0)
        #expect(try cli.runOnToken(["request", "GET", "/v1/workspace", "--key", "missing"] + api).status != 0)
        #expect(try cli.runOnToken(["api-user", "list", "--key", "missing"] + api).status != 0)
        let records = try #require(try cli.runOnToken(["audit", "show", "--event", "command.failed", "--json"]).json() as? [[String: Any]])
        let commands = records.compactMap { ($0["facts"] as? [String: Any])?["command"] as? String }
        #expect(commands == ["key delete", "jwt", "api", "api"], "\(commands)")
        for record in records {
            #expect(((record["outcome"] as? [String: Any])?["reason"] as? String)?.isEmpty == false)
        }
        #expect(try cli.runOnToken(["key", "generate", "--key", "z", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
        let log = try String(contentsOfFile: try auditLog(cli), encoding: .utf8)
        #expect(!log.contains(cli.userPIN) && !log.contains("eyJ"))
    }

    @Test func theAuditKeyIsExportedLikeAnyOther() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let initialized = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        let exported = try cli.runOnToken(["key", "export", "--key", "fireblocks-hsm-audit", "--format", "pem"])
        #expect(exported.status == 0, "\(exported.standardError)")
        #expect(exported.standardOutput == (initialized["publicKeyPEM"] as? String ?? "") + "\n")
    }

    @Test(.enabled(if: Subprocess.isAvailable("openssl")))
    func theCheckpointSignatureVerifiesWithOpenSSL() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let initialized = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        try (initialized["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/audit.pub", atomically: true, encoding: .utf8)
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let note = try cli.runOnToken(["audit", "checkpoint"]).standardOutput
        let parts = note.components(separatedBy: "\n\n")
        #expect(parts.count == 2)
        try Data((parts[0] + "\n").utf8).write(to: URL(fileURLWithPath: cli.files + "/note.txt"))
        let line = try #require(parts[1].split(separator: "\n").first)
        let blob = try #require(Data(base64Encoded: String(line.split(separator: " ").last ?? "")))
        try blob.dropFirst(4).write(to: URL(fileURLWithPath: cli.files + "/sig.der"))
        let verified = try Subprocess.run("openssl", ["dgst", "-sha256", "-verify", cli.files + "/audit.pub",
                                                       "-signature", cli.files + "/sig.der", cli.files + "/note.txt"])
        #expect(verified.status == 0 && verified.standardOutput.contains("Verified OK"), "\(verified.standardError)")
    }

    @Test(arguments: ["edit", "delete", "truncate", "older"])
    func tamperingIsCaught(change: String) throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        for label in ["a", "b"] { #expect(try cli.runOnToken(["key", "generate", "--key", label, "--bits", "2048"]).status == 0) }
        let path = try auditLog(cli)
        let older = try String(contentsOfFile: path, encoding: .utf8)
        #expect(try cli.runOnToken(["key", "generate", "--key", "c", "--bits", "2048"]).status == 0)
        var lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        switch change {
        case "edit": lines[1] = lines[1].replacingOccurrences(of: "\"a\"", with: "\"z\"")
        case "delete": lines.remove(at: 1)
        case "truncate": lines.removeLast()
        default: lines = older.split(separator: "\n").map(String.init)  // an older log put back
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let verify = try cli.runOnToken(["audit", "verify", "--json"])
        #expect(verify.status == 11, "\(change): \(verify.standardError)")
        let error = try #require((try verify.json() as? [String: Any])?["error"] as? [String: Any])
        #expect(error["class"] as? String == "audit-integrity")
    }

    @Test func anAuditorsCheckpointOutlivesLaterRecordsButNotAnEditedPast() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "a", "--bits", "2048"]).status == 0)
        let saved = cli.files + "/saved.checkpoint"
        try cli.runOnToken(["audit", "checkpoint"]).standardOutput.write(toFile: saved, atomically: true, encoding: .utf8)
        #expect(try cli.runOnToken(["key", "generate", "--key", "b", "--bits", "2048"]).status == 0)
        let fine = try cli.runOnToken(["audit", "verify", "--from-checkpoint", saved])
        #expect(fine.status == 0, "\(fine.standardError)")

        // A forged checkpoint (another root) is refused: its signature does not verify.
        var forged = try String(contentsOfFile: saved, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        forged[2] = Data(repeating: 7, count: 32).base64EncodedString()
        try forged.joined(separator: "\n").write(toFile: cli.files + "/forged.checkpoint", atomically: true, encoding: .utf8)
        let refused = try cli.runOnToken(["audit", "verify", "--from-checkpoint", cli.files + "/forged.checkpoint"])
        #expect(refused.status == 11, "\(refused.standardError)")
        #expect(refused.standardError.contains("signature"))
    }

    @Test func aTornRecordBlocksOperationsUntilRepairedOnPurpose() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "a", "--bits", "2048"]).status == 0)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: try auditLog(cli)))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"seq\":9,\"ti".utf8))
        try handle.close()

        let verify = try cli.runOnToken(["audit", "verify"])
        #expect(verify.status == 11)
        #expect(verify.standardError.contains("torn"))
        let blocked = try cli.runOnToken(["key", "generate", "--key", "b", "--bits", "2048"])
        #expect(blocked.status == 11, "\(blocked.standardError)")
        let keys = try #require(try cli.runOnToken(["key", "list", "--json"]).json() as? [[String: Any]])
        #expect(keys.compactMap { $0["label"] as? String } == ["a"])

        #expect(try cli.runOnToken(["audit", "repair"]).status == 2)
        let repaired = try cli.runOnToken(["audit", "repair", "--truncate-torn"])
        #expect(repaired.status == 0, "\(repaired.standardError)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
        let events = try #require(try cli.runOnToken(["audit", "show", "--json"]).json() as? [[String: Any]]).compactMap { $0["event"] as? String }
        #expect(events.last == "audit.repaired")
    }

    @Test func aJWTWhoseRecordIsCutShortIsNeverPrintedAndLeavesNoTornRecord() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let jwt = ["jwt", "--key", "k", "--api-key", "k", "--path", "/v1/workspace"]
        // A key that is not there: no record claims a JWT, the failure is recorded.
        #expect(try cli.runOnToken(["jwt", "--key", "missing", "--api-key", "k", "--path", "/v1/workspace"]).status == 6)
        // The record is written while the token signs. Here a file-size limit cuts its write
        // part-way (as a full disk would): the partial record is taken back, and the JWT that
        // was signed is not printed. The log grows until the next record crosses the limit.
        let log = try auditLog(cli)
        func size() throws -> Int { (try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int) ?? 0 }
        var refused: ProcessResult?
        var sizeBefore = 0
        for _ in 0..<16 {
            sizeBefore = try size()
            let limit = sizeBefore / 1024 + 1
            if limit * 1024 - sizeBefore < 300 {
                refused = try cli.runOnToken(jwt, fileSizeLimitKiB: limit)
                break
            }
            #expect(try cli.runOnToken(jwt).status == 0)
        }
        let cut = try #require(refused)
        #expect(cut.status == 3, "\(cut.standardError)")
        #expect(cut.standardOutput.isEmpty)
        #expect(cut.standardError.contains("the JWT was not output") && cut.standardError.contains("nothing of it was kept"), "\(cut.standardError)")
        #expect(try size() == sizeBefore)
        #expect(try Data(contentsOf: URL(fileURLWithPath: log)).last == 0x0A)
        // The resource problem passed: the next command works and the trail verifies.
        let signed = try cli.runOnToken(jwt)
        #expect(signed.status == 0, "\(signed.standardError)")
        #expect(signed.standardOutput.hasPrefix("eyJ"))
        let events = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .compactMap { $0["event"] as? String }
        #expect(events.filter { $0 == "command.failed" }.count == 1, "\(events)")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)
    }

    @Test func anAuditDirectoryThatCannotBeWrittenStopsKeyGenerationBeforeAnyKey() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        let blocker = cli.files + "/not-a-directory"
        try Data().write(to: URL(fileURLWithPath: blocker))
        let result = try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048", "--audit-dir", blocker + "/audit"])
        #expect(result.status == 3, "\(result.standardError)")
        let objects = try Subprocess.run("pkcs11-tool", ["--module", SoftHSM.modulePath, "--token-label", cli.label, "--login",
                                                          "--pin", "env:TEST_HSM_PIN", "--list-objects"], environment: cli.environment())
        #expect(!objects.standardOutput.contains("label:      k\n"), "\(objects.standardOutput)")
        let keys = try #require(try cli.runOnToken(["key", "list", "--json"]).json() as? [[String: Any]])
        #expect(keys.isEmpty)
    }
}

@Suite("Command line: evidence bundle")
struct CLIEvidenceTests {
    @Test func theBundleVerifiesWithTheToolAndWithOpenSSLAloneAndTamperingIsCaught() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        defer { sandbox.stop(); cli.remove() }
        let auditKey = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        try (auditKey["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/trusted-audit.pub", atomically: true, encoding: .utf8)
        let onboard = try cli.runOnToken(["onboard", "--key", "ci-bot", "--bits", "2048", "--name", "ci-bot", "--role", "SIGNER",
                                          "--o", "Acme", "--submit", "--admin-key", "admin", "--json"] + api)
        #expect(onboard.status == 0, "\(onboard.standardError)")
        let evidence = try #require((try onboard.json() as? [String: Any])?["evidence"] as? String)
        let folder = evidence.hasPrefix("/") ? evidence : cli.files + "/" + evidence

        let verified = try cli.run(["evidence", "verify", folder, "--audit-key", cli.files + "/trusted-audit.pub", "--json"], module: nil)
        #expect(verified.status == 0, "\(verified.standardError)")
        let report = try #require(try verified.json() as? [String: Any])
        #expect(report["auditKeySHA256"] as? String == auditKey["spkiSHA256"] as? String)
        #expect((report["records"] as? Int ?? 0) >= 3)

        // VERIFY.md's commands, run as an auditor would: openssl and coreutils alone.
        let guide = try String(contentsOfFile: folder + "/VERIFY.md", encoding: .utf8)
        let script = try #require(guide.components(separatedBy: "```\n").dropFirst().first)
        let run = try Subprocess.run("bash", ["-euo", "pipefail", "-c", script], workingDirectory: folder)
        #expect(run.status == 0, "\(run.standardOutput)\n\(run.standardError)")
        #expect(run.standardOutput.components(separatedBy: "Verified OK").count - 1 == 2, "\(run.standardOutput)")
        #expect((run.standardOutput + run.standardError).contains("verify OK"))
        let fingerprints = run.standardOutput.split(separator: "\n").filter { $0.hasSuffix("  -") }
        #expect(fingerprints.first?.hasPrefix(auditKey["spkiSHA256"] as? String ?? "?") == true)

        // A file changed after signing, or another key's claim, is refused.
        try Data("-----BEGIN CERTIFICATE REQUEST-----\n".utf8).write(to: URL(fileURLWithPath: folder + "/api_user.csr"))
        let tampered = try cli.run(["evidence", "verify", folder, "--audit-key", cli.files + "/trusted-audit.pub"], module: nil)
        #expect(tampered.status == 11, "\(tampered.standardError)")
        #expect(tampered.standardError.contains("api_user.csr"))
    }
}
