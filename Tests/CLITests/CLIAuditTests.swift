import Foundation
import SoftHSMTestSupport
import Testing

/// The audit trail as an auditor and an attacker meet it: records of every key operation,
/// checkpoints signed on the token, and each kind of tampering caught.
@Suite("Command line: audit trail")
struct CLIAuditTests {
    private func auditLog(_ cli: CLIHarness) throws -> String { try cli.auditLogPath() }

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

    /// An auditor's `audit verify` while another process seals (each one-shot `jwt` anchors a
    /// new checkpoint: the token's object, then the checkpoint file): every verification passes.
    /// Reading the token's anchor before the file could find a file that moved on since and
    /// call it "ahead of the anchor"; a handle found just before the object was replaced could
    /// be gone when its value was read.
    @Test func verificationsBesideAnotherProcessThatSealsAllPass() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.runOnToken(["key", "generate", "--key", "k", "--bits", "2048"]).status == 0)
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/sh")
        writer.arguments = ["-c", "for i in $(seq 40); do \"$0\" jwt --key k --api-key 00000000-0000-4000-8000-000000000000 --path /v1/workspace --token \"$1\" --pin-source env:TEST_HSM_PIN --module \"$2\" > /dev/null 2>> \"$3\" && echo sealed >> \"$3.count\"; done",
                            CLIHarness.binary, cli.label, SoftHSM.modulePath, cli.directory.path + "/writer.err"]
        // Segments of 16 records: the writer seals one every few runs, under the readers' feet.
        let segments = ["FIREBLOCKS_HSM_AUDIT_SEGMENT_RECORDS": "16"]
        writer.environment = cli.environment(segments)
        try writer.run()
        var runs = 0
        var failures: [String] = []
        while writer.isRunning || runs < 3 {
            let verify = try cli.runOnToken(["audit", "verify"], environment: segments)
            if verify.status != 0 { failures.append(verify.standardError) }
            runs += 1
        }
        writer.waitUntilExit()
        // What is tested is the reader. A one-shot that fails beside it (SoftHSM's file store
        // under a loaded machine has answered CKR_GENERAL_ERROR to C_CreateObject) only means
        // fewer seals; most must have happened for the test to mean anything.
        let sealed = ((try? String(contentsOfFile: cli.directory.path + "/writer.err.count", encoding: .utf8)) ?? "").split(separator: "\n").count
        #expect(sealed >= 30, "\(sealed) of 40 seals: \((try? String(contentsOfFile: cli.directory.path + "/writer.err", encoding: .utf8)) ?? "")")
        #expect(failures.isEmpty, "\(failures.count) of \(runs) verifications failed: \(failures.prefix(3))")
        let sealedSegments = try FileManager.default.contentsOfDirectory(atPath: String(try cli.auditLogPath().dropLast(".jsonl".count)) + ".segments")
        #expect(sealedSegments.count >= 2, "\(sealedSegments)")
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
    /// The procedure of docs/auditor-guide.md (its first sh block), run as an auditor would.
    static func runGuide(_ folder: String, fingerprint: String) throws -> ProcessResult {
        let guide = try String(contentsOfFile: CLIHarness.repository + "/docs/auditor-guide.md", encoding: .utf8)
        let script = try #require(guide.components(separatedBy: "```sh\n").dropFirst().first?.components(separatedBy: "```\n").first)
        let path = NSTemporaryDirectory() + "check-evidence-\(UUID().uuidString).sh"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Subprocess.run("bash", [path, folder], environment: ["FINGERPRINT": fingerprint, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"])
    }

    private func onboardedWithEvidence() throws -> (CLIHarness, SandboxProcess, [String], String, String) {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: UUID().uuidString.lowercased())
        let auditKey = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        try (auditKey["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/trusted-audit.pub", atomically: true, encoding: .utf8)
        let onboard = try cli.runOnToken(["onboard", "--key", "ci-bot", "--bits", "2048", "--name", "ci-bot", "--role", "SIGNER",
                                          "--o", "Acme", "--submit", "--admin-key", "admin", "--json"] + api)
        guard onboard.status == 0 else { throw TestSupportError(onboard.standardError) }
        let evidence = try #require((try onboard.json() as? [String: Any])?["evidence"] as? String)
        let folder = evidence.hasPrefix("/") ? evidence : cli.files + "/" + evidence
        return (cli, sandbox, api, folder, auditKey["spkiSHA256"] as? String ?? "")
    }

    private func copy(_ folder: String) throws -> String {
        let target = folder + "-copy-\(UUID().uuidString.prefix(6))"
        try FileManager.default.copyItem(atPath: folder, toPath: target)
        return target
    }

    /// Rewrites SHA256SUMS for the files as they are now (what an attacker would do).
    private func resum(_ folder: String) throws {
        let sums = try String(contentsOfFile: folder + "/SHA256SUMS", encoding: .utf8).split(separator: "\n").map { line -> String in
            let name = String(line.split(separator: " ", maxSplits: 1)[1].dropFirst())
            let digest = try Subprocess.run("sha256sum", [folder + "/" + name]).standardOutput.prefix(64)
            return "\(digest)  \(name)"
        }
        try (sums.joined(separator: "\n") + "\n").write(toFile: folder + "/SHA256SUMS", atomically: true, encoding: .utf8)
    }

    @Test(.enabled(if: Subprocess.isAvailable("openssl") && Subprocess.isAvailable("python3")))
    func theBundleVerifiesWithTheToolAndWithTheGuidesProcedureAlone() throws {
        let (cli, sandbox, _, folder, fingerprint) = try onboardedWithEvidence()
        defer { sandbox.stop(); cli.remove() }
        let verified = try cli.run(["evidence", "verify", folder, "--audit-key", cli.files + "/trusted-audit.pub", "--json"], module: nil)
        #expect(verified.status == 0, "\(verified.standardError)")
        let report = try #require(try verified.json() as? [String: Any])
        #expect(report["auditKeySHA256"] as? String == fingerprint)
        #expect((report["records"] as? Int ?? 0) >= 3)

        let guide = try Self.runGuide(folder, fingerprint: fingerprint)
        #expect(guide.status == 0 && guide.standardOutput.contains("ALL CHECKS PASSED"), "\(guide.standardOutput)\n\(guide.standardError)")
        #expect(guide.standardOutput.contains("audit records are included"))
        // The wrong fingerprint stops it at step 1.
        #expect(try Self.runGuide(folder, fingerprint: String(repeating: "0", count: 64)).status != 0)

        // VERIFY.md's commands (the convenience copy) pass too.
        let copy = try String(contentsOfFile: folder + "/VERIFY.md", encoding: .utf8)
        #expect(copy.contains("docs/auditor-guide.md"))
        let script = try #require(copy.components(separatedBy: "```\n").dropFirst().first)
        let run = try Subprocess.run("bash", ["-euo", "pipefail", "-c", script], environment: ["FINGERPRINT": fingerprint, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                                     workingDirectory: try self.copy(folder))
        #expect(run.status == 0, "\(run.standardOutput)\n\(run.standardError)")
        #expect(run.standardOutput.components(separatedBy: "Verified OK").count - 1 == 3, "\(run.standardOutput)")
    }

    @Test(.enabled(if: Subprocess.isAvailable("openssl") && Subprocess.isAvailable("python3")),
          arguments: ["swapped key pair", "role made ADMIN", "statement edited", "proof of another record", "file edited"])
    func tamperingIsCaughtByTheGuideAndTheTool(attack: String) throws {
        let (cli, sandbox, _, original, fingerprint) = try onboardedWithEvidence()
        defer { sandbox.stop(); cli.remove() }
        let folder = try copy(original)
        switch attack {
        case "swapped key pair":
            // The attacker's own pair, made as Fireblocks' recipe does, with SHA256SUMS and
            // VERIFY.md rewritten to match.
            let made = try Subprocess.run("openssl", ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", folder + "/../attacker.key",
                                                       "-subj", "/CN=ci-bot/O=Acme", "-out", folder + "/api_user.csr"])
            #expect(made.status == 0, "\(made.standardError)")
            #expect(try Subprocess.run("openssl", ["pkey", "-in", folder + "/../attacker.key", "-pubout", "-out", folder + "/public-key.pem"]).status == 0)
            try resum(folder)
        case "role made ADMIN":
            let path = folder + "/api-exchange.json"
            try (try String(contentsOfFile: path, encoding: .utf8)).replacingOccurrences(of: "SIGNER", with: "ADMIN")
                .write(toFile: path, atomically: true, encoding: .utf8)
            try resum(folder)
        case "statement edited":
            let path = folder + "/statement.json"
            try (try String(contentsOfFile: path, encoding: .utf8)).replacingOccurrences(of: "SIGNER", with: "ADMIN")
                .write(toFile: path, atomically: true, encoding: .utf8)
        case "proof of another record":
            let proofs = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".tlog-proof") }.sorted()
            try #require(proofs.count >= 2)
            try FileManager.default.removeItem(atPath: folder + "/" + proofs[0])
            try FileManager.default.copyItem(atPath: folder + "/" + proofs[1], toPath: folder + "/" + proofs[0])
        default:
            let path = folder + "/token.json"
            try (try String(contentsOfFile: path, encoding: .utf8)).replacingOccurrences(of: "SoftHSM", with: "LunaHSM")
                .write(toFile: path, atomically: true, encoding: .utf8)
        }
        let guide = try Self.runGuide(folder, fingerprint: fingerprint)
        #expect(guide.status != 0, "\(attack): the guide's procedure passed: \(guide.standardOutput)")
        #expect(!guide.standardOutput.contains("ALL CHECKS PASSED"))
        let tool = try cli.run(["evidence", "verify", folder, "--audit-key", cli.files + "/trusted-audit.pub"], module: nil)
        #expect(tool.status == 11, "\(attack): \(tool.standardError)")
        if attack == "statement edited" {
            #expect(tool.standardError.contains("statement.json is not the envelope's signed payload"), "\(tool.standardError)")
        }
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIREBLOCKS_HSM_SIGSTORE_PY"] != nil))
    func sigstoresNoteCodeVerifiesTheCheckpointsAndRefusesAnotherKeyID() throws {
        let (cli, sandbox, _, folder, _) = try onboardedWithEvidence()
        defer { sandbox.stop(); cli.remove() }
        let note = try String(contentsOfFile: folder + "/checkpoint", encoding: .utf8)
        let origin = String(note.prefix { $0 != "\n" })
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = environment["FIREBLOCKS_HSM_SIGSTORE_PY"]
        let verifier = CLIHarness.repository + "/ci/verifiers/sigstore-verify-note.py"
        func sigstore(_ path: String) throws -> ProcessResult {
            try Subprocess.run("python3", [verifier, path, cli.files + "/trusted-audit.pub", origin], environment: environment)
        }
        let bundle = try sigstore(folder + "/checkpoint")
        #expect(bundle.status == 0, "\(bundle.standardError)")
        // The token's latest checkpoint, as an auditor keeps it.
        try cli.runOnToken(["audit", "checkpoint"]).standardOutput.write(toFile: cli.files + "/latest.checkpoint", atomically: true, encoding: .utf8)
        let latest = try sigstore(cli.files + "/latest.checkpoint")
        #expect(latest.status == 0, "\(latest.standardError)")
        // Another key ID on the same signature: sigstore finds no signature (so it does check).
        var lines = note.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let index = try #require(lines.firstIndex { $0.hasPrefix("— ") })
        let parts = lines[index].split(separator: " ")
        var blob = try #require(Data(base64Encoded: String(parts[2])))
        blob[0] ^= 0xFF
        lines[index] = "\(parts[0]) \(parts[1]) \(blob.base64EncodedString())"
        try lines.joined(separator: "\n").write(toFile: cli.files + "/other-id.checkpoint", atomically: true, encoding: .utf8)
        let refused = try sigstore(cli.files + "/other-id.checkpoint")
        #expect(refused.status == 1, "\(refused.standardOutput)")
    }
}
