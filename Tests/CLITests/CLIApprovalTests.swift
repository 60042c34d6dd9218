import Foundation
import SoftHSMTestSupport
import Testing

/// `approval-key` and `approvals` end to end: SoftHSM, both executables, the stand-in over
/// loopback, requests added with `fireblocks-sandbox approvals add`, the audit log read back.
@Suite("Command line: approvals")
struct CLIApprovalTests {
    let apiKey = UUID().uuidString.lowercased()

    private func add(_ cli: CLIHarness, _ sandbox: SandboxProcess, data: String, expiresIn: String = "10m") throws -> String {
        let added = try cli.runSandbox(["approvals", "add", "--type", "TAG_UPDATE", "--data", data, "--expires-in", expiresIn,
                                        "--state", sandbox.stateFile])
        #expect(added.status == 0, "\(added.standardError)")
        return added.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func approvalState(_ sandbox: SandboxProcess, _ id: String) throws -> String? {
        ((try sandbox.state()["approvals"] as? [[String: Any]])?.first { $0["id"] as? String == id })?["state"] as? String
    }

    @Test func registerApproveRejectAndTheAuditTrail() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api

        let created = try cli.runOnToken(["approval-key", "create", "--key", "approver-1", "--json"] + signer)
        #expect(created.status == 0, "\(created.standardError)")
        let report = try #require(try created.json() as? [String: Any])
        #expect(report["result"] as? String == "registered" && report["key"] as? String == "generated")
        #expect(report["status"] as? String == "APPROVAL_API_KEY_STATUS_ENABLED")
        #expect(report["algorithm"] as? String == "ECDSA_SECP256R1" && report["ccrIdPendingRegistration"] as? String == "")
        let keyID = try #require(report["keyID"] as? String)

        // A re-run registers nothing new and makes no second key.
        let again = try cli.runOnToken(["approval-key", "create", "--key", "approver-1", "--json"] + signer)
        #expect(again.status == 0, "\(again.standardError)")
        #expect((try again.json() as? [String: Any])?["result"] as? String == "already-registered")
        #expect((try again.json() as? [String: Any])?["keyID"] as? String == keyID)

        let listedKeys = try cli.runOnToken(["approval-key", "list", "--json"] + signer)
        let keys = try #require(try listedKeys.json() as? [[String: Any]])
        #expect(keys.count == 1 && keys.first?["tokenLabel"] as? String == "approver-1", "\(listedKeys.standardOutput)")

        // Whitespace and key order the tool would never produce: signed byte for byte.
        let id = try add(cli, sandbox, data: "{ \"tagId\" :\"t-1\",\n   \"name\": \"hot\" }")
        let listed = try cli.runOnToken(["approvals", "list", "--json"] + signer)
        #expect(listed.status == 0, "\(listed.standardError)")
        let items = try #require(try listed.json() as? [[String: Any]])
        let payload = try #require(items.first?["requestPayload"] as? String)
        #expect(payload.contains("{ \"tagId\" :\"t-1\",\n   \"name\": \"hot\" }"))
        let shown = try cli.runOnToken(["approvals", "show", id] + signer)
        #expect(shown.status == 0 && shown.standardOutput.contains("TAG_UPDATE") && shown.standardOutput.contains("tagId: \"t-1\""), "\(shown.standardOutput)")

        let approved = try cli.runOnToken(["approvals", "approve", id, "--key", "approver-1", "--json"] + signer)
        #expect(approved.status == 0, "\(approved.standardError)")
        let decision = try #require(try approved.json() as? [String: Any])
        #expect(decision["keyID"] as? String == keyID)
        #expect(try approvalState(sandbox, id) == "APPROVED")

        // Expired: refused before the token signs; nothing is sent.
        let expired = try add(cli, sandbox, data: "{}", expiresIn: "0s")
        let late = try cli.runOnToken(["approvals", "approve", expired, "--key", "approver-1"] + signer)
        #expect(late.status != 0 && late.standardError.contains("expired"), "\(late.standardError)")
        // The command has ended, so any request it sent has been answered and logged.
        #expect(!(try String(contentsOfFile: sandbox.log, encoding: .utf8)).contains("/v1/approvals/\(expired)/approve"))
        #expect(sandbox.logShows("GET /v1/approvals/\(expired)"), "the log names requests, so the line above could fail")

        let unwanted = try add(cli, sandbox, data: "{\"tagId\":\"t-2\"}")
        let rejected = try cli.runOnToken(["approvals", "reject", unwanted, "--reason", "not in the change plan"] + signer)
        #expect(rejected.status == 0, "\(rejected.standardError)")
        #expect(try approvalState(sandbox, unwanted) == "REJECTED")

        // The audit trail: registration, approval (id, type, payload digest), rejection with its reason; never a JWT.
        let log = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8)
        let records = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let events = records.compactMap { $0["event"] as? String }
        #expect(events.contains("approval-key.generated") && events.contains("approval-key.registered"), "\(events)")
        let approval = try #require(records.first { $0["event"] as? String == "approval.approved" })
        let facts = try #require(approval["facts"] as? [String: Any])
        #expect(facts["requestId"] as? String == id && facts["requestType"] as? String == "TAG_UPDATE")
        #expect(facts["payloadSHA256"] as? String == decision["payloadSHA256"] as? String)
        let rejection = try #require(records.first { $0["event"] as? String == "approval.rejected" })
        #expect((rejection["facts"] as? [String: Any])?["reason"] as? String == "not in the change plan")
        #expect(!log.contains("eyJ"), "no JWT in the audit log")
        #expect(try cli.runOnToken(["audit", "verify"]).status == 0)

        // Deleting the only key waits for approval.
        let deleted = try cli.runOnToken(["approval-key", "delete", "--key", "approver-1", "--json"] + signer)
        #expect(deleted.status == 0, "\(deleted.standardError)")
        #expect(((try deleted.json() as? [String: Any])?["ccrIdPendingDeletion"] as? String)?.isEmpty == false)
    }

    /// An API key is RSA, and so is an RSA-PSS approval key: the token keeps the approval key to
    /// RSA-PSS (CKA_ALLOWED_MECHANISMS, read back by OpenSC's pkcs11-tool and enforced by the
    /// token), and an RSA key it does not so limit is never taken as an approval key: not to
    /// approve, and not to register.
    @Test(.enabled(if: Subprocess.isAvailable("pkcs11-tool") || ProcessInfo.processInfo.environment["CI"] != nil))
    func anAPIKeyIsNeverAnApprovalKeyNorTheOtherWayRound() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["key", "generate", "--key", "api-3072", "--bits", "3072"]).status == 0)
        let id = try add(cli, sandbox, data: "{\"x\": 1}")
        let approved = try cli.runOnToken(["approvals", "approve", id, "--key", "api-3072"] + signer)
        #expect(approved.status != 0 && approved.standardError.contains("not an approval key"), "\(approved.status) \(approved.standardError)")
        #expect(try approvalState(sandbox, id) != "APPROVED")
        let registered = try cli.runOnToken(["approval-key", "create", "--key", "api-3072"] + signer)
        #expect(registered.status != 0 && registered.standardError.contains("not an approval key"), "\(registered.status) \(registered.standardError)")
        #expect(!(try String(contentsOfFile: sandbox.log, encoding: .utf8)).contains("approval_keys"), "nothing was registered")

        let created = try cli.runOnToken(["approval-key", "create", "--key", "rsa-approver", "--algorithm", "RSA_PS256", "--bits", "4096"] + signer)
        #expect(created.status == 0, "\(created.standardError)")
        let objects = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", cli.label, "--login", "--pin", "env:TEST_HSM_PIN",
            "--list-objects", "--type", "privkey"], environment: cli.environment())
        #expect(objects.status == 0, "\(objects.standardError)")
        let sections = objects.standardOutput.components(separatedBy: "Private Key Object")
        let approver = try #require(sections.first { $0.contains("rsa-approver") }, "\(objects.standardOutput)")
        let allowed = try #require(approver.split(separator: "\n").first { $0.contains("Allowed mechanisms") }, "\(approver)")
        #expect(allowed.contains("RSA-PKCS-PSS") && !allowed.contains("SHA256-RSA-PKCS,") && !allowed.hasSuffix("SHA256-RSA-PKCS"), "\(allowed)")
        // The token refuses it PKCS#1 v1.5, so it cannot sign an API JWT (the key chosen by
        // its CKA_ID: pkcs11-tool's --sign does not select by label).
        let idLine = try #require(approver.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("ID:") })
        let keyID = idLine.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        #expect(keyID.count == 32, "\(idLine)")
        let message = cli.files + "/message"
        try Data("a JWT's signing input".utf8).write(to: URL(fileURLWithPath: message))
        let jwtStyle = try Subprocess.run("pkcs11-tool", [
            "--module", SoftHSM.modulePath, "--token-label", cli.label, "--login", "--pin", "env:TEST_HSM_PIN",
            "--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", keyID, "--input-file", message], environment: cli.environment())
        #expect(jwtStyle.status != 0 && jwtStyle.standardError.contains("CKR_MECHANISM_INVALID"),
                "the token signed PKCS#1 v1.5 with an approval key: \(jwtStyle.status) \(jwtStyle.standardError)")
        // A 4096-bit key, as API keys are: only the restriction stops it signing a JWT.
        let asAPIKey = try cli.runOnToken(["jwt", "--key", "rsa-approver", "--api-key", apiKey, "--path", "/v1/workspace"])
        #expect(asAPIKey.status == 7 && asAPIKey.standardError.contains("CKA_ALLOWED_MECHANISMS"), "refused by the key policy, before the token: \(asAPIKey.standardError)")
        let shown = try cli.runOnToken(["key", "show", "--key", "rsa-approver", "--json"])
        let report = try #require(try shown.json() as? [String: Any], "\(shown.standardOutput)")
        #expect(report["verdict"] as? String != "meets-policy", "an approval key is no API key: \(shown.standardOutput)")
        #expect(shown.standardOutput.contains("CKM_RSA_PKCS_PSS"), "key show shows the restriction: \(shown.standardOutput)")

        // The audit trail's key is EC P-256, like a default approval key: never one.
        for arguments in [["approval-key", "create", "--key", "fireblocks-hsm-audit"], ["approvals", "approve", id, "--key", "fireblocks-hsm-audit"]] {
            let refused = try cli.runOnToken(arguments + signer)
            #expect(refused.status != 0 && refused.standardError.contains("audit trail's key"), "\(arguments): \(refused.standardError)")
        }
        let listed = try cli.runOnToken(["approval-key", "list", "--json"] + signer)
        #expect(!listed.standardOutput.contains("fireblocks-hsm-audit"), "\(listed.standardOutput)")
        #expect(try approvalState(sandbox, id) != "APPROVED")
    }

    /// A request's data is whatever a server sends: escapes that would recolour, retitle or
    /// rewrite the terminal, bidirectional overrides, a key with newlines, and a value of 60,000
    /// characters (the stand-in takes 64 KiB of data) are shown inert and bounded, in `show` and
    /// in `list`; `--json` keeps the exact payload.
    @Test func aHostilePayloadIsShownInertAndBounded() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        let escape = "\u{1B}"
        let hostile: [String: Any] = [
            "tagId": "t-1\(escape)]0;owned\u{07}",
            "name\(escape)[2J": "\(escape)[31mAPPROVED\(escape)[0m\r\nYour status  APPROVED",
            "note": "\u{202E}dlo\u{2066}",
            "x\nYour status  APPROVED\nz": "a key that would forge a line",
            "blob": String(repeating: "A", count: 60_000),
        ]
        let data = String(decoding: try JSONSerialization.data(withJSONObject: hostile), as: UTF8.self)
        let id = try add(cli, sandbox, data: data)
        for arguments in [["approvals", "show", id], ["approvals", "list"]] {
            let shown = try cli.runOnToken(arguments + signer)
            #expect(shown.status == 0, "\(arguments): \(shown.standardError)")
            let output = shown.standardOutput + shown.standardError
            for forbidden in ["\u{1B}", "\u{07}", "\r", "\u{202E}", "\u{2066}"] {
                #expect(!output.contains(forbidden), "\(arguments): \(forbidden.unicodeScalars.first.map { String($0.value, radix: 16) } ?? "") printed raw")
            }
            #expect(output.utf8.count < 70_000, "\(arguments): \(output.utf8.count) bytes printed")
            #expect(!output.contains("\nYour status  APPROVED"), "\(arguments): a forged line")
        }
        let shown = try cli.runOnToken(["approvals", "show", id] + signer)
        #expect(shown.standardOutput.contains("\\u{1b}[31mAPPROVED") || shown.standardOutput.contains("\\u{1B}[31mAPPROVED") || shown.standardOutput.contains("\\u{001B}"),
                "the escape is shown as text: \(shown.standardOutput.prefix(2000))")
        let exact = try cli.runOnToken(["approvals", "show", id, "--json"] + signer)
        let item = try #require(try exact.json() as? [String: Any])
        let payload = try #require(item["requestPayload"] as? String)
        #expect(payload.contains(String(repeating: "A", count: 60_000)), "--json carries the payload whole")
    }

    @Test(arguments: [["--algorithm", "ECDSA_SECP384R1"], ["--algorithm", "RSA_PS256"], ["--algorithm", "EDDSA_ED25519"]])
    func otherAlgorithmsApproveThroughTheCommandLine(algorithm: [String]) throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER",
                                                               sandboxArguments: ["--approval-key-registration", "pending"])
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        let created = try cli.runOnToken(["approval-key", "create", "--key", "approver", "--json"] + algorithm + signer)
        #expect(created.status == 0, "\(created.standardError)")
        let ccr = try #require((try created.json() as? [String: Any])?["ccrIdPendingRegistration"] as? String)
        #expect(!ccr.isEmpty, "registration waits for approval")
        let id = try add(cli, sandbox, data: "[1, 2,  3]")
        let early = try cli.runOnToken(["approvals", "approve", id, "--key", "approver"] + signer)
        #expect(early.status != 0, "a key pending registration cannot sign: \(early.standardError)")
        #expect(try cli.runSandbox(["approvals", "approve", ccr, "--state", sandbox.stateFile]).status == 0)
        let approved = try cli.runOnToken(["approvals", "approve", id, "--key", "approver"] + signer)
        #expect(approved.status == 0, "\(approved.standardError)")
        #expect(try approvalState(sandbox, id) == "APPROVED")
    }

    @Test func usageErrorsComeBeforeAnything() throws {
        let cli = try CLIHarness()
        defer { cli.remove() }
        #expect(try cli.run(["approval-key", "create", "--as", "admin", "--env", "sandbox"]).status == 2)
        #expect(try cli.run(["approval-key", "create", "--key", "a", "--algorithm", "ES256"]).status == 2)
        #expect(try cli.run(["approval-key", "create", "--key", "a", "--bits", "4096"]).status == 2)
        #expect(try cli.run(["approvals", "approve", "../x", "--key", "a"]).status == 2)
        #expect(try cli.run(["approvals", "reject", "x", "--reason", ""]).status == 2)
        // The stand-in's side: JSON that is not, a missing state file, an unknown request.
        let state = cli.files + "/sandbox.json"
        #expect(try cli.runSandbox(["approvals", "add", "--type", "T", "--data", "{not json", "--state", state]).status == 2)
        #expect(try cli.runSandbox(["approvals", "add", "--type", "T", "--state", state]).status == 3, "no state file")
        try Data(#"{"workspace": {"id": "w", "name": "n"}, "users": [], "idempotency": []}"#.utf8).write(to: URL(fileURLWithPath: state))
        let unknown = try cli.runSandbox(["approvals", "approve", "nope", "--state", state])
        #expect(unknown.status != 0 && unknown.standardError.contains("no open approval request"), "\(unknown.standardError)")
    }

    /// The official Python SDK, unmodified, parses what the stand-in answers with its own models
    /// (ListApprovalsResponse, ApprovalRequestItem, ListApprovalApiKeysResponse), through the
    /// proxy that signs on the token: the payload arrives byte for byte as the stand-in wrote it.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"] != nil && Subprocess.isAvailable("openssl")))
    func theOfficialPythonSDKReadsApprovalsThroughTheProxy() throws {
        let sdk = try #require(ProcessInfo.processInfo.environment["FIREBLOCKS_PY_SDK"])
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver", "--as", "admin"] + api).status == 0)
        let id = try add(cli, sandbox, data: "{ \"tagId\" :\"t-1\" }")
        let placeholder = try Subprocess.run("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                                                         "-out", cli.files + "/placeholder.pem"])
        #expect(placeholder.status == 0)
        let proxy = try ProxyProcess(cli: cli, arguments: ["--key", "admin", "--listen", "127.0.0.1:0", "--allow", "GET /v1/approvals",
                                                           "--allow", "GET /v1/approvals/*", "--allow", "GET /v1/management/api_users/*/approval_keys"] + api,
                                     socket: nil)
        let port = try #require(proxy.port)
        let script = """
            import json
            from fireblocks.client import Fireblocks
            from fireblocks.client_configuration import ClientConfiguration
            configuration = ClientConfiguration(api_key="placeholder", secret_key=open("placeholder.pem").read(),
                                                base_path="http://127.0.0.1:\(port)/v1")
            with Fireblocks(configuration) as fireblocks:
                listed = fireblocks.approvals_beta.get_approvals(quorum_status_mode="SUMMARY").result().data
                one = fireblocks.approvals_beta.get_approval_by_id(request_id="\(id)").result().data
                keys = fireblocks.approvals_beta.get_approval_keys(user_id="\(apiKey)").result().data
                print(json.dumps({"payloads": [item.request_payload for item in listed.data], "one": one.request_payload,
                                  "status": one.user_status, "quorum": listed.data[0].quorum_status.request_status.value,
                                  "keys": [[k.name, k.status, k.approval_api_public_key.algorithm] for k in keys.data]}))
            """
        let run = try Subprocess.run("python3", ["-c", script], environment: cli.environment(["PYTHONPATH": sdk]), workingDirectory: cli.files)
        let exit = proxy.terminate()
        #expect(run.status == 0, "\(run.standardError)\n\(proxy.output)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any])
        let stored = try #require(((try sandbox.state()["approvals"] as? [[String: Any]])?.first)?["payload"] as? String)
        #expect(result["payloads"] as? [String] == [stored] && result["one"] as? String == stored, "\(result)")
        #expect(result["status"] as? String == "USER_NOT_APPROVED" && result["quorum"] as? String == "PENDING", "\(result)")
        #expect((result["keys"] as? [[String]]) == [["approver", "APPROVAL_API_KEY_STATUS_ENABLED", "ECDSA_SECP256R1"]], "\(result)")
        #expect(exit == 0)
    }

    /// A token without CKM_SHA256_RSA_PKCS_PSS signs RSA_PS256 with CKM_RSA_PKCS_PSS over the
    /// SHA-256 the host computes: the stand-in accepts it the same.
    @Test func rsaPSSWorksWithTheRawPSSMechanismToo() throws {
        let cli = try CLIHarness(mechanisms: "CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS,CKM_RSA_PKCS,CKM_RSA_PKCS_PSS,CKM_EC_KEY_PAIR_GEN,CKM_ECDSA")
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["key", "export", "--key", "admin", "--out", "admin.pub"]).status == 0)
        let sandbox = try SandboxProcess(cli: cli, trust: ["admin.pub=\(apiKey):SIGNER"])
        defer { sandbox.stop(); cli.remove() }
        let api = ["--as", "admin", "--api-key", apiKey, "--base-url", sandbox.baseURL]
        let created = try cli.runOnToken(["approval-key", "create", "--key", "rsa", "--algorithm", "RSA_PS256"] + api)
        #expect(created.status == 0, "\(created.standardError)")
        let id = try add(cli, sandbox, data: "{\"x\": 1}")
        let approved = try cli.runOnToken(["approvals", "approve", id, "--key", "rsa"] + api)
        #expect(approved.status == 0, "\(approved.standardError)")
        #expect(try approvalState(sandbox, id) == "APPROVED")
    }

    /// Ed25519 only where the token offers CKM_EDDSA: elsewhere it is refused before anything is
    /// generated or sent.
    @Test func ed25519IsRefusedOnATokenWithoutEdDSA() throws {
        let cli = try CLIHarness(mechanisms: "CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS,CKM_RSA_PKCS,CKM_EC_KEY_PAIR_GEN,CKM_ECDSA")
        #expect(try cli.runOnToken(["key", "generate", "--key", "admin", "--bits", "2048"]).status == 0)
        #expect(try cli.runOnToken(["key", "export", "--key", "admin", "--out", "admin.pub"]).status == 0)
        let sandbox = try SandboxProcess(cli: cli, trust: ["admin.pub=\(apiKey):SIGNER"])
        defer { sandbox.stop(); cli.remove() }
        let api = ["--as", "admin", "--api-key", apiKey, "--base-url", sandbox.baseURL]
        let refused = try cli.runOnToken(["approval-key", "create", "--key", "ed", "--algorithm", "EDDSA_ED25519"] + api)
        #expect(refused.status == 4 && refused.standardError.contains("CKM_EDDSA"), "\(refused.status) \(refused.standardError)")
        #expect(!(try String(contentsOfFile: sandbox.log, encoding: .utf8)).contains("approval_keys"))
        let p256 = try cli.runOnToken(["approval-key", "create", "--key", "ec"] + api)
        #expect(p256.status == 0, "P-256 needs only CKM_ECDSA: \(p256.standardError)")
        #expect(sandbox.logShows("approval_keys"), "the log names these requests, so the check above could fail")
    }

    private func registered(_ cli: CLIHarness, _ signer: [String]) throws -> [[String: Any]] {
        let listed = try cli.runOnToken(["approval-key", "list", "--json"] + signer)
        #expect(listed.status == 0, "\(listed.standardError)")
        return try listed.json() as? [[String: Any]] ?? []
    }

    private func generatedLabels(_ cli: CLIHarness) throws -> [String] {
        let log = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8)
        return log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["event"] as? String == "approval-key.generated" }
            .compactMap { ($0["facts"] as? [String: Any])?["label"] as? String }
    }

    /// A rotation killed (SIGKILL) after any of its steps is finished by running it again: one
    /// new key generated, registered once, the old registration deleted.
    @Test(.enabled(if: FaultInjectionAvailable.inDebugBuilds),
          arguments: ["approval-key-generated", "approval-key-rotate-registered", "approval-key-rotate-enabled"])
    func aRotationKilledAtEachStepResumes(point: String) throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver-1"] + signer).status == 0)
        let rotate = ["approval-key", "rotate", "--from", "approver-1", "--to", "approver-2", "--json"] + signer
        let killed = try cli.runOnToken(rotate, environment: ["FIREBLOCKS_HSM_FAULT": point])
        #expect(killed.status == SIGKILL, "\(killed.standardError)")
        let resumed = try cli.runOnToken(rotate)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        let report = try #require(try resumed.json() as? [String: Any])
        #expect(report["oldKey"] as? String == "deleted", "\(report)")
        let keys = try registered(cli, signer)
        #expect(keys.count == 1 && keys.first?["tokenLabel"] as? String == "approver-2", "\(keys)")
        #expect(((keys.first?["key"] as? [String: Any])?["status"] as? String) == "APPROVAL_API_KEY_STATUS_ENABLED")
        #expect(try generatedLabels(cli) == ["approver-1", "approver-2"], "the new key was generated once")
        // Once more: nothing left to do.
        let again = try cli.runOnToken(rotate)
        #expect((try again.json() as? [String: Any])?["oldKey"] as? String == "already-deleted", "\(again.standardError)")
    }

    /// With registrations behind approval requests: the rotation waits (and gives up at
    /// --timeout with the old key still registered), and a re-run once the new key is approved
    /// asks for the old key's deletion, which waits for approval too.
    @Test func aRotationWaitsForApprovalAndResumes() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER",
                                                               sandboxArguments: ["--approval-key-registration", "pending"])
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        let created = try cli.runOnToken(["approval-key", "create", "--key", "approver-1", "--json"] + signer)
        let first = try #require((try created.json() as? [String: Any])?["ccrIdPendingRegistration"] as? String)
        #expect(try cli.runSandbox(["approvals", "approve", first, "--state", sandbox.stateFile]).status == 0)

        let rotate = ["approval-key", "rotate", "--from", "approver-1", "--to", "approver-2", "--interval", "0.1s", "--json"] + signer
        let waited = try cli.runOnToken(rotate + ["--timeout", "1s"])
        #expect(waited.status == 12, "\(waited.standardError)")
        #expect(waited.standardError.contains("old key is still registered"), "\(waited.standardError)")
        #expect(try registered(cli, signer).count == 2)

        let pending = try #require((try sandbox.state()["approvalKeys"] as? [[String: Any]])?.compactMap { $0["pendingRequestID"] as? String }.first)
        #expect(try cli.runSandbox(["approvals", "approve", pending, "--state", sandbox.stateFile]).status == 0)
        let resumed = try cli.runOnToken(rotate)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        let report = try #require(try resumed.json() as? [String: Any])
        #expect(report["oldKey"] as? String == "pending-deletion", "\(report)")
        let deletion = try #require(report["ccrIdPendingDeletion"] as? String)
        #expect(try cli.runSandbox(["approvals", "approve", deletion, "--state", sandbox.stateFile]).status == 0)
        let keys = try registered(cli, signer)
        #expect(keys.count == 1 && keys.first?["tokenLabel"] as? String == "approver-2", "\(keys)")
    }

    static let watchPolicy = """
        version: 1
        rules:
          - name: small-updates
            requestTypes: [TAG_UPDATE]
            when:
              - { field: amount, max: "100" }
            decision: approve
          - name: no-deletions
            requestTypes: [TAG_DELETE]
            decision: reject
            reason: "deletions are for people"
        default: skip
        """

    private func add(_ cli: CLIHarness, _ sandbox: SandboxProcess, type: String, data: String, expiresIn: String = "10m") throws -> String {
        let added = try cli.runSandbox(["approvals", "add", "--type", type, "--data", data, "--expires-in", expiresIn, "--state", sandbox.stateFile])
        #expect(added.status == 0, "\(added.standardError)")
        return added.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func auditEvents(_ cli: CLIHarness) throws -> [[String: Any]] {
        let log = try String(contentsOfFile: try cli.auditLogPath(), encoding: .utf8)
        return log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Under a policy, `watch --once` approves, rejects and leaves requests as written, and a
    /// second run decides nothing again.
    @Test func watchDecidesByThePolicyOnce() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver"] + signer).status == 0)
        try Data(Self.watchPolicy.utf8).write(to: URL(fileURLWithPath: cli.files + "/approvals.yaml"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: cli.files + "/approvals.yaml")
        let small = try add(cli, sandbox, type: "TAG_UPDATE", data: "{ \"amount\": \"99.99\" }")
        let large = try add(cli, sandbox, type: "TAG_UPDATE", data: "{\"amount\":\"100.000000000000000001\"}")
        let deletion = try add(cli, sandbox, type: "TAG_DELETE", data: "{}")
        let other = try add(cli, sandbox, type: "TAG_ATTACH_DETACH", data: "{}")

        let watch = ["approvals", "watch", "--policy", "approvals.yaml", "--key", "approver", "--once", "--json"] + signer
        let first = try cli.runOnToken(watch)
        #expect(first.status == 0, "\(first.standardError)")
        let decided = try #require((try first.json() as? [String: Any])?["decided"] as? [[String: Any]])
        let byID = Dictionary(uniqueKeysWithValues: decided.compactMap { d in (d["requestId"] as? String).map { ($0, d) } })
        #expect(byID[small]?["decision"] as? String == "approve" && byID[small]?["rule"] as? String == "small-updates")
        #expect(byID[large]?["decision"] as? String == "skip" && byID[large]?["rule"] as? String == "default")
        #expect(byID[deletion]?["decision"] as? String == "reject" && byID[deletion]?["rule"] as? String == "no-deletions")
        #expect(byID[other]?["decision"] as? String == "skip")
        #expect(decided.allSatisfy { $0["state"] as? String == "done" }, "\(decided)")
        #expect(try approvalState(sandbox, small) == "APPROVED")
        #expect(try approvalState(sandbox, deletion) == "REJECTED")
        #expect(try approvalState(sandbox, large) == "PENDING" && (try approvalState(sandbox, other)) == "PENDING")

        let second = try cli.runOnToken(watch)
        #expect(second.status == 0, "\(second.standardError)")
        let again = try #require(try second.json() as? [String: Any])
        #expect((again["decided"] as? [Any])?.isEmpty == true && again["alreadyDecided"] as? Int == 2, "\(again)")

        let events = try auditEvents(cli)
        let skipped = events.filter { $0["event"] as? String == "approval.skipped" }
        #expect(skipped.count == 2, "skips are recorded once each")
        #expect(skipped.allSatisfy { ($0["facts"] as? [String: Any])?["rule"] as? String == "default" })
        let approved = try #require(events.first { $0["event"] as? String == "approval.approved" })
        #expect((approved["facts"] as? [String: Any])?["rule"] as? String == "small-updates")
    }

    /// Killed right after the token signed, before the approval was sent: the next run does not
    /// sign that request again (it is left for people), and goes on with the others.
    @Test(.enabled(if: FaultInjectionAvailable.inDebugBuilds))
    func watchNeverSignsTwiceAcrossARestart() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver"] + signer).status == 0)
        try Data(Self.watchPolicy.utf8).write(to: URL(fileURLWithPath: cli.files + "/approvals.yaml"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: cli.files + "/approvals.yaml")
        let first = try add(cli, sandbox, type: "TAG_UPDATE", data: "{\"amount\":\"1\"}")
        let watch = ["approvals", "watch", "--policy", "approvals.yaml", "--key", "approver", "--once", "--json"] + signer
        let killed = try cli.runOnToken(watch, environment: ["FIREBLOCKS_HSM_FAULT": "approvals-watch-signed"])
        #expect(killed.status == SIGKILL, "\(killed.standardError)")
        #expect(try approvalState(sandbox, first) == "PENDING")

        let second = try add(cli, sandbox, type: "TAG_UPDATE", data: "{\"amount\":\"2\"}")
        let resumed = try cli.runOnToken(watch)
        #expect(resumed.status == 0, "\(resumed.standardError)")
        let report = try #require(try resumed.json() as? [String: Any])
        #expect((report["decided"] as? [[String: Any]])?.compactMap { $0["requestId"] as? String } == [second], "\(report)")
        #expect(report["alreadyDecided"] as? Int == 1)
        #expect(try approvalState(sandbox, first) == "PENDING", "never signed and sent a second time")
        #expect(try approvalState(sandbox, second) == "APPROVED")
    }

    /// A key that is not a registered approval key decides nothing: no request is judged,
    /// recorded as decided, or sent.
    @Test func watchWithAnUnregisteredKeyDecidesNothing() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        try Data(Self.watchPolicy.utf8).write(to: URL(fileURLWithPath: cli.files + "/approvals.yaml"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: cli.files + "/approvals.yaml")
        let id = try add(cli, sandbox, type: "TAG_DELETE", data: "{}")
        // An API key is no approval key at all (an RSA key the token does not limit to RSA-PSS).
        let refused = try cli.runOnToken(["approvals", "watch", "--policy", "approvals.yaml", "--key", "admin", "--once"] + signer)
        #expect(refused.status != 0 && refused.standardError.contains("not an approval key"), "\(refused.standardError)")
        #expect(try approvalState(sandbox, id) == "PENDING")
        let decided = try cli.runOnToken(["approvals", "watch", "--policy", "approvals.yaml", "--key", "admin", "--once"] + signer)
        #expect(decided.standardError.contains("not an approval key"), "still nothing decided: \(decided.standardError)")
        // An approval key on the token whose registration was deleted (not the user's last key,
        // so the deletion is at once): not registered.
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver"] + signer).status == 0)
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver-2"] + signer).status == 0)
        let deleted = try cli.runOnToken(["approval-key", "delete", "--key", "approver"] + signer)
        #expect(deleted.status == 0, "\(deleted.standardError)")
        let unregistered = try cli.runOnToken(["approvals", "watch", "--policy", "approvals.yaml", "--key", "approver", "--once"] + signer)
        #expect(unregistered.status != 0 && unregistered.standardError.contains("not registered"), "\(unregistered.standardError)")
        #expect(try approvalState(sandbox, id) == "PENDING")
    }

    /// Without --once it runs until SIGTERM (systemd's stop), and exits 0.
    @Test func watchStopsOnSIGTERM() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver"] + signer).status == 0)
        try Data(Self.watchPolicy.utf8).write(to: URL(fileURLWithPath: cli.files + "/approvals.yaml"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: cli.files + "/approvals.yaml")
        let id = try add(cli, sandbox, type: "TAG_UPDATE", data: "{\"amount\":\"1\"}")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        process.arguments = ["approvals", "watch", "--policy", "approvals.yaml", "--key", "approver", "--interval", "1s",
                             "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath] + signer
        process.currentDirectoryURL = URL(fileURLWithPath: cli.files)
        process.environment = cli.environment()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        #expect(CLIHarness.eventually(within: 30) { (try? approvalState(sandbox, id)) == "APPROVED" }, "the first pass approved it")
        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
    }

    /// With --listen, /healthz says ok with the last pass and the decisions made, /metrics
    /// counts passes and decisions by outcome, both over a unix socket; /healthz turns 503 once
    /// a pass fails (the API gone); SIGTERM still ends it with 0 and removes the socket.
    @Test(.enabled(if: Subprocess.isAvailable("curl")))
    func watchServesHealthAndMetrics() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let signer = ["--as", "admin"] + api
        #expect(try cli.runOnToken(["approval-key", "create", "--key", "approver"] + signer).status == 0)
        try Data(Self.watchPolicy.utf8).write(to: URL(fileURLWithPath: cli.files + "/approvals.yaml"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: cli.files + "/approvals.yaml")
        let approved = try add(cli, sandbox, type: "TAG_UPDATE", data: "{\"amount\":\"1\"}")
        let rejected = try add(cli, sandbox, type: "TAG_DELETE", data: "{}")
        let watch = ["approvals", "watch", "--policy", "approvals.yaml", "--key", "approver", "--interval", "1s"] + signer

        // Where it may listen is checked before anything runs, as for serve.
        let wide = try cli.runOnToken(watch + ["--listen", "0.0.0.0:9464"])
        #expect(wide.status == 2 && wide.standardError.contains("loopback"), "\(wide.standardError)")
        let once = try cli.runOnToken(watch + ["--listen", "127.0.0.1:0", "--once"])
        #expect(once.status == 2 && once.standardError.contains("--once"), "\(once.standardError)")

        let socket = cli.directory.path + "/run/watch.sock"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLIHarness.binary)
        process.arguments = watch + ["--listen", "unix:\(socket)", "--token", cli.label, "--pin-source", "env:TEST_HSM_PIN", "--module", SoftHSM.modulePath]
        process.currentDirectoryURL = URL(fileURLWithPath: cli.files)
        process.environment = cli.environment()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate(); process.waitUntilExit() } }
        func curl(_ path: String) -> (status: Int, body: String) {
            guard let result = try? Subprocess.run("curl", ["-sS", "--max-time", "30", "--unix-socket", socket, "-o", "-", "-w", "\n%{http_code}", "http://watch" + path]) else { return (0, "") }
            let lines = result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
        #expect(CLIHarness.eventually(within: 60) { curl("/healthz").status == 200 }, "healthy after the first pass: \(curl("/healthz"))")
        let health = curl("/healthz")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(health.body.utf8)) as? [String: Any], "\(health)")
        #expect(document["status"] as? String == "ok" && document["lastSuccessfulPoll"] is String, "\(document)")
        let decisions = try #require(document["decisions"] as? [String: Int], "\(document)")
        #expect(decisions["approve"] == 1 && decisions["reject"] == 1 && document["decisionsMade"] as? Int == 2, "\(document)")
        #expect(try approvalState(sandbox, approved) == "APPROVED" && (try approvalState(sandbox, rejected)) == "REJECTED")
        let metrics = curl("/metrics")
        #expect(metrics.status == 200)
        let lines = Set(metrics.body.split(separator: "\n").map(String.init))
        #expect(lines.contains("fireblocks_hsm_approvals_watch_decisions_total{outcome=\"approve\"} 1"), "\(metrics.body)")
        #expect(lines.contains("fireblocks_hsm_approvals_watch_decisions_total{outcome=\"reject\"} 1"), "\(metrics.body)")
        #expect(lines.contains("fireblocks_hsm_approvals_watch_decisions_total{outcome=\"skip\"} 0"), "\(metrics.body)")
        #expect(lines.contains { $0.hasPrefix("fireblocks_hsm_approvals_watch_polls_total{result=\"ok\"} ") && !$0.hasSuffix(" 0") }, "\(metrics.body)")
        #expect(curl("/v1/approvals").status == 404, "it answers nothing but its two paths")

        // The API gone: the next pass fails, and /healthz says so.
        sandbox.stop()
        #expect(CLIHarness.eventually(within: 120) { curl("/healthz").status == 503 }, "\(curl("/healthz"))")
        let failing = try #require(try JSONSerialization.jsonObject(with: Data(curl("/healthz").body.utf8)) as? [String: Any])
        #expect((failing["status"] as? String)?.hasPrefix("failing: the last pass failed") == true && failing["lastFailure"] != nil, "\(failing)")
        #expect(curl("/metrics").body.contains("fireblocks_hsm_approvals_watch_errors_total{kind=\"poll\"} "), "counted")

        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket is removed")
    }

    /// `approval-key create --evidence` writes a bundle that the auditor's procedure (openssl,
    /// coreutils, python3) and `evidence verify` accept: the key registered is public-key.pem,
    /// its attributes read back say sensitive and never extractable, the registration body
    /// sent carries that PEM, and no JWT is in it. An edited registration is caught by both.
    @Test(.enabled(if: Subprocess.isAvailable("openssl") && Subprocess.isAvailable("python3")))
    func createWritesEvidenceAnAuditorChecks() throws {
        let (cli, sandbox, api) = try SandboxProcess.withAdmin(apiKey: apiKey, role: "SIGNER")
        defer { sandbox.stop(); cli.remove() }
        let auditKey = try #require(try cli.runOnToken(["audit", "init", "--json"]).json() as? [String: Any])
        let fingerprint = try #require(auditKey["spkiSHA256"] as? String)
        try (auditKey["publicKeyPEM"] as? String ?? "").write(toFile: cli.files + "/trusted-audit.pub", atomically: true, encoding: .utf8)
        let created = try cli.runOnToken(["approval-key", "create", "--key", "approver", "--evidence", "approver-evidence", "--json",
                                          "--as", "admin"] + api)
        #expect(created.status == 0, "\(created.standardError)")
        let report = try #require(try created.json() as? [String: Any])
        let folder = try #require(report["evidence"] as? String)
        #expect(folder == URL(fileURLWithPath: cli.files + "/approver-evidence").standardizedFileURL.path)

        let guide = try CLIEvidenceTests.runGuide(folder, fingerprint: fingerprint)
        #expect(guide.status == 0 && guide.standardOutput.contains("ALL CHECKS PASSED"), "\(guide.standardOutput)\n\(guide.standardError)")
        #expect(guide.standardOutput.contains("4. public-key.pem is the approval key") && guide.standardOutput.contains("2 audit records"),
                "\(guide.standardOutput)")
        let tool = try cli.run(["evidence", "verify", folder, "--audit-key", cli.files + "/trusted-audit.pub", "--json"], module: nil)
        #expect(tool.status == 0, "\(tool.standardError)")
        #expect((try tool.json() as? [String: Any])?["kind"] as? String == "approval-key")
        // VERIFY.md's convenience copy of the commands passes too, in a copy of the folder.
        let script = try #require(try String(contentsOfFile: folder + "/VERIFY.md", encoding: .utf8).components(separatedBy: "```\n").dropFirst().first)
        #expect(script.contains("keySPKISHA256") && !script.contains("api_user.csr"), "\(script)")
        let scratch = folder + "-verify"
        try FileManager.default.copyItem(atPath: folder, toPath: scratch)
        let run = try Subprocess.run("bash", ["-euo", "pipefail", "-c", script], environment: ["FINGERPRINT": fingerprint, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                                     workingDirectory: scratch)
        #expect(run.status == 0 && run.standardOutput.components(separatedBy: "Verified OK").count - 1 == 3, "\(run.standardOutput)\n\(run.standardError)")

        // The key is the one registered and reported, with the attributes the policy wants.
        let spki = try Subprocess.run("bash", ["-c", "openssl pkey -pubin -in public-key.pem -outform DER | sha256sum | cut -d' ' -f1"],
                                      workingDirectory: folder).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(spki == report["spkiSHA256"] as? String)
        let registration = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/registration.json"))) as? [String: Any])
        let sent = try #require((registration["request"] as? [String: Any])?["approvalApiPublicKey"] as? [String: Any])
        let pem = try String(contentsOfFile: folder + "/public-key.pem", encoding: .utf8)
        #expect((sent["publicKeyPem"] as? String).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } == pem.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(registration["keyId"] as? String == report["keyID"] as? String && registration["result"] as? String == "registered")
        let attributes = try #require((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/key-attributes.json"))) as? [String: Any])?["privateKeyAttributes"] as? [String: Bool])
        #expect(attributes["CKA_SENSITIVE"] == true && attributes["CKA_EXTRACTABLE"] == false, "\(attributes)")
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)), as: UTF8.self)
            #expect(!text.contains("eyJhbGci") && !text.contains("Bearer"), "no JWT (its header {\"alg\": in base64url) in \(name)")
        }

        // An edited key id (SHA256SUMS rewritten to match) is caught.
        let edited = folder + "-edited"
        try FileManager.default.copyItem(atPath: folder, toPath: edited)
        let path = edited + "/registration.json"
        try (try String(contentsOfFile: path, encoding: .utf8)).replacingOccurrences(of: report["keyID"] as? String ?? "-", with: "attacker-key")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let digest = try Subprocess.run("bash", ["-c", "sha256sum registration.json | cut -d' ' -f1"], workingDirectory: edited).standardOutput.prefix(64)
        let sums = try String(contentsOfFile: edited + "/SHA256SUMS", encoding: .utf8).split(separator: "\n")
            .map { $0.hasSuffix("  registration.json") ? "\(digest)  registration.json" : String($0) }
        try (sums.joined(separator: "\n") + "\n").write(toFile: edited + "/SHA256SUMS", atomically: true, encoding: .utf8)
        #expect(try CLIEvidenceTests.runGuide(edited, fingerprint: fingerprint).status != 0)
        #expect(try cli.run(["evidence", "verify", edited, "--audit-key", cli.files + "/trusted-audit.pub"], module: nil).status == 11)
    }
}

/// Whether this build dies at fault points (debug builds: what `swift test` builds).
enum FaultInjectionAvailable {
    static var inDebugBuilds: Bool {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }
}
